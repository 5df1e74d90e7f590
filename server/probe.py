"""The reference app: hello, health, and the leak probes of ``docs/probe-contract.md``.

Each probe stores the client's token in every kind of storage an app might use (:data:`STORES`:
``g``, a module-level ctxlocal ``Local`` and ``LocalStack``, a ``threading.local``
(greenlet-local once gevent has patched it), ``gevent.local.local``, a ``ContextVar`` set and
never reset, werkzeug's ``Local``, an attribute of ``greenlet.getcurrent()``, the environ),
yields to other greenlets, then reads everything back.  Before storing it records ``stale``:
anything already present, i.e. left over from an earlier request.  A client that compares the
answers with its own token detects any cross-request leakage.

What only shows after a request: every probe keeps its request greenlet referenced for a while
(as an app caching "the current greenlet" would: its values must go at the request's end
anyway, which ``/metrics``' live entries show after a run), and fan-out probes leave orphan
children (a raw greenlet and a ``gevent.spawn`` one, no context copy) that outlive the
request, look for anything in storage that is not theirs, store a value they never release,
and report what they found into the ``stale`` of a later probe.  The raw-WSGI shapes of
``docs/probe-contract.md`` (late ``write()``, a shared header list, a ``close()`` that
raises, ``BaseException`` out of the app) are served by :class:`ProbeApp` itself.

The negative control (``/unsafe/probe/<token>``) keeps the token in a plain module global,
so concurrent requests overwrite each other: it proves the detector can fail.  It is
mounted only when explicitly enabled.
"""

from __future__ import annotations

import contextlib
import contextvars
import json
import logging
import os
import random
import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import gevent
import gevent.local
import werkzeug.local
from greenlet import GreenletExit, getcurrent
from greenlet import greenlet as RawGreenlet
from werkzeug.exceptions import BadRequest
from werkzeug.wrappers import Response

from ctxlocal import Local, LocalStack

from .app import App, json_response
from .context import g, request, request_id, spawn

__all__ = ["STORES", "ProbeApp", "create_app"]

probe_local = Local(name="probe_local")
probe_stack = LocalStack(name="probe_stack")
thread_local = threading.local()  # greenlet-local only because gevent patched threading
gevent_local = gevent.local.local()
werkzeug_local = werkzeug.local.Local()
context_var: contextvars.ContextVar[str] = contextvars.ContextVar("probe_token")
GREENLET_ATTR = "probe_token"
ENVIRON_KEY = "probe.token"

#: Request greenlets kept referenced after their request, as an app's cache might: a
#: request's values must not outlive it even so (the verdict reads /metrics after a run).
kept_greenlets: deque[Any] = deque(maxlen=32)
#: What orphan children found that was not theirs; reported in a later probe's ``stale``.
orphan_reports: list[str] = []

MAX_YIELDS = 50
MAX_CHILDREN = 32


class ProbeFailure(Exception):
    """Raised on purpose by ``/probe/<token>/error`` after the context was filled.

    It propagates out of the app, so the server's own 500 path (and its end-of-request
    release of the context) is what the probe exercises.
    """


class ProbeExit(GreenletExit):
    """Raised on purpose by ``/probe/<token>/exit``: a ``GreenletExit`` out of the app must
    cost that request alone (a 500), like any other exception."""


DELIBERATE = (ProbeFailure, ProbeExit)

SERVER_ERROR_LOGGER = "server.http"
"""The logger of the server's request loop, where an exception out of the app is logged."""


