"""Container health check: GET the server's health path on the address it listens on.

Run by the image's ``HEALTHCHECK`` (``python /app/docker/healthcheck.py``); exit 0 when the
server answers ``{"status": "ok"}``, 1 otherwise.  It reads the same ``SERVER_BIND`` and
``SERVER_HEALTH_PATH`` the server does, so changing the port or the path by environment
keeps the check right (flags given on the command line are not seen here: configure a
container by environment).  Standard library only — the slim image has no curl.
"""

from __future__ import annotations

import http.client
import json
import os
import socket
import sys

TIMEOUT = 3.0


class UnixHTTPConnection(http.client.HTTPConnection):
    """HTTP over a unix socket (``SERVER_BIND=unix:/path``)."""

    def __init__(self, path: str, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self.unix_path = path

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        self.sock.connect(self.unix_path)


def connection(bind: str) -> http.client.HTTPConnection:
    """A connection to the first address of ``SERVER_BIND``, wildcards mapped to loopback."""
    if bind.startswith("unix:"):
        return UnixHTTPConnection(bind[len("unix:"):], TIMEOUT)
    host, _, port = bind.rpartition(":")
    host = host.strip("[]")
    if host in ("", "0.0.0.0"):
        host = "127.0.0.1"
    elif host == "::":
        host = "::1"
    return http.client.HTTPConnection(host, int(port), timeout=TIMEOUT)


def main() -> int:
    bind = os.environ.get("SERVER_BIND", "127.0.0.1:8000").split(",")[0].strip()
    path = os.environ.get("SERVER_HEALTH_PATH", "/healthz")
    conn = connection(bind)
    try:
        if path == "off":  # no health endpoint: being able to connect is all we can check
            conn.connect()
            return 0
        conn.request("GET", path, headers={"Connection": "close"})
        response = conn.getresponse()
        healthy = response.status == 200 and json.loads(response.read()).get("status") == "ok"
    except (OSError, ValueError, http.client.HTTPException) as exc:
        print(f"unhealthy: {exc}", file=sys.stderr)
        return 1
    finally:
        conn.close()
    if not healthy:
        print(f"unhealthy: {path} answered {response.status}", file=sys.stderr)
    return 0 if healthy else 1


if __name__ == "__main__":
    sys.exit(main())
