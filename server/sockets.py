"""Listening sockets: bind each ``--bind`` address once in the master, name it, close it.

The master binds before any worker exists, so a port in use is a one-line error at start-up,
and every worker inherits the same sockets (the kernel spreads connections over the workers
that accept).  A unix socket file is created under ``--umask`` (gunicorn's setting and
default: 0, i.e. mode 0777, so that a front-end running as another user can connect) and
removed when the master closes it.
"""

from __future__ import annotations

import contextlib
import errno
import os
import socket
import stat
from typing import Any

__all__ = ["bind_listener", "close_listener", "describe_bind_error", "listener_address"]


def _parse_bind(address: str) -> tuple[int, Any]:
    if address.startswith("unix:"):
        return socket.AF_UNIX, address[5:]
    host, _, port = address.rpartition(":")
    host = host.strip("[]") or "0.0.0.0"
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    return family, (host, int(port))


def _bind_unix(sock: socket.socket, path: str, umask: int) -> None:
    """Bind ``path``, replacing a stale socket file (never another kind of file).

    The file's mode is 0777 minus ``umask``: connecting needs write permission on it, so the
    default (umask 0) lets a proxy under another uid in, as gunicorn does. ``os.umask`` is
    process-wide; the master is single-threaded while it binds.
    """
    with contextlib.suppress(FileNotFoundError):
        if stat.S_ISSOCK(os.stat(path).st_mode):
            os.unlink(path)  # a stale socket file from an earlier run
    old = os.umask(umask)
    try:
        sock.bind(path)
    finally:
        os.umask(old)


def bind_listener(address: str, backlog: int, umask: int = 0) -> socket.socket:
    """Create a listening socket for ``address``; OSError explains failures."""
    family, target = _parse_bind(address)
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        if family == socket.AF_UNIX:
            _bind_unix(sock, target, umask)
        else:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.bind(target)
        sock.listen(backlog)
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock


def listener_address(listener: socket.socket) -> str:
    """What the socket really listens on, as ``--bind`` spells it (port 0 → the real port)."""
    address = listener.getsockname()
    if listener.family == socket.AF_UNIX:
        return f"unix:{address}"
    host, port = address[0], address[1]
    return f"[{host}]:{port}" if listener.family == socket.AF_INET6 else f"{host}:{port}"


def close_listener(listener: socket.socket) -> None:
    """Close the socket; a unix socket's file goes with it (it would refuse the next bind)."""
    with contextlib.suppress(OSError):
        if listener.family == socket.AF_UNIX:
            path = listener.getsockname()
            if path:
                os.unlink(path)
    listener.close()


_BIND_ERRORS = {
    errno.EADDRINUSE: "address already in use (is another server running?)",
    errno.EACCES: "permission denied",
    errno.EADDRNOTAVAIL: "address not available on this machine",
}


def describe_bind_error(address: str, exc: OSError) -> str:
    reason = _BIND_ERRORS.get(exc.errno or 0) or exc.strerror or str(exc)
    return f"cannot listen on {address}: {reason}"
