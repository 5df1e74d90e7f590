"""A WSGI app that does what a careless or hostile app does to the server (issue 10's holes).

Routes (raw WSGI, no framework, so nothing between the app and the server hides a hole):

- ``/pid``: this worker's pid; ``/slow``: the same after 0.3 s (a neighbour in flight).
- ``/raise/<Name>``: raises ``GreenletExit``, ``SystemExit``, ``KeyboardInterrupt`` or a bare
  ``BaseException`` subclass out of the app, before anything was sent; ``/raise-late/<Name>``
  after the head and a first chunk; ``/spawn-raise/<Name>`` in a ``gevent.spawn`` child.
- ``/late-write/<secret>``: answers, and leaves a child greenlet that keeps the ``write``
  callable and uses it 50 ms after the response ended; ``/late-read`` the same with
  ``wsgi.input``; ``/late-result`` what those children got back (the exception's repr).
- ``/shared-headers``: passes one module-level header list to every ``start_response``.
- ``/own-id``: sets an ``X-Request-ID`` of its own.
- ``/threadpool/<token>``: a task on gevent's threadpool reads what a ``threading.local``,
  a ctxlocal ``Local`` and a ``ContextVar`` hold (left over from earlier tasks), then stores
  the token in each and never resets them; answers ``stale`` like the probe.
"""

from __future__ import annotations

import contextvars
import json
import os
import threading

import gevent
from gevent.monkey import get_original
from greenlet import GreenletExit

from ctxlocal import Local


class AppBaseException(BaseException):
    """Neither Exception nor any exception the runtime knows."""


RAISABLE = {"GreenletExit": GreenletExit, "SystemExit": SystemExit,
            "KeyboardInterrupt": KeyboardInterrupt, "AppBaseException": AppBaseException}

native_thread_id = get_original("threading", "get_ident")

SHARED_HEADERS = [("Content-Type", "text/plain")]
late_results: list[str] = []

task_threadlocal = threading.local()
task_local = Local(name="adversary_task_local")
task_var: contextvars.ContextVar[str] = contextvars.ContextVar("adversary_task_var")


def _text(start_response, body: str, status: str = "200 OK", headers=None):
    data = body.encode()
    start_response(status, [("Content-Type", "text/plain"), ("Content-Length", str(len(data))),
                            *(headers or [])])
    return [data]


def _raise(kind: type[BaseException]) -> None:
    raise kind("raised by a child greenlet of the app")


def _late(action) -> None:
    gevent.sleep(0.05)
    try:
        action()
    except BaseException as exc:  # what the server refused with, reported to the test
        late_results.append(repr(exc))
    else:
        late_results.append("accepted")


def _threadpool_task(token: str) -> dict[str, object]:
    stale = {name: value for name, value in (
        ("threadlocal", getattr(task_threadlocal, "token", None)),
        ("local", getattr(task_local, "token", None)),
        ("contextvar", task_var.get(None))) if value is not None}
    task_threadlocal.token = token
    task_local.token = token
    task_var.set(token)  # never reset: the next task must not see it anyway
    # The OS thread: patched threading.get_ident() names the (fresh) greenlet instead.
    return {"stale": stale, "thread": native_thread_id()}


def app(environ, start_response):
    path = environ["PATH_INFO"]
    head, _, rest = path.strip("/").partition("/")
    if head == "pid":
        return _text(start_response, str(os.getpid()))
    if head == "slow":
        gevent.sleep(0.3)
        return _text(start_response, str(os.getpid()))
    if head == "raise":
        raise RAISABLE[rest]("raised by the app")
    if head == "spawn-raise":  # a child of the app's own, raising on its own
        gevent.spawn(_raise, RAISABLE[rest])
        gevent.sleep(0.01)
        return _text(start_response, str(os.getpid()))
    if head == "raise-late":
        write = start_response("200 OK", [("Content-Type", "text/plain")])
        write(b"first chunk")
        raise RAISABLE[rest]("raised by the app after its first chunk")
    if head == "late-write":
        write = start_response("200 OK", [("Content-Type", "text/plain")])
        gevent.spawn(_late, lambda: write(f"SECRET-OF-{rest}".encode()))
        return iter([b"ok"])  # chunked: a late chunk would be well-formed on the wire
    if head == "late-read":
        body = environ["wsgi.input"]
        gevent.spawn(_late, lambda: body.read(1))
        return _text(start_response, "ok")
    if head == "late-result":
        found, late_results[:] = list(late_results), []
        return _text(start_response, json.dumps(found))
    if head == "shared-headers":
        start_response("200 OK", SHARED_HEADERS)
        return [b"shared"]
    if head == "own-id":
        return _text(start_response, "own", headers=[("X-Request-ID", "set-by-the-app")])
    if head == "threadpool":
        result = gevent.get_hub().threadpool.apply(_threadpool_task, (rest,))
        return _text(start_response, json.dumps(result))
    return _text(start_response, "not found", "404 Not Found")
