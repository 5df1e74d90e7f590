"""The response head's parts: status line, the application's headers checked and encoded,
and the ``Date`` and ``Server`` lines the server adds.

Pure functions with bounded caches: an application sends the same handful of statuses
and header names on every response, so each is validated once.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from email.utils import formatdate
from http import HTTPStatus
from time import time
from typing import Any

__all__ = ["HopByHopWarnings", "date_line", "encode_headers", "parse_status", "server_line",
           "status_phrase"]

_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+").fullmatch
_STATUS = re.compile(r"([1-9][0-9][0-9])(?: ([^\x00\r\n]*))?").fullmatch

_date_cache: list[Any] = [0, b""]


def date_line() -> bytes:
    """The ``Date`` header line, formatted once per second rather than per response."""
    now = int(time())
    if _date_cache[0] != now:
        _date_cache[1] = b"Date: " + formatdate(now, usegmt=True).encode("ascii") + b"\r\n"
        _date_cache[0] = now
    return _date_cache[1]


def server_line(server_software: str | None) -> bytes:
    """The ``Server`` header line for ``server_software``; none when it is empty."""
    if not server_software:
        return b""
    return b"Server: " + server_software.encode("latin-1") + b"\r\n"


def status_phrase(status: int) -> str:
    """The reason phrase of a status code (RFC 9110 15), ``Unknown`` for unregistered ones."""
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Unknown"


#: Status strings already validated, and what they parse to. Apps use a handful of them;
#: bounded all the same, since an app could build one per request.
_STATUS_CACHE: dict[str, tuple[int, bytes]] = {}
_STATUS_CACHE_MAX = 256


def parse_status(status: str) -> tuple[int, bytes]:
    """Validate a WSGI status and return (code, status line bytes)."""
    if type(status) is not str:
        raise TypeError(f"status must be str, not {type(status).__name__}")
    cached = _STATUS_CACHE.get(status)
    if cached is not None:
        return cached
    match = _STATUS(status)
    if match is None:
        raise ValueError(f"invalid status {status!r}")
    code = int(match[1])
    text = f"{code} {status_phrase(code)}" if match[2] is None else status
    parsed = code, b"HTTP/1.1 " + text.encode("latin-1") + b"\r\n"
    if len(_STATUS_CACHE) < _STATUS_CACHE_MAX:
        _STATUS_CACHE[status] = parsed
    return parsed


# What a response header name means to the server; anything else is passed on as it is.
_PLAIN, _CONTENT_LENGTH, _CONNECTION, _HOP_BY_HOP, _DATE, _SERVER = range(6)
_SPECIAL_NAMES = {"content-length": _CONTENT_LENGTH, "connection": _CONNECTION,
                  "date": _DATE, "server": _SERVER,
                  # Hop-by-hop (RFC 9110 7.6.1), which PEP 3333 forbids an application to
                  # send: the connection is the server's. Trailer announces trailers we never
                  # send; Proxy-* are a proxy's (see _name_kind).
                  "transfer-encoding": _HOP_BY_HOP, "keep-alive": _HOP_BY_HOP,
                  "upgrade": _HOP_BY_HOP, "te": _HOP_BY_HOP, "trailer": _HOP_BY_HOP}
#: Header names already validated (a valid token), and their kind. Names repeat on every
#: response; bounded all the same.
_NAME_KINDS: dict[str, int] = {}
_NAME_KINDS_MAX = 512


def _name_kind(name: str) -> int:
    """Validate a header name (known to be a str) and classify it."""
    kind = _NAME_KINDS.get(name)
    if kind is not None:
        return kind
    if not _TOKEN(name):
        raise ValueError(f"invalid header name {name!r}")
    lowered = name.lower()
    kind = _HOP_BY_HOP if lowered.startswith("proxy-") else _SPECIAL_NAMES.get(lowered, _PLAIN)
    if len(_NAME_KINDS) < _NAME_KINDS_MAX:
        _NAME_KINDS[name] = kind
    return kind


def _content_length(value: str, previous: int | None) -> int:
    """The app's Content-Length: digits only, and equal to any earlier one."""
    if not value.isdigit() or not value.isascii():
        raise ValueError(f"invalid Content-Length {value!r}")
    if previous is not None and int(value) != previous:
        raise ValueError("conflicting Content-Length headers")
    return int(value)


def _asks_close(value: str) -> bool:
    """A ``Connection`` value with the ``close`` option (RFC 9112 9.6)."""
    return "close" in (t.strip() for t in value.lower().split(","))


def encode_headers(
    headers: Iterable[tuple[str, str]],
) -> tuple[bytes, int | None, bool, bool, bool, tuple[str, ...]]:
    """Validate application headers and encode them.

    Returns (header block, Content-Length or None, app asked to close, has Date, has
    Server, hop-by-hop names dropped). Hop-by-hop headers are the server's business and
    never reach the client: ``Connection: close`` is honoured (then dropped, as any
    Connection header), the others -- ``Transfer-Encoding``, ``Keep-Alive``, ``Upgrade``,
    ``TE``, ``Trailer``, ``Proxy-*`` -- are dropped; the caller warns about all of them.
    """
    lines = []
    length = None
    close = has_date = has_server = False
    dropped: list[str] = []
    for name, value in headers:
        if type(name) is not str or type(value) is not str:
            raise TypeError(f"header {name!r}: names and values must be str")
        kind = _NAME_KINDS.get(name)
        if kind is None:
            kind = _name_kind(name)
        if "\n" in value or "\r" in value or "\x00" in value:
            raise ValueError(f"invalid character in header {name!r}")
        if kind == _PLAIN:
            lines.append(f"{name}: {value}\r\n")
        elif kind == _CONTENT_LENGTH:
            length = _content_length(value, length)
        elif kind == _CONNECTION:
            close = close or _asks_close(value)
            dropped.append(name)
        elif kind == _HOP_BY_HOP:
            dropped.append(name)
        else:  # Date or Server: passed on as the app sent it, and we add none of our own
            has_date = has_date or kind == _DATE
            has_server = has_server or kind == _SERVER
            lines.append(f"{name}: {value}\r\n")
    if length is not None:
        lines.append(f"Content-Length: {length}\r\n")
    block = "".join(lines).encode("latin-1")
    return block, length, close, has_date, has_server, tuple(dropped)


class HopByHopWarnings:
    """Warns once per (route, header name) that an application sent a hop-by-hop header.

    A route is what the server can see of one: SCRIPT_NAME + PATH_INFO. Bounded, since an
    app with ids in its paths has as many "routes" as requests: past ``limit`` the last
    warning says that no more will come.
    """

    def __init__(self, logger: Any, limit: int = 256) -> None:
        self.logger = logger
        self.limit = limit
        self.seen: set[tuple[str, str]] = set()

    def __call__(self, route: str, names: tuple[str, ...]) -> None:
        for name in names:
            key = (route, name.lower())
            if key in self.seen or len(self.seen) > self.limit:
                continue
            self.seen.add(key)
            more = " (no more such warnings)" if len(self.seen) > self.limit else ""
            self.logger.warning(
                "the application sent the hop-by-hop header %r for %s: dropped (PEP 3333 "
                "leaves the connection to the server)%s", name, route or "/", more)
