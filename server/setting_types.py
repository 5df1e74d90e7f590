"""Parsing one setting's text: each function turns a flag's, a variable's or a config
file's text into the value, or raises ValueError saying what is wrong (the caller adds
which setting and where it came from)."""

from __future__ import annotations

import grp
import os
import pwd
from collections.abc import Callable

from .access_format import check_access_format
from .http.forwarded import TrustedPeers
from .http.tls import CERT_REQS

__all__ = ["GEVENT_WORKERS", "access_format", "bind", "bool", "cert_reqs", "choice", "directory",
           "existing_file", "group", "key_value", "non_negative_float", "non_negative_int",
           "path_or_off", "positive_float", "positive_int", "root_path", "trusted_peers", "umask",
           "user", "worker_class"]


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise ValueError("must be >= 1")
    return value


def non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise ValueError("must be >= 0")
    return value


def non_negative_float(text: str) -> float:
    value = float(text)
    if not value >= 0 or value == float("inf"):
        raise ValueError("must be a finite number >= 0")
    return value


def positive_float(text: str) -> float:
    value = non_negative_float(text)
    if value == 0:
        raise ValueError("must be > 0")
    return value


def bool(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off", ""):
        return False
    raise ValueError("must be one of 1/0, true/false, yes/no, on/off")


def bind(text: str) -> str:
    """``HOST:PORT``, ``[IPv6]:PORT``, ``:PORT`` (all interfaces) or ``unix:PATH``."""
    if text.startswith("unix:"):
        if not text[5:]:
            raise ValueError("unix: needs a path")
        return text
    host, sep, port = text.rpartition(":")
    if not sep:
        raise ValueError("expected HOST:PORT or unix:PATH")
    if not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"bad port {port!r}")
    if host.startswith("[") != host.endswith("]"):
        raise ValueError(f"bad IPv6 host {host!r}")
    return text


def choice(*choices: str) -> Callable[[str], str]:
    def parse(text: str) -> str:
        lowered = text.lower()
        if lowered not in choices:
            raise ValueError(f"must be one of {', '.join(choices)}")
        return lowered
    return parse


def umask(text: str) -> int:
    """gunicorn's ``--umask``: ``int(text, 0)``, with a leading ``0`` meaning octal (``022``)."""
    value = int("0o" + text[1:], 0) if len(text) > 1 and text[0] == "0" and text[1].isdigit() \
        else int(text, 0)
    if not 0 <= value <= 0o777:
        raise ValueError("must be between 0 and 0o777")
    return value


def path_or_off(text: str) -> str:
    if not text:
        raise ValueError("must be -, off, or a file path")
    return text


#: What ``-k`` may say: gevent, as gunicorn's short name or its class path.
GEVENT_WORKERS = ("gevent", "gunicorn.workers.ggevent.GeventWorker")


def worker_class(text: str) -> str:
    if text not in GEVENT_WORKERS:
        raise ValueError("only gevent is supported (every request runs in a greenlet of "
                         "its own)")
    return "gevent"


def access_format(text: str) -> str:
    check_access_format(text)  # ValueError naming what is wrong
    return text


def directory(text: str) -> str:
    if not os.path.isdir(text):
        raise ValueError("no such directory")
    return os.path.abspath(text)


def user(text: str) -> int:
    """A user name or uid, as the uid (gunicorn's ``--user``); an unknown name is an error
    now, not in every worker after the fork."""
    if text.isdigit():
        return int(text)
    try:
        return pwd.getpwnam(text).pw_uid
    except KeyError:
        raise ValueError("no such user") from None


def group(text: str) -> int:
    if text.isdigit():
        return int(text)
    try:
        return grp.getgrnam(text).gr_gid
    except KeyError:
        raise ValueError("no such group") from None


def key_value(text: str) -> str:
    key, sep, _ = text.partition("=")
    if not sep or not key.strip():
        raise ValueError("expected KEY=VALUE")
    return text


def trusted_peers(text: str) -> str:
    """gunicorn's ``--forwarded-allow-ips``: addresses, networks (CIDR) and ``*``."""
    TrustedPeers.parse(text)  # ValueError names the bad entry
    return ",".join(part.strip() for part in text.split(",") if part.strip())


def root_path(text: str) -> str:
    """A URL path prefix: ``/app`` (a trailing ``/`` is dropped; ``/`` alone means none)."""
    if text and not text.startswith("/"):
        raise ValueError("must start with /")
    return text.rstrip("/")


def existing_file(text: str) -> str:
    if not os.path.isfile(text):
        raise ValueError("no such file")
    return text


def cert_reqs(text: str) -> int:
    """gunicorn's ``--cert-reqs`` integers (ssl.CERT_*), or their names."""
    value = CERT_REQS.get(text.strip().lower())
    if value is None:
        raise ValueError("must be 0/none, 1/optional or 2/required")
    return value
