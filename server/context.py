"""Per-request context: ``request``, ``g``, ``current_app``, ``request_id``, and the
middleware that gives every request a fresh one and releases it when the request ends.

The context lives exactly as long as the request, not as long as the connection: it is
pushed before the app is called and popped — with every ctxlocal Local released for the
request's greenlet — after the response iterable has been exhausted and ``close()``-d,
also when the app raised or the client went away.  (A response that is a plain list or
tuple runs no app code when iterated and has no ``close()``: its context ends as soon as
the app returns it.)  The server runs each request in a
greenlet of its own (see :mod:`server.handler`), so this is the second of two guards.

Usage from an app::

    from server import request, g, current_app, request_id

    def view():
        g.user = request.headers.get("X-User")
        ...
"""

from __future__ import annotations

import os
import random
import re
from collections.abc import Callable, Iterable, Iterator
from functools import partial
from typing import Any

import gevent
from werkzeug.wrappers import Request

import ctxlocal
from ctxlocal import LocalProxy, LocalStack, ReleasingIterable

__all__ = [
    "ContextMiddleware",
    "Namespace",
    "RequestContext",
    "current_app",
    "g",
    "request",
    "request_id",
    "spawn",
]

_UNBOUND = ("working outside of a request context: {} is only available while a request is "
            "being handled (in its greenlet, or a child spawned with server.spawn)")

request_stack = LocalStack(name="request_context")
"""The stack of :class:`RequestContext` objects of the current greenlet."""

request: Request = LocalProxy(request_stack, "request",  # type: ignore[assignment]
                              unbound_message=_UNBOUND.format("'request'"))
g: Namespace = LocalProxy(request_stack, "g",  # type: ignore[assignment]
                          unbound_message=_UNBOUND.format("'g'"))
current_app: Any = LocalProxy(request_stack, "app",
                              unbound_message=_UNBOUND.format("'current_app'"))
request_id: str = LocalProxy(request_stack, "request_id",  # type: ignore[assignment]
                             unbound_message=_UNBOUND.format("'request_id'"))

_VALID_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}\Z")

# Generated request ids: 64 random bits as 16 hex digits. They only need to be unique (a
# client may send any id it likes, so they carry no secret), hence a Mersenne Twister of
# our own, seeded from os.urandom and reseeded in every forked worker (else two workers
# would hand out the same sequence), rather than one getrandom() syscall per request.
# Its getrandbits() is a single C call, atomic under the GIL, so threads are fine too.
_ids = random.Random()
os.register_at_fork(after_in_child=_ids.seed)
_random_bits = _ids.getrandbits


def sanitise_request_id(raw: str | None) -> str:
    """The client's ``X-Request-ID`` if it is short and plain, else a fresh random id.

    Plain means letters, digits and ``._:-``, at most 128 characters: anything else could
    smuggle newlines or markup into logs and response headers.
    """
    if raw and _VALID_REQUEST_ID.match(raw):
        return raw
    # 16 hex digits, zero-padded; bytes.hex() is ~4x cheaper than an f"{:016x}" format.
    return _random_bits(64).to_bytes(8, "big").hex()


def with_request_id(headers: list[tuple[str, str]], rid: str) -> list[tuple[str, str]]:
    """The response headers with ``X-Request-ID: rid`` -- in a new list, never the app's.

    The app's list may be a module-level constant it passes to every ``start_response``:
    appending to it would send each earlier client's id to every later one (issue 10,
    hole 3).  An app that set an ``X-Request-ID`` of its own keeps it, alone.
    """
    for name, _value in headers:
        if name.lower() == "x-request-id":
            return headers
    return [*headers, ("X-Request-ID", rid)]


