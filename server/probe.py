"""The reference app: hello, health, and the leak probes of ``docs/probe-contract.md``.

Each probe stores the client's token in every kind of context the server offers — ``g``, a
module-level ctxlocal ``Local``, a ``LocalStack``, a ``threading.local`` (greenlet-local
once gevent has patched it), the request itself — yields to other greenlets, then reads
everything back through the proxies.  Before storing it records ``stale``: anything already
present, i.e. left over from an earlier request.  A client that compares the answers with
its own token detects any cross-request leakage.

The negative control (``/unsafe/probe/<token>``) keeps the token in a plain module global,
so concurrent requests overwrite each other: it proves the detector can fail.  It is
mounted only when explicitly enabled.
"""

from __future__ import annotations

import json
import logging
import os
import random
import threading
from collections.abc import Iterator
from typing import Any

import gevent
from werkzeug.exceptions import BadRequest
from werkzeug.wrappers import Response

from ctxlocal import Local, LocalStack

from .app import App, json_response
from .context import g, request, request_id, spawn

__all__ = ["create_app"]

probe_local = Local(name="probe_local")
probe_stack = LocalStack(name="probe_stack")
thread_local = threading.local()  # greenlet-local only because gevent patched threading

MAX_YIELDS = 50
MAX_CHILDREN = 32


class ProbeFailure(Exception):
    """Raised on purpose by ``/probe/<token>/error`` after the context was filled.

    It propagates out of the app, so the server's own 500 path (and its end-of-request
    release of the context) is what the probe exercises.
    """


SERVER_ERROR_LOGGER = "server.http"
"""The logger of the server's request loop, where an exception out of the app is logged."""


class DeliberateFailureFilter(logging.Filter):
    """The error probe's exception is the test, not a fault: one DEBUG line, no traceback.

    Under load the error probe raises hundreds of times a second (130,000 tracebacks a minute
    in the compose web-UI flow), which buries every real error.  Only records whose exception
    is a :class:`ProbeFailure` change; any other error of the app keeps its level and its full
    traceback.  A filter on the logger that makes the record (the server's request loop), so
    nothing in the server changes for the reference app's sake.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if not isinstance(exc, ProbeFailure):
            return True
        if not logging.getLogger(record.name).isEnabledFor(logging.DEBUG):
            return False
        record.msg, record.args = f"{record.getMessage()}: {exc}", None
        record.levelno, record.levelname = logging.DEBUG, "DEBUG"
        record.exc_info = record.exc_text = None
        return True


def _quiet_deliberate_failures() -> None:
    logger = logging.getLogger(SERVER_ERROR_LOGGER)
    if not any(isinstance(f, DeliberateFailureFilter) for f in logger.filters):
        logger.addFilter(DeliberateFailureFilter())


def _int_arg(name: str, default: int, maximum: int) -> int:
    raw = request.args.get(name)
    if raw is None:
        return default
    if not raw.isdigit() or int(raw) > maximum:
        raise BadRequest(f"{name} must be an integer between 0 and {maximum}")
    return int(raw)


def _stale() -> list[str]:
    """What the context holds before this request stored anything: must be nothing."""
    found = [f"g.{name}={getattr(g, name)}" for name in g]
    for name, value in (("local", getattr(probe_local, "token", None)),
                        ("stack", probe_stack.top),
                        ("threadlocal", getattr(thread_local, "token", None))):
        if value is not None:
            found.append(f"{name}={value}")
    return found


def _store(token: str) -> None:
    g.token = token
    probe_local.token = token
    probe_stack.push(token)
    thread_local.token = token


def _yield_randomly(times: int) -> None:
    for _ in range(times):
        gevent.sleep(random.uniform(0, 0.005))


def _read_back(token_in_path: str) -> dict[str, Any]:
    return {
        "path": token_in_path,
        "header": request.headers.get("X-Probe-Token"),
        "request_id": str(request_id),
        "g": g.get("token"),
        "local": getattr(probe_local, "token", None),
        "stack": probe_stack.top,
        "threadlocal": getattr(thread_local, "token", None),
    }


def _payload(token: str, stale: list[str], **extra: Any) -> dict[str, Any]:
    return {"token": token, "values": _read_back(token), "stale": stale, "pid": os.getpid(),
            **extra}


def _child_view() -> dict[str, Any]:
    """Run in a child greenlet with a copy of the request context."""
    gevent.sleep(random.uniform(0, 0.003))
    seen = {"g": g.get("token"), "local": getattr(probe_local, "token", None),
            "stack": probe_stack.top, "header": request.headers.get("X-Probe-Token")}
    g.token = "written-by-child"  # must never reach the parent
    probe_stack.push("pushed-by-child")
    return seen


def create_app(*, unsafe_probe: bool = False) -> App:
    """Build the reference app; ``unsafe_probe`` mounts the negative control."""
    app = App("reference", propagate_exceptions=(ProbeFailure,))
    _quiet_deliberate_failures()

    @app.route("/")
    def hello() -> Response:
        return Response("Hello, World!", mimetype="text/plain")

    @app.route("/healthz")
    def healthz() -> Response:
        return json_response({"status": "ok"})

    @app.route("/probe/<token>")
    def probe(token: str) -> Response:
        stale = _stale()
        _store(token)
        _yield_randomly(_int_arg("yields", 3, MAX_YIELDS))
        return json_response(_payload(token, stale))

    @app.route("/probe/<token>/fanout")
    def probe_fanout(token: str) -> Response:
        stale = _stale()
        _store(token)
        children = [spawn(_child_view) for _ in range(_int_arg("children", 4, MAX_CHILDREN))]
        gevent.joinall(children, raise_error=True)
        _yield_randomly(_int_arg("yields", 3, MAX_YIELDS))
        return json_response(_payload(token, stale, children=[c.value for c in children]))

    @app.route("/probe/<token>/stream")
    def probe_stream(token: str) -> Response:
        stale = _stale()
        _store(token)
        lines = _int_arg("yields", 3, MAX_YIELDS) or 1

        def body() -> Iterator[bytes]:
            # Runs while the server iterates the response, after the view returned: the
            # context must still be this request's.
            for _ in range(lines):
                _yield_randomly(1)
                yield json.dumps(_payload(token, stale)).encode() + b"\n"

        return Response(body(), mimetype="application/x-ndjson")

    @app.route("/probe/<token>/error")
    def probe_error(token: str) -> Response:
        _store(token)
        _yield_randomly(1)
        raise ProbeFailure(f"deliberate failure after storing token {token}")

    if unsafe_probe:
        _mount_negative_control(app)
    return app


_unsafe_global: dict[str, Any] = {}


def _mount_negative_control(app: App) -> None:
    @app.route("/unsafe/probe/<token>")
    def unsafe_probe(token: str) -> Response:
        stale = [f"global={_unsafe_global['token']}"] if _unsafe_global.get("token") else []
        _unsafe_global["token"] = token
        _yield_randomly(_int_arg("yields", 3, MAX_YIELDS))
        value = _unsafe_global.get("token")
        _unsafe_global.pop("token", None)
        values = {"path": token, "header": request.headers.get("X-Probe-Token"),
                  "request_id": str(request_id), "g": value, "local": value, "stack": value,
                  "threadlocal": value}
        return json_response({"token": token, "values": values, "stale": stale,
                              "pid": os.getpid()})

