#!/usr/bin/env bash
# Headless Chromium and its WebDriver for the browser test (tests/test_leak_ui_browser.py):
# Debian's `chromium` and `chromium-driver`, installed with apt-get when either is missing.
#
#   bash scripts/install-chromium.sh        # prints the two paths, one per line
#
# Idempotent and quiet when both are there. Needs root (or both already installed) and apt.
# Waits for the dpkg lock (another install on the machine) instead of failing.
set -euo pipefail

log() { printf 'install-chromium: %s\n' "$*" >&2; }

find_tools() {
    CHROMIUM=$(command -v chromium || true)
    DRIVER=$(command -v chromedriver || true)
}

find_tools
if [[ -z $CHROMIUM || -z $DRIVER ]]; then
    command -v apt-get >/dev/null 2>&1 || { log "error: no apt-get to install chromium"; exit 1; }
    [[ $(id -u) -eq 0 ]] || { log "error: installing chromium needs root"; exit 1; }
    log "apt-get install chromium chromium-driver"
    apt-get -o DPkg::Lock::Timeout=600 update -qq
    DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -qq \
        --no-install-recommends chromium chromium-driver >/dev/null
    find_tools
fi
[[ -n $CHROMIUM && -n $DRIVER ]] || { log "error: chromium or chromedriver still missing"; exit 1; }
printf '%s\n%s\n' "$CHROMIUM" "$DRIVER"