class DeliberateFailureFilter(logging.Filter):
    """The probes' deliberate exceptions are the test, not a fault: one DEBUG line, no traceback.

    Under load the error probe raises hundreds of times a second (130,000 tracebacks a minute
    in the compose web-UI flow), which buries every real error.  Only records whose exception
    is one of :data:`DELIBERATE` change; any other error of the app keeps its level and its full
    traceback.  A filter on the logger that makes the record
    (the server's request loop), so nothing in the server changes for the reference app's sake.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if not isinstance(exc, DELIBERATE):
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


def _get_attr(obj: Any) -> Any:
    return getattr(obj, "token", None)


def _set_attr(obj: Any, token: str) -> None:
    obj.token = token


#: Every storage kind the probe fills: name -> (read, store). Reads return None when empty.
#: ``g`` and the stack are the server's request context; the rest are what apps use.
STORES: dict[str, tuple[Callable[[], Any], Callable[[str], None]]] = {
    "g": (lambda: g.get("token"), lambda t: setattr(g, "token", t)),
    "local": (lambda: _get_attr(probe_local), lambda t: _set_attr(probe_local, t)),
    "stack": (lambda: probe_stack.top, probe_stack.push),
    "threadlocal": (lambda: _get_attr(thread_local), lambda t: _set_attr(thread_local, t)),
    "gevent_local": (lambda: _get_attr(gevent_local), lambda t: _set_attr(gevent_local, t)),
    "werkzeug_local": (lambda: _get_attr(werkzeug_local),
                       lambda t: _set_attr(werkzeug_local, t)),
    "contextvar": (lambda: context_var.get(None), context_var.set),  # set, never reset
    "greenlet_attr": (lambda: getattr(getcurrent(), GREENLET_ATTR, None),
                      lambda t: setattr(getcurrent(), GREENLET_ATTR, t)),
    "environ": (lambda: request.environ.get(ENVIRON_KEY),
                lambda t: request.environ.__setitem__(ENVIRON_KEY, t)),
}

#: What an orphan child (a new greenlet, no context copy) must find empty.
ORPHAN_STORES = ("local", "stack", "threadlocal", "gevent_local", "werkzeug_local",
                 "contextvar", "greenlet_attr")


def _stale() -> list[str]:
    """What the context holds before this request stored anything: must be nothing; plus
    whatever orphan children of earlier requests found that was not theirs."""
    found = [f"g.{name}={getattr(g, name)}" for name in g]
    found += [f"{name}={value}" for name, (read, _) in STORES.items()
              if name != "g" and (value := read()) is not None]
    if orphan_reports:
        found += orphan_reports
        orphan_reports.clear()
    return found


def _store(token: str) -> None:
    for _, store in STORES.values():
        store(token)
    kept_greenlets.append(getcurrent())


def _yield_randomly(times: int) -> None:
    for _ in range(times):
        gevent.sleep(random.uniform(0, 0.005))


def _read_back(token_in_path: str) -> dict[str, Any]:
    return {
        "path": token_in_path,
        "header": request.headers.get("X-Probe-Token"),
        "request_id": str(request_id),
        **{name: read() for name, (read, _) in STORES.items()},
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
    probe_local.token = "written-by-child"
    probe_stack.push("pushed-by-child")
    return seen


def _orphan(kind: str) -> None:
    """A child that outlives its request without a copy of the context: a new context, so
    every storage it looks at must be empty; it stores a value it never releases (its end
    must drop it) and reports anything it found that was not its own."""
    found = [f"orphan {kind} {name}={value}" for name in ORPHAN_STORES
             if (value := STORES[name][0]()) is not None]
    mine = f"orphan-{id(getcurrent()):x}"
    probe_local.token = mine
    gevent_local.token = mine
    gevent.sleep(random.uniform(0.005, 0.03))
    orphan_reports.extend(found)


def _spawn_orphans() -> None:
    gevent.spawn(_orphan, "gevent.spawn")
    raw = RawGreenlet(_orphan, parent=gevent.get_hub())  # ends into the hub, not into us
    gevent.get_hub().loop.run_callback(raw.switch, "raw greenlet")


def create_app(*, unsafe_probe: bool = False) -> App:
    """Build the reference app; ``unsafe_probe`` mounts the negative control."""
    app = ProbeApp("reference", propagate_exceptions=(ProbeFailure,))
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
        _spawn_orphans()
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

    @app.route("/probe/<token>/threadpool")
    def probe_threadpool(token: str) -> Response:
        # A task on gevent's threadpool: a fresh context of its own, whatever the pool's
        # thread ran before (the request's context is not copied into it either).
        stale = _stale()
        _store(token)
        stale += gevent.get_hub().threadpool.apply(_threadpool_task, (token,))
        return json_response(_payload(token, stale))

    @app.route("/probe/<token>/partial", methods=["POST"])
    def probe_partial(token: str) -> Response:
        request.stream.read(10)  # the rest of the body is left unread
        stale = _stale()
        _store(token)
        _yield_randomly(1)
        return json_response(_payload(token, stale))

    @app.route("/probe/<token>/error")
    def probe_error(token: str) -> Response:
        _store(token)
        _yield_randomly(1)
        raise ProbeFailure(f"deliberate failure after storing token {token}")

    if unsafe_probe:
        _mount_negative_control(app)
    return app


def _threadpool_task(token: str) -> list[str]:
    found = [f"threadpool {name}={value}" for name in ORPHAN_STORES
             if name != "stack" and (value := STORES[name][0]()) is not None]
    for name in ("local", "threadlocal", "gevent_local", "werkzeug_local", "contextvar"):
        STORES[name][1](token)  # never released: the pool's next task must not see it
    return found


# -- raw-WSGI shapes: what an app does with start_response and its write() ---------------

#: One header list for every response of ``/probe/<token>/headers``, as a module-level
#: constant of an app: the server must never add to it.
SHARED_HEADERS = [("Content-Type", "application/json")]

LATE_WRITE_DELAY = 0.02
"""Seconds after its response ended that ``/probe/<token>/late-write``'s child writes."""


