#!/usr/bin/env bash
# `make bench-docker`: the server benchmark in the Docker image, next to the host.
#
#  1. gets a working engine the way `make test-docker` does (scripts/docker-lib.sh: installs
#     docker.io when missing, starts dockerd when no daemon answers — storage
#     TEST_DOCKER_DATA_ROOT, shared with `make test-docker`, so its base images are reused —,
#     keeps, pulls or builds offline the base images);
#  2. builds the runtime image ctxserver:local exactly as `make test-docker` does (Compose,
#     the classic builder, the host's pip settings), then the bench-only image ctxserver:bench
#     FROM it (bench/container/Dockerfile: gunicorn at requirements-dev.txt's pin, and
#     bench/apps.py; the shipped runtime stage gets neither);
#  3. when the host's python3 (BENCH_SYSTEM_PYTHON, /usr/bin/python3) is the image's very
#     Python build, makes a venv of it in a temporary directory (same pins) for host rows run
#     by the image's interpreter (host-syspython);
#  4. runs `python -m bench.container` with ARGS (see its --help): host and container rows,
#     results in bench/results/docker.md and docker.json;
#  5. ALWAYS cleans up (trap EXIT, also on Ctrl-C): the benchmark's servers, every container
#     it started (by the ids in their --cidfile files), the bench image; the runtime image and
#     the daemon only if this script built / started them (a daemon that was running is left
#     running, with its images unless BENCH_DOCKER_KEEP_IMAGE=0), and then the host state the
#     daemon changed (ip_forward, iptables tables, bridges), as `make test-docker` does.
#
# Run it under the shared lock: `flock -o /tmp/ctxserver-heavy.lock make bench-docker`.
# Settings (environment): BASE_IMAGE, BUILDER_IMAGE, TEST_DOCKER_DATA_ROOT, BENCH_SYSTEM_PYTHON,
# BENCH_DOCKER_KEEP_IMAGE (1: keep ctxserver:local). Needs root unless a daemon is running.
set -Eeuo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

PROJECT=ctxserver-bench
BASE_IMAGE=${BASE_IMAGE:-python:3.11-slim}
BUILDER_IMAGE=${BUILDER_IMAGE:-python:3.11}
BENCH_IMAGE=ctxserver:bench
SYSTEM_PYTHON=${BENCH_SYSTEM_PYTHON:-/usr/bin/python3}  # see step 3
KEEP_IMAGE=${BENCH_DOCKER_KEEP_IMAGE:-}
DATA_ROOT=${TEST_DOCKER_DATA_ROOT:-/var/lib/ctxserver-test-docker}
export BASE_IMAGE DOCKER_BUILDKIT=0 COMPOSE_ANSI=never COMPOSE_PROGRESS=plain
unset "${!SERVER_@}"  # the servers' settings are the benchmark's command lines, not the shell's

T0=$SECONDS
log() { printf '[bench-docker %4ds] %s\n' "$((SECONDS - T0))" "$*" >&2; }
die() { log "FAIL: $*"; exit 1; }

WORK=$(mktemp -d "${TMPDIR:-/tmp}/ctxserver-bench-docker.XXXXXX")
CID_DIR=$WORK/cids
mkdir -p "$CID_DIR"
BUILT_IMAGE=0
BUILT_BENCH_IMAGE=0
COMPOSE=(docker compose --project-name "$PROJECT" --project-directory "$ROOT"
         -f "$ROOT/docker-compose.yml")

DOCKER_STATE=$WORK
# shellcheck source=scripts/docker-lib.sh
source "$ROOT/scripts/docker-lib.sh"

