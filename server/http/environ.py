"""The WSGI environ of one request (PEP 3333): built here, and only here, from the parsed head.

Three layers, each built once per its lifetime: :func:`base_environ` holds what is the
same for every request to one listener; :func:`build_environ` copies it and adds what
belongs to the connection (the peer's address) and to the request (method, target,
version, headers, ``wsgi.input``). Header names become environ keys in :func:`env_key`,
as the parser delivers them.
"""

from __future__ import annotations

import sys
from typing import Any
from urllib.parse import unquote_to_bytes

import httptools
from httptools import HttpParserError

from .errors import HTTPError
from .request import EMPTY_BODY, BodySource, HTTPRequest, RequestBody
from .response import FileWrapper

__all__ = ["ENV_KEYS", "base_environ", "build_environ", "env_key", "mount", "split_target",
           "target_authority"]

#: Header name -> environ key (None: dropped), filled by :func:`env_key`; the parser reads
#: it first, so a known name costs one dict lookup.
ENV_KEYS: dict[bytes, str | None] = {}
ENV_KEYS_MAX = 1024


def env_key(name: bytes) -> str | None:
    """Map a header name to its environ key, cached because names repeat on every request.

    Names containing ``_`` are dropped (like nginx and gunicorn do): CGI turns ``-`` into
    ``_``, so ``X_Forwarded_For`` would otherwise silently impersonate ``X-Forwarded-For``
    and ``Content_Length`` would become CONTENT_LENGTH without llhttp ever framing by it.
    """
    key = ENV_KEYS.get(name, "")
    if key != "":
        return key
    if b"_" in name:
        key = None
    else:
        key = name.decode("latin-1").upper().replace("-", "_")
        if key not in ("CONTENT_TYPE", "CONTENT_LENGTH"):
            key = "HTTP_" + key
    if len(ENV_KEYS) < ENV_KEYS_MAX:
        ENV_KEYS[name] = key
    return key


def split_target(raw: bytes) -> tuple[str, str]:
    """Return (PATH_INFO, QUERY_STRING) of a request target.

    PATH_INFO is percent-decoded and carried as latin-1 "bytes-as-str" (PEP 3333), so
    non-UTF-8 bytes survive and the application decides the real encoding.
    """
    if raw[:1] == b"/":
        path, _, query = raw.partition(b"?")
    elif raw[:1] == b"*" or b"://" not in raw:  # asterisk-form, authority-form (CONNECT)
        return raw.decode("latin-1"), ""
    else:  # absolute-form, as sent to proxies; we serve it as its path
        try:
            url = httptools.parse_url(raw)
        except HttpParserError:
            raise HTTPError(400, "invalid request target") from None
        path, query = url.path or b"/", url.query or b""
    if b"#" in query:
        query = query.partition(b"#")[0]
    elif b"#" in path:
        path = path.partition(b"#")[0]
    if b"%" in path:
        path = unquote_to_bytes(path)
    return path.decode("latin-1"), query.decode("latin-1")


def mount(path: str, root_path: str) -> tuple[str, str]:
    """(SCRIPT_NAME, PATH_INFO) of a request for ``path`` to an app mounted at ``root_path``.

    1. Under the prefix -- ``path`` is ``root_path`` or continues it with ``/`` (segments,
       not characters: ``/apix`` is not under ``/api``) -- the prefix moves to SCRIPT_NAME.
    2. Outside it, PATH_INFO is the whole path and SCRIPT_NAME still the prefix: the proxy
       in front already stripped it (nginx ``proxy_pass http://app/;``), and the app
       builds its URLs under the prefix all the same. (gunicorn answers 500 here; uvicorn's
       ``--root-path`` means the same as this.)
    """
    if path.startswith(root_path) and path[len(root_path) : len(root_path) + 1] in ("", "/"):
        return root_path, path[len(root_path) :]
    return root_path, path


def target_authority(raw: bytes) -> str:
    """The host[:port] of an absolute-form target: RFC 9112 3.2.2 says it overrides Host
    ("the origin server MUST ignore the received Host header field ... and instead use the
    host information of the request-target"). Userinfo is not part of it."""
    authority = raw.partition(b"://")[2]
    for end in (b"/", b"?", b"#"):
        authority = authority.partition(end)[0]
    return authority.rpartition(b"@")[2].decode("latin-1")


_BASE_ENVIRONS: dict[tuple[str, str, str, str], dict[str, Any]] = {}


def base_environ(server_name: str, server_port: str, url_scheme: str = "http",
                 script_name: str = "") -> dict[str, Any]:
    """The environ keys that are the same for every request to one listener.

    Shared by its connections (never handed out: each request gets a copy), so that an
    idle keep-alive connection does not hold a dict of its own.
    """
    key = (server_name, server_port, url_scheme, script_name)
    base = _BASE_ENVIRONS.get(key)
    if base is None:
        base = {
            "SCRIPT_NAME": script_name,
            "SERVER_NAME": server_name,
            "SERVER_PORT": server_port,
            "wsgi.version": (1, 0),
            "wsgi.url_scheme": url_scheme,
            "wsgi.multithread": False,
            "wsgi.multiprocess": True,
            "wsgi.run_once": False,
            "wsgi.input_terminated": True,
            "wsgi.file_wrapper": FileWrapper,
        }
        if len(_BASE_ENVIRONS) < 64:
            _BASE_ENVIRONS[key] = base
    return base



def build_environ(
    base: dict[str, Any],
    remote_addr: str,
    remote_port: str,
    request: HTTPRequest,
    target: bytes,
    headers: dict[str, str],
    body_source: BodySource,
) -> dict[str, Any]:
    """The environ of ``request``: ``base`` (one listener's), the peer, then the request.

    ``headers`` are already keyed for the environ (:func:`env_key`); ``body_source`` is
    where ``wsgi.input`` reads more of the body from.
    """
    path, query = split_target(target)
    if base["SCRIPT_NAME"]:  # --root-path: the app is mounted under a prefix
        path = mount(path, base["SCRIPT_NAME"])[1]
    raw_uri = target.decode("latin-1")
    # A copy of the listener's constant part (a fast clone of a dict) and the per-request
    # keys on top: cheaper than one dict display with all of them (bench/results/server.md
    # measures the request path this is part of).
    environ = base.copy()
    environ["REMOTE_ADDR"] = remote_addr
    environ["REMOTE_PORT"] = remote_port
    environ["REQUEST_METHOD"] = request.method
    environ["PATH_INFO"] = path
    environ["QUERY_STRING"] = query
    environ["RAW_URI"] = environ["REQUEST_URI"] = raw_uri
    environ["SERVER_PROTOCOL"] = request.http_version
    environ["wsgi.input"] = (
        EMPTY_BODY if request.message_complete else RequestBody(body_source, request)
    )
    environ["wsgi.errors"] = sys.stderr
    environ.update(headers)
    if target[:1] != b"/" and b"://" in target:
        environ["HTTP_HOST"] = target_authority(target)
    return environ
