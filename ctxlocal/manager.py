"""``LocalManager``: release a set of Locals when a request ends.

The WSGI middleware releases after the response iterable's ``close()`` — not when the app
returns — because a streamed body is produced *after* the app returned and may still read the
context.  It also releases when the app raised before returning an iterable.  Both happen in
the greenlet the server calls them from; on servers that run the app and iterate the body in
the same greenlet (ours, gevent.pywsgi, gunicorn) that is the request's own context.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from functools import update_wrapper
from typing import Any

from .ident import get_ident
from .local import Local, release_local
from .stack import LocalStack

__all__ = ["LocalManager", "ReleasingIterable"]

WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


class ReleasingIterable:
    """Wraps a response iterable: ``close()`` closes it, then runs ``release`` — exactly once,
    also when the iterable's own ``close()`` raised."""

    __slots__ = ("_iterable", "_release", "_released")

    def __init__(self, iterable: Iterable[bytes], release: Callable[[], None]) -> None:
        self._iterable = iterable
        self._release = release
        self._released = False

    def __iter__(self) -> Iterator[bytes]:
        return iter(self._iterable)

    def close(self) -> None:
        try:
            close = getattr(self._iterable, "close", None)
            if close is not None:
                close()
        finally:
            if not self._released:
                self._released = True
                self._release()


class LocalManager:
    """Release ``locals`` (Locals and LocalStacks) for the current context on demand.

    >>> from ctxlocal import Local, LocalManager
    >>> user = Local()
    >>> manager = LocalManager([user])
    >>> user.name = "alice"
    >>> manager.cleanup()
    >>> hasattr(user, "name")
    False

    ``ident_func`` (werkzeug 1.x) sets the identity function of every managed local.
    """

    def __init__(self, locals: Local | LocalStack | Iterable[Local | LocalStack] | None = None,
                 ident_func: Callable[[], Any] | None = None) -> None:
        if locals is None:
            self.locals: list[Any] = []
        elif isinstance(locals, (Local, LocalStack)):
            self.locals = [locals]
        else:
            self.locals = list(locals)
        if ident_func is not None:
            for local in self.locals:
                local.__ident_func__ = ident_func
            self.ident_func = ident_func
        else:
            self.ident_func = get_ident

    def get_ident(self) -> Any:
        """The identity of the current context, as the managed locals see it."""
        return self.ident_func()

    def cleanup(self) -> None:
        """Release every managed local for the current context."""
        for local in self.locals:
            release_local(local)

    def make_middleware(self, app: WSGIApp) -> WSGIApp:
        """Wrap a WSGI app so the managed locals are released when each request ends."""
        cleanup = self.cleanup

        def application(environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
            try:
                iterable = app(environ, start_response)
            except BaseException:
                cleanup()
                raise
            return ReleasingIterable(iterable, cleanup)

        return application

    def middleware(self, func: WSGIApp) -> WSGIApp:
        """Decorator form of :meth:`make_middleware`."""
        return update_wrapper(self.make_middleware(func), func)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} storages: {len(self.locals)}>"
