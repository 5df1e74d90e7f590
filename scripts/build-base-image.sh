#!/usr/bin/env bash
# Build an offline stand-in for the Dockerfile's base image (python:3.11-slim) when no
# container registry can be reached: a minimal Debian bookworm made by debootstrap from the
# Debian mirror this machine already uses, with Debian's python3 (3.11), python3-venv,
# python3-pip and ca-certificates, imported into the local Docker daemon under that tag.
#
#   sudo bash scripts/build-base-image.sh                    # tags python:3.11-slim
#   sudo bash scripts/build-base-image.sh my/base:tag        # another tag
#   sudo FORCE=1 bash scripts/build-base-image.sh            # rebuild even if the tag exists
#   sudo bash scripts/build-base-image.sh --builder          # tags python:3.11 (see below)
#
# --builder: the stand-in for the Dockerfile's builder stage (python:3.11, the image with a
# C compiler): the same, plus gcc, libc6-dev, python3-dev (Python's headers), which compile
# the optional C accelerators. Default tag python:3.11.
#
# The host's CA certificates are added to the image's trust store (update-ca-certificates),
# so pip in `docker build` works behind the same TLS-intercepting proxy as the host does.
# Settings (environment): DEBIAN_MIRROR (default: the first mirror for the suite in
# /etc/apt/sources.list*, else http://deb.debian.org/debian), DEBIAN_SUITE (bookworm),
# FORCE (1: rebuild). apt's Acquire::http(s)::Proxy is honoured unless http(s)_proxy is set.
# Needs root (debootstrap, chroot), a running Docker daemon, and Debian/Ubuntu's apt to
# install debootstrap when it is missing. Takes about a minute; the root file system lives
# in a temporary directory that is always removed.
set -Eeuo pipefail

VARIANT=runtime
if [[ ${1:-} == --builder ]]; then VARIANT=builder; shift; fi
SUITE=${DEBIAN_SUITE:-bookworm}
PACKAGES=python3,python3-venv,python3-pip,python-is-python3,ca-certificates
if [[ $VARIANT == builder ]]; then
    TAG=${1:-python:3.11}
    PACKAGES+=,gcc,libc6-dev,python3-dev
else
    TAG=${1:-python:3.11-slim}
fi

