"""``App``: a small framework for apps written for this server.

werkzeug does the HTTP work (routing, Request/Response, HTTP exceptions); ``App`` adds what
every app otherwise rewrites: view functions returning str/bytes/dict/list/tuples, JSON
responses, error handlers, before/after-request hooks.  Request data is reached through the
context proxies (``server.request``, ``server.g``), which are valid only in the request's
greenlet — the server guarantees they never show another request's data.

    from server import App, request, g

    app = App()

    @app.route("/hello/<name>")
    def hello(name):
        return {"hello": name, "agent": request.user_agent.string}
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable
from typing import Any

from werkzeug.exceptions import HTTPException, InternalServerError
from werkzeug.routing import Map, Rule
from werkzeug.wrappers import Response

from .context import ContextMiddleware, request, request_id, request_stack

__all__ = ["App", "json_response"]

log = logging.getLogger("server.app")

View = Callable[..., Any]
ErrorHandler = Callable[[BaseException], Any]


def json_response(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    """A ``Response`` with ``data`` serialised as compact JSON."""
    body = json.dumps(data, separators=(",", ":"), default=str)
    return Response(body, status=status, headers=headers, mimetype="application/json")


class App:
    """A WSGI application with werkzeug routing, hooks and error handlers.

    Calling the App serves a request; when it runs under another server (or in a werkzeug
    test client) it pushes its own request context, so the proxies work there too.
    """

    response_class = Response

    def __init__(self, name: str = "app", *,
                 propagate_exceptions: tuple[type[BaseException], ...] = ()) -> None:
        self.name = name
        # Exceptions of these types are not turned into responses here but reach the server,
        # which answers 500 and logs them (the reference app uses it to test that path).
        self.propagate_exceptions = propagate_exceptions
        self.url_map = Map(strict_slashes=True)
        self.view_functions: dict[str, View] = {}
        self.before_request_funcs: list[Callable[[], Any]] = []
        self.after_request_funcs: list[Callable[[Response], Response | None]] = []
        self.error_handlers: dict[type[BaseException] | int, ErrorHandler] = {}
        self._standalone = ContextMiddleware(self.dispatch, current_app=self)

    # -- registration -----------------------------------------------------------------------
    def route(self, rule: str, methods: Iterable[str] | None = None,
              endpoint: str | None = None) -> Callable[[View], View]:
        """Register a view for a werkzeug URL rule (``/user/<int:id>``)."""

        def decorator(view: View) -> View:
            self.add_url_rule(rule, view, methods=methods, endpoint=endpoint)
            return view

        return decorator

    def add_url_rule(self, rule: str, view: View, methods: Iterable[str] | None = None,
                     endpoint: str | None = None) -> None:
        name = endpoint or view.__name__
        if name in self.view_functions and self.view_functions[name] is not view:
            raise ValueError(f"endpoint {name!r} is already bound to another view")
        self.url_map.add(Rule(rule, endpoint=name, methods=list(methods) if methods else None))
        self.view_functions[name] = view

    def before_request(self, func: Callable[[], Any]) -> Callable[[], Any]:
        """Run ``func()`` before each view; a non-None return value becomes the response."""
        self.before_request_funcs.append(func)
        return func

    def after_request(self, func: Callable[[Response], Response | None]
                      ) -> Callable[[Response], Response | None]:
        """Run ``func(response)`` after each view; it may return a replacement response."""
        self.after_request_funcs.append(func)
        return func

    def errorhandler(self, key: type[BaseException] | int) -> Callable[[ErrorHandler],
                                                                      ErrorHandler]:
        """Handle an HTTP status code (404, 500, ...) or an exception class."""

        def decorator(func: ErrorHandler) -> ErrorHandler:
            self.error_handlers[key] = func
            return func

        return decorator

    # -- serving ----------------------------------------------------------------------------
    def make_response(self, rv: Any) -> Response:
        """Turn a view's return value into a Response.

        ``Response`` → as is; ``str``/``bytes`` → text/plain (str) or
        application/octet-stream (bytes); ``dict``/``list`` → JSON; ``(body, status)`` or
        ``(body, status, headers)``; an iterator/generator → a streamed response.
        """
        status: int | None = None
        headers: Any = None
        if isinstance(rv, tuple):
            if len(rv) == 2:
                rv, status = rv
            elif len(rv) == 3:
                rv, status, headers = rv
            else:
                raise TypeError("a view may return (body, status) or (body, status, headers)")
        if isinstance(rv, Response):
            response = rv
        elif isinstance(rv, str):
            response = self.response_class(rv, mimetype="text/plain")
        elif isinstance(rv, bytes):
            response = self.response_class(rv, mimetype="application/octet-stream")
        elif isinstance(rv, (dict, list)):
            response = json_response(rv)
        elif rv is None:
            raise TypeError("the view returned None; return a response, str, bytes or dict")
        elif hasattr(rv, "__iter__"):
            response = self.response_class(rv, mimetype="text/plain", direct_passthrough=True)
        else:
            raise TypeError(f"cannot make a response from {type(rv).__name__}")
        if status is not None:
            response.status_code = status
        if headers:
            response.headers.update(headers)
        return response

    def handle_exception(self, exc: BaseException) -> Response:
        """Find a handler for ``exc``; HTTP errors keep their status, others become 500."""
        status = exc.code if isinstance(exc, HTTPException) else 500
        for key in (*type(exc).__mro__, status):
            handler = self.error_handlers.get(key)
            if handler is not None:
                return self.make_response(handler(exc))
        if isinstance(exc, HTTPException):
            return exc.get_response()  # type: ignore[return-value]
        log.error("unhandled exception in %s %s (request_id=%s)", request.method,
                  request.path, request_id, exc_info=exc)
        return InternalServerError().get_response()  # type: ignore[return-value]

    def full_dispatch(self) -> Response:
        """Hooks, routing and the view, for the request in the current context."""
        try:
            response = None
            for func in self.before_request_funcs:
                rv = func()
                if rv is not None:
                    response = self.make_response(rv)
                    break
            if response is None:
                adapter = self.url_map.bind_to_environ(request.environ)
                endpoint, args = adapter.match()
                request.view_args = args  # type: ignore[attr-defined]
                response = self.make_response(self.view_functions[endpoint](**args))
        except self.propagate_exceptions:
            raise
        except Exception as exc:
            response = self.handle_exception(exc)
        for func in self.after_request_funcs:
            response = func(response) or response
        return response

    def dispatch(self, environ: dict[str, Any], start_response: Callable[..., Any]
                 ) -> Iterable[bytes]:
        """The WSGI entry when a request context is already pushed (under our server)."""
        return self.full_dispatch()(environ, start_response)

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]
                 ) -> Iterable[bytes]:
        # Under our server the context middleware already pushed a context for this very
        # environ; elsewhere (another server, a test client) push one ourselves.
        top = request_stack.top
        if top is not None and top.environ is environ:
            return self.dispatch(environ, start_response)
        return self._standalone(environ, start_response)

    def __repr__(self) -> str:
        return f"<App {self.name!r} rules={len(self.view_functions)}>"

