# ctxserver: the app server and the locust leak-test harness in one image.
#
#   docker build -t ctxserver:local .
#   docker run --rm --init -p 8000:8000 ctxserver:local              # the reference app
#   docker run --rm --init -p 8000:8000 -e SERVER_WORKERS=4 ctxserver:local
#
# Configured by SERVER_* environment variables (python -m server --help). Builds with the
# classic builder as well as BuildKit: no RUN --mount, no heredocs, no COPY --chmod.
# The base may be the real python:3.11-slim (python at /usr/local/bin) or the offline
# stand-in of scripts/build-base-image.sh (Debian's python3 at /usr/bin): `python3 -m venv`
# works on both, and everything after it uses /opt/venv/bin.
#
# Two stages: `builder` (python:3.11, which has a C compiler and Python's headers; offline:
# `scripts/build-base-image.sh --builder`) compiles the optional C accelerators
# (ctxlocal/_speedups.c, server/_arena.c); the runtime stage stays slim (no compiler) and
# copies only the two built modules. `python -m server` names them at start-up
# ("accelerators: arena_cache on ...") and /metrics has ctxserver_accelerator_active.

# ---------------------------------------------------------------- builder
FROM python:3.11 AS builder

# setup.py alone (no pyproject.toml, no package install): it only builds the extensions in
# place. optional=True there would turn a failed build into a warning, so the import
# check after it is what fails this stage when they did not build.
WORKDIR /src
COPY setup.py setup.py
COPY ctxlocal/_speedups.c ctxlocal/_speedups.c
COPY server/_arena.c server/_arena.c
RUN python3 -m venv /opt/build \
    && /opt/build/bin/python setup.py -q build_ext --inplace \
    && /opt/build/bin/python -c "import ctxlocal._speedups, server._arena" \
    && rm -rf build

# ---------------------------------------------------------------- runtime
FROM python:3.11-slim

# Package index settings for pip, passed with --build-arg (scripts/test-docker.sh passes the
# host's). HTTP_PROXY, HTTPS_PROXY, NO_PROXY (and lower-case) are predefined build args.
# Unset ARGs are not in the environment of RUN, so pip keeps its defaults without them.
ARG PIP_INDEX_URL
ARG PIP_EXTRA_INDEX_URL
ARG PIP_TRUSTED_HOST
ARG PIP_CERT
ARG PIP_DEFAULT_TIMEOUT

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH \
    PYTHONPATH=/app

# Runtime pins only (locust included: the locust services run this image too). Every
# dependency has a manylinux wheel for CPython 3.11, so no compiler is needed and
# --only-binary turns a missing wheel into an error instead of a build.
COPY requirements.txt /tmp/requirements.txt
RUN python3 -m venv /opt/venv \
    && /opt/venv/bin/pip install --no-cache-dir --disable-pip-version-check \
        --only-binary=:all: -r /tmp/requirements.txt \
    && rm /tmp/requirements.txt \
    && find /opt/venv -name __pycache__ -type d -prune -exec rm -rf {} + \
    && /opt/venv/bin/python -m compileall -q /opt/venv/lib

RUN groupadd --system --gid 10001 app \
    && useradd --system --uid 10001 --gid app --home-dir /app --no-create-home \
        --shell /usr/sbin/nologin app

WORKDIR /app
COPY ctxlocal/ ctxlocal/
COPY server/ server/
COPY loadtests/ loadtests/
COPY docker/healthcheck.py docker/healthcheck.py
# The accelerators built above, for this image's Python (the work tree's own builds are in
# .dockerignore: they are for the host's Python). Both must import here, or the build fails.
COPY --from=builder /src/ctxlocal/_speedups*.so ctxlocal/
COPY --from=builder /src/server/_arena*.so server/
RUN python -c "import ctxlocal._speedups, server._arena"

# Code and venv stay owned by root: the server only needs /tmp (its metrics directory).
# Numeric, so runAsNonRoot-style checks can verify it without the image's /etc/passwd.
USER 10001:10001

ENV SERVER_BIND=0.0.0.0:8000
EXPOSE 8000

# Follows SERVER_BIND and SERVER_HEALTH_PATH; standard library only (no curl in slim).
HEALTHCHECK --interval=5s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "/app/docker/healthcheck.py"]

# The master handles TERM itself (drain, then exit 0), also as PID 1; still, run it under
# an init (`docker run --init`, compose `init: true`) so orphans are reaped.
STOPSIGNAL SIGTERM
CMD ["python", "-m", "server"]

LABEL org.opencontainers.image.title="ctxserver" \
      org.opencontainers.image.description="gevent WSGI server with per-greenlet request context, and its locust leak tests"