log() { printf 'build-base-image: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

[[ $(id -u) -eq 0 ]] || die "needs root (debootstrap and chroot)"
docker version >/dev/null 2>&1 || die "no Docker daemon reachable (docker version failed)"

if [[ ${FORCE:-0} != 1 ]] && docker image inspect "$TAG" >/dev/null 2>&1; then
    log "$TAG is already in the daemon; nothing to do (FORCE=1 rebuilds it)"
    exit 0
fi

# The mirror apt uses for SUITE: one-line sources (deb [opts] URI SUITE ...) and deb822
# .sources stanzas (URIs:/Suites:/Enabled:). Disabled or unrelated files are skipped.
detect_mirror() {
    local files=() f
    for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources; do
        [[ -f $f ]] && files+=("$f")
    done
    ((${#files[@]})) || return 0
    awk -v suite="$SUITE" '
        function flush() {
            if (uris != "" && enabled && (" " suites " ") ~ (" " suite " ")) {
                split(uris, u, " "); print u[1]; found = 1; exit
            }
            uris = ""; suites = ""; enabled = 1
        }
        FNR == 1 { flush(); deb822 = (FILENAME ~ /\.sources$/) }
        deb822 && /^[ \t]*$/ { flush(); next }
        deb822 && /^URIs:/ { uris = $0; sub(/^URIs:[ \t]*/, "", uris) }
        deb822 && /^Suites:/ { suites = $0; sub(/^Suites:[ \t]*/, "", suites) }
        deb822 && /^Enabled:[ \t]*[Nn]o/ { enabled = 0 }
        !deb822 && $1 == "deb" {
            i = 2
            if ($i ~ /^\[/) { while ($i !~ /\]$/ && i < NF) i++; i++ }
            if ($(i + 1) == suite) { print $i; found = 1; exit }
        }
        END { if (!found) flush() }
    ' "${files[@]}" | head -n 1
}

MIRROR=${DEBIAN_MIRROR:-$(detect_mirror)}
MIRROR=${MIRROR:-http://deb.debian.org/debian}

# apt's proxy, for debootstrap's downloads (wget honours http_proxy / https_proxy).
if command -v apt-config >/dev/null 2>&1; then
    APT_HTTP_PROXY='' APT_HTTPS_PROXY=''
    eval "$(apt-config shell APT_HTTP_PROXY Acquire::http::Proxy APT_HTTPS_PROXY Acquire::https::Proxy)"
    [[ -z ${http_proxy:-} && -n $APT_HTTP_PROXY ]] && export http_proxy=$APT_HTTP_PROXY
    [[ -z ${https_proxy:-} && -n $APT_HTTPS_PROXY ]] && export https_proxy=$APT_HTTPS_PROXY
fi

if ! command -v debootstrap >/dev/null 2>&1; then
    command -v apt-get >/dev/null 2>&1 || die "debootstrap is missing and there is no apt-get to install it"
    log "installing debootstrap"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends debootstrap \
        >/dev/null 2>&1 || die "apt-get install debootstrap failed"
fi

WORK=$(mktemp -d "${TMPDIR:-/var/tmp}/ctxserver-base.XXXXXX")
ROOTFS=$WORK/rootfs

cleanup() {
    # debootstrap mounts proc/sys inside the root file system; an interrupted run may leave
    # them mounted, and rm -rf must never descend into them.
    local mounts
    mounts=$(awk -v root="$ROOTFS" '$2 == root || index($2, root "/") == 1 { print $2 }' /proc/mounts | sort -r)
    [[ -z $mounts ]] || xargs -r -n 1 umount -l <<<"$mounts" || true
    rm -rf --one-file-system "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

started=$SECONDS
log "debootstrap --variant=minbase $SUITE from $MIRROR (+ $PACKAGES)"
if ! debootstrap --variant=minbase --include="$PACKAGES" "$SUITE" "$ROOTFS" "$MIRROR" \
        >"$WORK/debootstrap.log" 2>&1; then
    tail -n 30 "$WORK/debootstrap.log" >&2
    [[ -f $ROOTFS/debootstrap/debootstrap.log ]] && tail -n 30 "$ROOTFS/debootstrap/debootstrap.log" >&2
    die "debootstrap failed"
fi

# Trust the host's CAs too: every certificate of the host's bundle that Debian's does not
# have becomes a file of its own under /usr/local/share/ca-certificates.
HOST_BUNDLE=
for f in /etc/ssl/certs/ca-certificates.crt /etc/pki/tls/certs/ca-bundle.crt /etc/ssl/cert.pem; do
    [[ -f $f ]] && { HOST_BUNDLE=$f; break; }
done
if [[ -n $HOST_BUNDLE ]]; then
    mkdir -p "$ROOTFS/usr/local/share/ca-certificates"
    added=$(awk -v out="$ROOTFS/usr/local/share/ca-certificates/host-ca-" '
        /-----BEGIN CERTIFICATE-----/ { cert = ""; inside = 1 }
        inside { cert = cert $0 "\n" }
        /-----END CERTIFICATE-----/ {
            inside = 0
            if (FILENAME == ARGV[1]) { known[cert] = 1 }
            else if (!(cert in known)) { n++; f = out n ".crt"; printf "%s", cert > f; close(f); known[cert] = 1 }
        }
        END { print n + 0 }
    ' "$ROOTFS/etc/ssl/certs/ca-certificates.crt" "$HOST_BUNDLE")
    chroot "$ROOTFS" update-ca-certificates >/dev/null 2>&1 || die "update-ca-certificates failed in the image"
    log "added $added certificate(s) of $HOST_BUNDLE to the image's trust store"
fi

# Slim it down: no package lists or caches, no docs, man pages or translations.
chroot "$ROOTFS" apt-get clean
rm -rf "$ROOTFS"/var/lib/apt/lists/* "$ROOTFS"/var/cache/apt/*.bin \
       "$ROOTFS"/usr/share/doc/* "$ROOTFS"/usr/share/man/* "$ROOTFS"/usr/share/locale/* \
       "$ROOTFS"/var/log/*.log "$ROOTFS"/var/log/apt/* "$ROOTFS"/tmp/* "$ROOTFS"/root/.cache

log "importing into the daemon as $TAG"
tar --numeric-owner --one-file-system -C "$ROOTFS" \
    --exclude='./dev/*' --exclude='./proc/*' --exclude='./sys/*' --exclude='./debootstrap' \
    -cf - . \
  | docker import \
      --message "ctxserver offline stand-in ($VARIANT) for $TAG: debootstrap $SUITE + Debian python3" \
      --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
      --change 'ENV LANG=C.UTF-8' \
      --change 'CMD ["python3"]' \
      - "$TAG" >/dev/null

docker run --rm --network none "$TAG" python3 -c \
    'import ensurepip, ssl, sys, venv; print("python", sys.version.split()[0], ssl.OPENSSL_VERSION)' \
    | sed 's/^/build-base-image: image check: /' >&2
if [[ $VARIANT == builder ]]; then
    docker run --rm --network none "$TAG" sh -c \
        'gcc --version | head -n 1 && test -f "$(python3 -c "import sysconfig; print(sysconfig.get_paths()[\"include\"])")/Python.h" && echo Python.h present' \
        | sed 's/^/build-base-image: image check: /' >&2
fi
log "done: $TAG ($(docker image inspect -f '{{.Size}}' "$TAG" | awk '{ printf "%.0f MB", $1 / 1e6 }')) in $((SECONDS - started)) s"
