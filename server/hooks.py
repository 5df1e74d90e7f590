"""Server hooks: gunicorn's names, arguments and moments, from the config file.

==================  ================================  ==============================================
hook                arguments                         called
==================  ================================  ==============================================
on_starting         server                            master, before the sockets are bound
when_ready          server                            master, sockets bound, before the first fork
pre_fork            server, worker                    master, just before a worker is forked
post_fork           server, worker                    the new worker, just after the fork
post_worker_init    worker                            the worker, app loaded, before it serves
pre_request         worker, req                       the worker, in the request's greenlet and
                                                      context, before the app is called
post_request        worker, req, environ, resp        the same request's greenlet and context,
                                                      after the response was sent (a list
                                                      response: as the app returns it)
worker_int          worker                            the worker, on INT or QUIT
worker_abort        worker                            the worker, when the watchdog times it out
                                                      (only if its event loop is blocked in
                                                      Python code: one blocked in C is killed)
worker_exit         server, worker                    the worker, as it exits
child_exit          server, worker                    master, after a worker exited
nworkers_changed    server, new_value, old_value      master, on TTIN/TTOU, and a HUP that changes
                                                      ``workers``
on_reload           server                            master, on HUP, once the config file was
                                                      re-read: the new file's (as gunicorn)
on_exit             server                            master, just before it exits
==================  ================================  ==============================================

``server`` is the :class:`~server.arbiter.Arbiter` and ``worker`` the
:class:`~server.worker.Worker`; both have ``pid``, ``cfg`` (the resolved
:class:`~server.config.Config`) and ``log``.  A hook that raises is logged with its name
and the server goes on — except ``on_starting`` and ``when_ready``, which stop the start
(exit 2), and ``pre_request``, whose request is answered 500 (a hook that checks something
must not be skipped by failing).

Isolation: ``pre_request`` and ``post_request`` run in the request's own greenlet, inside
its request context — ``g``, ``request_id``, a ``threading.local`` or a ctxlocal Local set
there belong to that request and are released with it. ``worker`` is shared by every
request of the process: state kept on it is shared too, as in gunicorn.
"""

from __future__ import annotations

import functools
import inspect
import logging
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

__all__ = ["FATAL_HOOKS", "HOOKS", "HookError", "HookRequest", "HookResponse", "Hooks",
           "check_hook", "with_request_hooks"]

#: Each hook's arguments, as gunicorn passes them.
HOOKS: dict[str, tuple[str, ...]] = {
    "on_starting": ("server",),
    "on_reload": ("server",),
    "when_ready": ("server",),
    "pre_fork": ("server", "worker"),
    "post_fork": ("server", "worker"),
    "post_worker_init": ("worker",),
    "worker_int": ("worker",),
    "worker_abort": ("worker",),
    "pre_request": ("worker", "req"),
    "post_request": ("worker", "req", "environ", "resp"),
    "child_exit": ("server", "worker"),
    "worker_exit": ("server", "worker"),
    "nworkers_changed": ("server", "new_value", "old_value"),
    "on_exit": ("server",),
}
#: Hooks whose failure stops the start (gunicorn: an exception there ends the master).
FATAL_HOOKS = ("on_starting", "when_ready")

WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


class HookError(Exception):
    """A fatal hook raised: ``server: error: hook on_starting failed: ...``, exit 2."""


def _takes(func: Callable[..., Any], count: int) -> bool:
    try:
        inspect.signature(func).bind(*range(count))
    except TypeError:
        return False
    except ValueError:  # no signature (some builtins): trust it
        return True
    return True


def check_hook(name: str, func: Any) -> Callable[..., Any]:
    """``func`` as hook ``name``; ValueError unless it can be called with its arguments.

    ``post_request`` may take 2, 3 or 4 arguments, as gunicorn allows."""
    if not callable(func):
        raise ValueError(f"must be a function taking ({', '.join(HOOKS[name])})")
    names = HOOKS[name]
    if name == "post_request":
        for count in (4, 3, 2):
            if _takes(func, count):
                return func if count == 4 else _first(func, count)
    elif _takes(func, len(names)):
        return func
    raise ValueError(f"must take {len(names)} argument(s): ({', '.join(names)})")


def _first(func: Callable[..., Any], count: int) -> Callable[..., Any]:
    @functools.wraps(func)  # a reload compares the hook's own code (server.reload)
    def call(*args: Any) -> Any:
        return func(*args[:count])
    return call


