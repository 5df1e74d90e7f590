"""gunicorn's access log atoms: ``--access-log-format '%(h)s %(l)s %(u)s %(t)s "%(r)s" ...'``.

The same atoms, with the same meaning and the same ``-`` for what is missing, as gunicorn's
``glogging.Logger.atoms`` — so an ``access_log_format`` from a gunicorn.conf.py gives the
same lines, and the log parsers behind it keep working — plus ``%(request_id)s``.
``%({name}i)s`` is a request header, ``%({name}e)s`` an environ key, ``%({name}o)s`` a
response header as the app passed it to ``start_response`` (what the server adds itself --
``Date``, ``Server``, a ``Content-Length`` or ``Transfer-Encoding`` it chose -- is not one,
as in gunicorn, where they are not in ``resp.headers`` either).
"""

from __future__ import annotations

import base64
import binascii
import time
from typing import Any

from .http.response import RESPONSE_HEADERS

__all__ = ["check_access_format", "format_access_line"]


class _Atoms(dict[str, Any]):
    """gunicorn's ``SafeAtoms``: an unknown atom is ``-``, header names are case-blind."""

    def __getitem__(self, key: str) -> Any:
        if key.startswith("{"):
            return super().get(key.lower(), "-")
        return super().get(key, "-")


def _user(environ: dict[str, Any]) -> str:
    """The user of HTTP Basic auth, as gunicorn reads it (``%(u)s``)."""
    auth = environ.get("HTTP_AUTHORIZATION", "")
    scheme, _, credentials = auth.partition(" ")
    if scheme.lower() != "basic" or not credentials:
        return "-"
    try:
        decoded = base64.b64decode(credentials.strip(), validate=True).decode("latin-1")
    except (binascii.Error, ValueError):
        return "-"
    return decoded.split(":", 1)[0] or "-"


def _atoms(environ: dict[str, Any], status: int, size: int, duration: float,
           pid: int) -> _Atoms:
    query = environ.get("QUERY_STRING", "")
    uri = environ.get("RAW_URI") or (environ.get("PATH_INFO", "") + (f"?{query}" if query
                                                                     else ""))
    micros = int(duration * 1_000_000)
    atoms = _Atoms({
        "h": environ.get("REMOTE_ADDR") or "-",
        "l": "-",
        "u": _user(environ),
        "t": time.strftime("[%d/%b/%Y:%H:%M:%S %z]"),
        "r": f"{environ.get('REQUEST_METHOD')} {uri} {environ.get('SERVER_PROTOCOL')}",
        "s": status,
        "m": environ.get("REQUEST_METHOD"),
        "U": environ.get("PATH_INFO"),
        "q": query,
        "H": environ.get("SERVER_PROTOCOL"),
        "b": str(size) if size else "-",
        "B": size,
        "f": environ.get("HTTP_REFERER") or "-",
        "a": environ.get("HTTP_USER_AGENT") or "-",
        "T": micros // 1_000_000,
        "M": micros // 1000,
        "D": micros,
        "L": f"{micros // 1_000_000}.{micros % 1_000_000:06d}",
        "p": f"<{pid}>",
        "request_id": environ.get("ctxserver.request_id") or "-",
    })
    for name, value in environ.get(RESPONSE_HEADERS, ()):
        atoms["{" + name.lower() + "}o"] = value
    for key, value in environ.items():
        if key.startswith("HTTP_"):
            atoms["{" + key[5:].lower().replace("_", "-") + "}i"] = value
        if isinstance(value, str):
            atoms["{" + key.lower() + "}e"] = value
    return atoms


def format_access_line(fmt: str, environ: dict[str, Any], status: int, size: int,
                       duration: float, pid: int) -> str:
    return fmt % _atoms(environ, status, size, duration, pid)


def check_access_format(fmt: str) -> None:
    """ValueError unless ``fmt`` formats (``%(x)s`` atoms only; a stray ``%`` is an error)."""
    environ = {"REQUEST_METHOD": "GET", "PATH_INFO": "/", "SERVER_PROTOCOL": "HTTP/1.1"}
    try:
        format_access_line(fmt, environ, 200, 0, 0.0, 0)
    except (ValueError, TypeError, KeyError) as exc:
        raise ValueError(f"not a %(atom)s format: {exc}") from None