class Namespace:
    """``g``: a plain attribute bag for one request (``get``, ``pop``, ``setdefault``, ``in``)."""

    def get(self, name: str, default: Any = None) -> Any:
        return self.__dict__.get(name, default)

    def pop(self, name: str, *default: Any) -> Any:
        return self.__dict__.pop(name, *default)

    def setdefault(self, name: str, default: Any = None) -> Any:
        return self.__dict__.setdefault(name, default)

    def __contains__(self, name: str) -> bool:
        return name in self.__dict__

    def __iter__(self) -> Iterator[str]:
        return iter(self.__dict__)

    def __len__(self) -> int:
        return len(self.__dict__)

    def __repr__(self) -> str:
        return f"<g {self.__dict__!r}>"


class RequestContext:
    """Everything that belongs to one request.  ``request`` is built on first use, so an
    app that never touches it does not pay for a werkzeug ``Request``."""

    __slots__ = ("_request", "app", "environ", "g", "request_id")

    def __init__(self, app: Any, environ: dict[str, Any], request_id: str) -> None:
        self.app = app
        self.environ = environ
        self.request_id = request_id
        self.g = Namespace()
        self._request: Request | None = None

    @property
    def request(self) -> Request:
        req = self._request
        if req is None:
            req = self._request = Request(self.environ)
        return req

    def push(self) -> None:
        request_stack.push(self)

    def pop(self) -> None:
        popped = request_stack.pop()
        if popped is not self:  # pragma: no cover - would be a bug in push/pop pairing
            raise RuntimeError(f"popped the wrong request context: {popped!r}")

    def __copy_context__(self) -> RequestContext:
        """A child greenlet's copy: same request, its own copy of ``g``."""
        clone = RequestContext(self.app, self.environ, self.request_id)
        clone._request = self._request
        clone.g.__dict__.update(self.g.__dict__)
        return clone

    def __repr__(self) -> str:
        return f"<RequestContext {self.environ.get('REQUEST_METHOD')} " \
               f"{self.environ.get('PATH_INFO')!r} id={self.request_id}>"


def spawn(func: Callable[..., Any], *args: Any, **kwargs: Any) -> gevent.Greenlet:
    """``gevent.spawn`` for a child that needs the request: it gets a *copy* of the context.

    The child sees ``request``, ``current_app``, ``request_id``, a copy of ``g``, and copies
    of every other ctxlocal Local the request set (the app's own); what it writes or pushes
    never reaches the parent.  Its copies are released when it ends.
    """
    return ctxlocal.spawn(func, *args, **kwargs)


def _end(context: RequestContext) -> None:
    """End a request: pop its context, then release every ctxlocal Local of this greenlet."""
    try:
        context.pop()
    finally:
        ctxlocal.release_context()


class ContextMiddleware:
    """Wrap any WSGI app so each request runs with a fresh :class:`RequestContext`.

    Works for apps that know nothing of this server (Flask, Django, a bare callable): they
    get ``X-Request-ID`` handling and the end-of-request release of ctxlocal Locals.
    """

    def __init__(self, app: Callable[..., Iterable[bytes]], *,
                 current_app: Any = None) -> None:
        self.app = app
        # What ``current_app`` shows: the app itself unless it is an inner entry point
        # (App.dispatch) of an object that wants to be seen instead.
        self.current_app = app if current_app is None else current_app

    def __call__(self, environ: dict[str, Any],
                 start_response: Callable[..., Any]) -> Iterable[bytes]:
        rid = sanitise_request_id(environ.get("HTTP_X_REQUEST_ID"))
        environ["ctxserver.request_id"] = rid
        context = RequestContext(self.current_app, environ, rid)
        context.push()

        def start_with_id(status: str, headers: list[tuple[str, str]],
                          exc_info: Any = None) -> Callable[[bytes], Any]:
            return start_response(status, with_request_id(headers, rid), exc_info)

        try:
            iterable = self.app(environ, start_with_id)
        except BaseException:
            _end(context)
            raise
        if type(iterable) is list or type(iterable) is tuple:
            # Iterating a list runs no code of the app's and it has no close(): the request
            # is over as far as the app can tell, so the context ends now. The server also
            # still sees the list itself (it frames it with a Content-Length, one send).
            _end(context)
            return iterable
        # close() closes the app's iterable, then ends the context — exactly once.
        return ReleasingIterable(iterable, partial(_end, context))