class Hooks:
    """The configured hooks; calling one logs (with its name) and returns what it raised."""

    def __init__(self, funcs: Mapping[str, Callable[..., Any]], log: logging.Logger) -> None:
        self.funcs = dict(funcs)
        self.log = log

    def __contains__(self, name: str) -> bool:
        return name in self.funcs

    def __call__(self, name: str, *args: Any) -> BaseException | None:
        func = self.funcs.get(name)
        if func is None:
            return None
        try:
            func(*args)
        except Exception as exc:
            self.log.exception("hook %s raised %s: %s", name, type(exc).__name__, exc)
            return exc
        return None

    def fatal(self, name: str, *args: Any) -> None:
        """Call a start-up hook; HookError (exit 2) if it raised."""
        exc = self(name, *args)
        if exc is not None:
            raise HookError(f"hook {name} failed: {type(exc).__name__}: {exc}")


class HookRequest:
    """gunicorn's ``req`` as hooks use it: method, uri, path, query, version, headers
    (upper-case names), plus the environ."""

    def __init__(self, environ: dict[str, Any]) -> None:
        self.environ = environ
        self.method = environ.get("REQUEST_METHOD", "")
        self.path = environ.get("PATH_INFO", "")
        self.query = environ.get("QUERY_STRING", "")
        self.uri = environ.get("RAW_URI") or (self.path + (f"?{self.query}" if self.query
                                                           else ""))
        protocol = environ.get("SERVER_PROTOCOL", "HTTP/1.1")
        major, _, minor = protocol.partition("/")[2].partition(".")
        self.version = (int(major or 1), int(minor or 0))
        self.scheme = environ.get("wsgi.url_scheme", "http")
        self.remote_addr = environ.get("REMOTE_ADDR")
        self.headers = [(key[5:].replace("_", "-"), value) for key, value in environ.items()
                        if key.startswith("HTTP_")]
        for key in ("CONTENT_TYPE", "CONTENT_LENGTH"):
            if environ.get(key):
                self.headers.append((key.replace("_", "-"), environ[key]))


class HookResponse:
    """gunicorn's ``resp`` for ``post_request``: status, status_code, headers, sent."""

    def __init__(self) -> None:
        self.status: str | None = None
        self.headers: list[tuple[str, str]] = []
        self.sent = 0

    @property
    def status_code(self) -> int | None:
        return int(self.status.split(None, 1)[0]) if self.status else None

    @property
    def response_length(self) -> int:
        return self.sent


_ERROR_BODY = b"Internal Server Error\n"


class _AfterClose:
    """The app's response iterable, counting what it yields; ``close()`` closes the app's
    iterable, then runs ``post_request`` — still inside the request's context, which the
    middleware ends after this close."""

    def __init__(self, iterable: Iterable[bytes], resp: HookResponse,
                 done: Callable[[], None]) -> None:
        self.iterable = iterable
        self.resp = resp
        self.done = done

    def __iter__(self) -> Iterator[bytes]:
        for chunk in self.iterable:
            self.resp.sent += len(chunk)
            yield chunk

    def close(self) -> None:
        try:
            close = getattr(self.iterable, "close", None)
            if close is not None:
                close()
        finally:
            self.done()


def with_request_hooks(app: WSGIApp, worker: Any, hooks: Hooks) -> WSGIApp:
    """``app`` with ``pre_request`` before it and ``post_request`` after its response, both
    in the request's greenlet and context (this runs inside the context middleware)."""
    if "pre_request" not in hooks and "post_request" not in hooks:
        return app

    def hooked(environ: dict[str, Any], start_response: Callable[..., Any]
               ) -> Iterable[bytes]:
        req, resp = HookRequest(environ), HookResponse()

        def start(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            resp.status, resp.headers = status, headers
            return start_response(status, headers, exc_info)

        def done() -> None:
            hooks("post_request", worker, req, environ, resp)

        if hooks("pre_request", worker, req) is not None:
            start("500 Internal Server Error", [("Content-Type", "text/plain"),
                                                ("Content-Length", str(len(_ERROR_BODY)))])
            resp.sent = len(_ERROR_BODY)
            done()
            return [_ERROR_BODY]
        try:
            result = app(environ, start)
        except BaseException:
            done()
            raise
        if type(result) is list or type(result) is tuple:
            resp.sent = sum(len(chunk) for chunk in result)
            done()
            return result
        return _AfterClose(result, resp, done)

    return hooked