teardown() {
    local rc=$? cidfile cid
    set +e
    trap - INT TERM
    stop_step  # the benchmark: it stops its servers and containers itself on TERM
    if docker version >/dev/null 2>&1; then
        for cidfile in "$CID_DIR"/*.cid; do  # what it could not stop (killed, say)
            [[ -s $cidfile ]] || continue
            cid=$(<"$cidfile")
            docker rm -f "$cid" >/dev/null 2>&1 && log "removed container ${cid:0:12}"
        done
        [[ $BUILT_BENCH_IMAGE == 1 ]] && docker image rm "$BENCH_IMAGE" >/dev/null 2>&1
        KEEP_IMAGE=${KEEP_IMAGE:-$((1 - STARTED_DAEMON))}
        [[ $BUILT_IMAGE == 1 && $KEEP_IMAGE != 1 ]] && docker image rm ctxserver:local >/dev/null 2>&1
        if [[ $STARTED_DAEMON == 1 ]]; then  # our daemon: what an interrupted build left
            docker container prune -f >/dev/null 2>&1
            docker image prune -f >/dev/null 2>&1
        elif [[ $BUILT_IMAGE == 1 ]]; then
            docker image prune -f --filter label=org.opencontainers.image.title=ctxserver >/dev/null 2>&1
        fi
    fi
    release_host "$rc"
    if [[ $rc -eq 0 ]]; then log "done in $((SECONDS - T0)) s"; else log "FAILED (exit code $rc)"; fi
    exit "$rc"
}
trap teardown EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

command -v wrk >/dev/null 2>&1 || die "wrk is not installed; install it with: apt-get install -y wrk"
GUNICORN_VERSION=$(sed -n 's/^gunicorn==\([^ #]*\).*/\1/p' requirements-dev.txt)
[[ -n $GUNICORN_VERSION ]] || die "no gunicorn==VERSION pin in requirements-dev.txt"

# ---------------------------------------------------------------- 1. engine, daemon, bases
link_compose_plugin
install_engine
docker compose version >/dev/null || die "the Compose plugin does not run: $COMPOSE_BIN"
start_daemon
ensure_base_image "$BASE_IMAGE"
ensure_base_image "$BUILDER_IMAGE" --builder

# ---------------------------------------------------------------- 2. the images
pip_build_args
log "building ctxserver:local as make test-docker does (build args: ${BUILD_ARGS[*]:-none})"
BUILT_IMAGE=1
step "$WORK/build.log" "${COMPOSE[@]}" build "${BUILD_ARGS[@]}" app \
    || { tail -n 40 "$WORK/build.log" >&2; die "docker compose build failed"; }
log "building $BENCH_IMAGE (FROM ctxserver:local + gunicorn $GUNICORN_VERSION + bench/apps.py)"
BUILT_BENCH_IMAGE=1
step "$WORK/build-bench.log" docker build -f bench/container/Dockerfile -t "$BENCH_IMAGE" \
    --build-arg RUNTIME_IMAGE=ctxserver:local --build-arg "GUNICORN_VERSION=$GUNICORN_VERSION" \
    "${BUILD_ARGS[@]}" bench \
    || { tail -n 40 "$WORK/build-bench.log" >&2; die "docker build of $BENCH_IMAGE failed"; }

# ---------------------------------------------------------------- 3. the same Python on the host
# When the host's python3 is the very build the image runs (the offline base image is
# Debian's python3), a venv of it with the same pins gives host rows with the image's
# interpreter: the container's cost apart from a different Python build.
# "The same build": the same version built with the same configure arguments, compiler and
# flags (a distribution's security updates in between leave all of those alike).
SYSTEM_PYTHON_ARGS=()
BUILD_INFO='import platform, sysconfig as s
print(platform.python_version(), *(s.get_config_var(v) for v in ("CONFIG_ARGS", "CC", "CFLAGS")))'
image_python=$(docker run --rm --network none --no-healthcheck "$BENCH_IMAGE" \
    python -c "$BUILD_INFO" 2>/dev/null || true)
host_python=$("$SYSTEM_PYTHON" -c "$BUILD_INFO" 2>/dev/null || true)
if [[ -n $image_python && $image_python == "$host_python" ]]; then
    log "the host's $SYSTEM_PYTHON is the image's Python build (${image_python%% *}, same configure arguments, compiler and flags): a venv of it for the host-syspython rows"
    step "$WORK/syspython.log" bash -c '"$1" -m venv "$2" && "$2/bin/pip" install --quiet \
        --disable-pip-version-check --only-binary=:all: -r requirements.txt "gunicorn==$3"' \
        _ "$SYSTEM_PYTHON" "$WORK/syspython" "$GUNICORN_VERSION" \
        || { tail -n 20 "$WORK/syspython.log" >&2; die "could not make the venv of $SYSTEM_PYTHON"; }
    SYSTEM_PYTHON_ARGS=(--system-python "$WORK/syspython/bin/python")
else
    log "the host's $SYSTEM_PYTHON is not the image's Python build: no host-syspython rows"
    log "  host:  ${host_python:-none}"
    log "  image: ${image_python:-?}"
fi

# ---------------------------------------------------------------- 4. the benchmark
log "running the benchmark: python -m bench.container $*"
BENCH_COMMAND="make bench-docker${*:+ ARGS=\"$*\"}" step - "$ROOT/.venv/bin/python" \
    -m bench.container --image "$BENCH_IMAGE" --cid-dir "$CID_DIR" "${SYSTEM_PYTHON_ARGS[@]}" "$@" \
    || die "the benchmark failed"