class RaisingClose:
    """A response iterable whose ``close()`` raises after the body went out."""

    def __init__(self, body: bytes) -> None:
        self.body = body

    def __iter__(self) -> Iterator[bytes]:
        yield self.body

    def close(self) -> None:
        raise ProbeFailure("deliberate failure in close()")


def _smuggled(token: str) -> bytes:
    """A whole response with ``token``'s payload: what a late write would slip into the
    connection's next response."""
    body = json.dumps({"token": token, "values": {}, "stale": []}).encode()
    return b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%b" % (len(body), body)


def _late_write(write: Callable[[bytes], Any], token: str) -> None:
    gevent.sleep(LATE_WRITE_DELAY)
    with contextlib.suppress(RuntimeError):  # refused (ResponseEnded): as it should be
        write(_smuggled(token))


class ProbeApp(App):
    """The reference app plus the probe shapes that need raw WSGI (``start_response`` and
    its ``write``), which a framework's Response would hide."""

    RAW = ("late-write", "headers", "close-raises", "exit")

    def dispatch(self, environ: dict[str, Any], start_response: Callable[..., Any]
                 ) -> Iterable[bytes]:
        parts = environ["PATH_INFO"].split("/")
        if len(parts) == 4 and parts[1] == "probe" and parts[3] in self.RAW:
            return self.raw_probe(parts[3], parts[2], start_response)
        return super().dispatch(environ, start_response)

    def raw_probe(self, shape: str, token: str, start_response: Callable[..., Any]
                  ) -> Iterable[bytes]:
        stale = _stale()
        _store(token)
        if shape == "exit":
            raise ProbeExit(f"deliberate GreenletExit after storing token {token}")
        _yield_randomly(1)
        body = json.dumps(_payload(token, stale)).encode()
        if shape == "headers":
            start_response("200 OK", SHARED_HEADERS)
            # The list as the server left it: any X-Request-ID in it is another request's.
            stale += [f"headers={value}" for name, value in SHARED_HEADERS
                      if name.lower() == "x-request-id"]
            return [json.dumps(_payload(token, stale)).encode()]
        if shape == "close-raises":
            start_response("200 OK", [("Content-Type", "application/json")])
            return RaisingClose(body)
        write = start_response("200 OK", [("Content-Type", "application/json")])
        gevent.spawn(_late_write, write, token)
        return iter([body])  # chunked: a late chunk would be well-formed on the wire


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
                  "request_id": str(request_id), **dict.fromkeys(STORES, value)}
        return json_response({"token": token, "values": values, "stale": stale,
                              "pid": os.getpid()})

