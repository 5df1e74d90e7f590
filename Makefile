# Set-up is part of every entry point: `make run` and `make test` create .venv from the
# pinned requirements when it is missing or older than them, so a fresh clone needs nothing else.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
# `make run` needs only the runtime set (requirements.txt); `make test` the dev set on top.
RUN_STAMP := $(VENV)/.installed-runtime

ARGS ?=

# The server tests rerun on the pure-Python path by `make test` (the request path, its
# framing and limits, lifecycle, metrics, context isolation).
PURE_SERVER_TESTS := tests/test_accelerators.py tests/test_server_lifecycle.py \
	tests/test_server_context.py tests/test_connection.py tests/test_http_protocol.py \
	tests/test_http_framing.py tests/test_server_limits.py tests/test_metrics.py tests/test_app.py

.PHONY: run test lint bench venv clean loadtest soak test-docker bench-docker reliability up down speedups gunicorn-corpus

$(STAMP): requirements.txt requirements-dev.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check --upgrade pip
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	@touch $(STAMP) $(RUN_STAMP)

$(RUN_STAMP): requirements.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements.txt
	@touch $(RUN_STAMP)

venv: $(STAMP)

# The optional C accelerators (ctxlocal/_speedups.c, server/_arena.c), built in place.  Optional:
# without a C compiler or Python headers they are skipped and the pure-Python path runs.
speedups: $(STAMP)
	-@$(PY) setup.py -q build_ext --inplace 2>&1 | grep -v -e _BetaConfiguration -e 'warnings.warn(msg' || true

run: $(RUN_STAMP)
	$(PY) -m server $(ARGS)

test: $(STAMP) speedups
	$(PY) -m ruff check .
	$(PY) -m pytest
	# ctxlocal once more on its pure-Python path (the one used when the accelerator is not built)
	CTXLOCAL_PURE_PYTHON=1 $(PY) -m pytest -q tests/test_ctxlocal_*.py tests/werkzeug_suites
	# the server's request path once more with every accelerator off (about 35 s): what runs
	# where no C compiler built them
	CTXSERVER_PURE_PYTHON=1 CTXLOCAL_PURE_PYTHON=1 $(PY) -m pytest -q $(PURE_SERVER_TESTS)

lint: $(STAMP)
	$(PY) -m ruff check .
	$(VENV)/bin/hadolint Dockerfile bench/container/Dockerfile
	bash scripts/compose.sh config -q

# A real `docker compose up` end to end (installs docker.io and the Compose plugin if needed,
# builds an offline base image when no registry is reachable, always tears everything down).
test-docker: $(STAMP)
	bash scripts/test-docker.sh

# The server in its Docker image next to the same server on the host (wrk; ours with the
# accelerators on and off, gunicorn -k gevent): bench/results/docker.md. Builds the image as
# test-docker does, starts dockerd only when none runs, cleans up all it started.
# Run it under the heavy lock; e.g. make bench-docker ARGS="--runs 3"
bench-docker: $(STAMP) speedups
	bash scripts/bench-docker.sh $(ARGS)

# The README's `docker compose up` on any machine: installs the engine and the Compose plugin
# when missing, starts dockerd when none runs, builds the base image offline when no registry
# answers. Ports on 127.0.0.1 (APP_BIND / LOCUST_BIND widen). e.g. make up ARGS="-d"
up: $(STAMP)
	bash scripts/compose-up.sh up $(ARGS)

# docker compose down; stops the daemon too if `make up` started it.
down:
	bash scripts/compose-up.sh down $(ARGS)

# Hostile input, slow clients, faults: prints the case / expected / got table.
reliability: $(STAMP)
	$(PY) -m tests.reliability_report

# gunicorn's own tests/requests corpus against our parser (fetches the gunicorn sdist; on demand).
gunicorn-corpus: $(STAMP)
	$(PY) scripts/gunicorn_corpus.py $(ARGS)

bench: $(STAMP) speedups
	$(PY) -m bench $(ARGS)

# The leak load test: starts the server itself (2 workers) unless ARGS has --host.
# e.g. make loadtest ARGS="--users 500 --duration 60s --processes 2"
loadtest: $(STAMP)
	$(PY) -m loadtests.run $(ARGS)

# On demand, not in CI: >= 1,000,000 probe requests at >= 1,000 users, then /metrics must
# show zero live ctxlocal entries and < 5 % worker RSS growth.
soak: $(STAMP)
	$(PY) -m loadtests.soak $(ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache reports build ctxlocal/_speedups*.so server/_arena*.so
