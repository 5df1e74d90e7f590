"""Test app for the reliability suite (``tests/reliability/``).

Everything under ``/hostile/`` is a bare WSGI callable (no framework in the way, so it can
do what werkzeug would refuse, like putting CR/LF into a response header); every other path
goes to the reference app (``/probe/<token>`` and friends, ``docs/probe-contract.md``), which
is what the concurrent well-behaved client exercises.

``/hostile/mark/<tag>`` counts hits per tag in this worker and ``/hostile/hits/<tag>``
reports the count: that is how a test proves that a smuggled request was never executed
(run the server with one worker, so both requests see the same counter).
"""

from __future__ import annotations

import json
import math
import os

import gevent

from server.probe import create_app

reference = create_app()

_hits: dict[str, int] = {}
_HITS_MAX = 10_000  # a fuzzer hammering /hostile/mark/ must not grow the worker forever


def _send(start_response, status: str, body: bytes, headers=(), content_type="text/plain"):
    start_response(status, [("Content-Type", content_type),
                            ("Content-Length", str(len(body))), *headers])
    return [body]


def _json(start_response, data, status: str = "200 OK"):
    return _send(start_response, status, json.dumps(data).encode(),
                 content_type="application/json")


def _echo(environ, start_response):
    """Read the whole request body and send it back (with what framing said about it)."""
    body = environ["wsgi.input"].read()
    return _send(start_response, "200 OK", body,
                 [("X-Body-Length", str(len(body)))])


def _path(environ, start_response):
    """PATH_INFO back as the raw bytes it stands for (PEP 3333: latin-1 "bytes-as-str")."""
    raw = environ["PATH_INFO"].encode("latin-1")
    return _json(start_response, {"path_hex": raw.hex(), "query": environ["QUERY_STRING"],
                                  "raw_uri": environ.get("RAW_URI")})


# Response headers no server may put on the wire as they are (a split response / injection).
_BAD_HEADERS = {
    "crlf-value": ("200 OK", [("X-Evil", "a\r\nSet-Cookie: injected=1")]),
    "lf-value": ("200 OK", [("X-Evil", "a\nSet-Cookie: injected=1")]),
    "cr-value": ("200 OK", [("X-Evil", "a\rSet-Cookie: injected=1")]),
    "nul-value": ("200 OK", [("X-Evil", "a\x00b")]),
    "crlf-name": ("200 OK", [("X-Evil\r\nSet-Cookie", "injected=1")]),
    "colon-name": ("200 OK", [("X-Evil: injected", "1")]),
    "crlf-status": ("200 OK\r\nSet-Cookie: injected=1", []),
    "crlf-location": ("302 Found", [("Location", "/x\r\n\r\n<html>injected</html>")]),
}


def _bad_header(environ, start_response, kind: str):
    status, headers = _BAD_HEADERS[kind]
    start_response(status, [("Content-Type", "text/plain"), *headers])
    return [b"this body must never be sent\n"]


def app(environ, start_response):
    path = environ["PATH_INFO"]
    if not path.startswith("/hostile/"):
        return reference(environ, start_response)
    _, _, rest = path.partition("/hostile/")
    name, _, arg = rest.partition("/")
    if name == "echo":
        return _echo(environ, start_response)
    if name == "path":
        return _path(environ, start_response)
    if name == "mark":
        if arg in _hits or len(_hits) < _HITS_MAX:
            _hits[arg] = _hits.get(arg, 0) + 1
        return _send(start_response, "200 OK", f"marked {arg}\n".encode())
    if name == "hits":
        return _json(start_response, {"tag": arg, "hits": _hits.get(arg, 0),
                                      "pid": os.getpid()})
    if name == "bad-header" and arg in _BAD_HEADERS:
        return _bad_header(environ, start_response, arg)
    if name == "sleep":  # a request that stays in flight for a while (fault tests)
        try:
            seconds = float(arg or "1")
        except ValueError:
            seconds = 1.0
        seconds = min(max(seconds, 0.0), 30.0) if math.isfinite(seconds) else 1.0
        gevent.sleep(seconds)
        return _send(start_response, "200 OK", b"slept\n")
    if name == "who":  # who the server says the client is (forwarded headers, PROXY, mount)
        return _json(start_response, {key: environ.get(key) for key in (
            "wsgi.url_scheme", "REMOTE_ADDR", "REMOTE_PORT", "SCRIPT_NAME", "PATH_INFO")})
    if name == "request-id":
        return _json(start_response, {"request_id": environ.get("ctxserver.request_id")})
    return _send(start_response, "404 Not Found", b"not found\n")


def broken_factory():
    """``tests.apps.hostile:broken_factory()``: a factory that fails with a multi-line message."""
    raise RuntimeError("first line\nsecond line\nthird line")
