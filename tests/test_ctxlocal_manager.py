"""``LocalManager.make_middleware``: release after the response's ``close()``, never before.

The WSGI apps here are driven by hand, as a server would (call, iterate, close), so each
step can be checked; one test drives a wrapped app with werkzeug's test client.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any

import gevent
import pytest
from werkzeug.test import Client
from werkzeug.wrappers import Response

from ctxlocal import Local, LocalManager, LocalStack, get_ident

StartResponse = Callable[..., Any]


def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> None:
    """A start_response that accepts anything (the tests look at the body)."""


class Counted:
    """A Local/LocalStack stand-in for release_local that counts its releases."""

    def __init__(self) -> None:
        self.releases = 0

    def __release_local__(self) -> None:
        self.releases += 1


def test_streamed_body_sees_the_local_until_close() -> None:
    """A generator body runs *after* the app returned: it must still see the request's
    values, which are released only by close()."""
    loc = Local()
    stack = LocalStack()
    manager = LocalManager([loc, stack])
    seen: list[str] = []

    def app(environ: dict[str, Any], start: StartResponse) -> Iterable[bytes]:
        loc.user = environ["user"]
        stack.push(environ["user"].upper())
        start("200 OK", [])

        def body() -> Iterator[bytes]:
            for _ in range(3):
                seen.append(f"{loc.user}/{stack.top}")
                yield loc.user.encode()

        return body()

    wrapped = manager.make_middleware(app)
    response = wrapped({"user": "alice"}, start_response)
    assert loc.user == "alice"  # returned, not closed: still there
    assert b"".join(response) == b"alicealicealice"
    assert seen == ["alice/ALICE"] * 3
    assert loc.user == "alice"  # iterated, not closed: still there
    response.close()  # type: ignore[attr-defined]
    assert not hasattr(loc, "user")
    assert stack.top is None
    assert loc.__storage__ == {}
    assert stack._local.__storage__ == {}


def test_close_of_the_app_iterable_runs_before_release() -> None:
    """The app's own close() (a generator's finally, say) may still use the context."""
    loc = Local()
    manager = LocalManager([loc])
    in_close: list[str] = []

    class Body:
        def __iter__(self) -> Iterator[bytes]:
            yield b"x"

        def close(self) -> None:
            in_close.append(loc.user)

    def app(environ: dict[str, Any], start: StartResponse) -> Iterable[bytes]:
        loc.user = "bob"
        return Body()

    response = manager.make_middleware(app)({}, start_response)
    list(response)
    response.close()  # type: ignore[attr-defined]
    assert in_close == ["bob"]
    assert not hasattr(loc, "user")


def test_release_when_the_app_raises_before_returning() -> None:
    """An app that raises never returns an iterable to close: release at once."""
    loc = Local()
    manager = LocalManager([loc])

    def app(environ: dict[str, Any], start: StartResponse) -> Iterable[bytes]:
        loc.user = "carol"
        raise LookupError("app failed")

    with pytest.raises(LookupError, match="app failed"):
        manager.make_middleware(app)({}, start_response)
    assert not hasattr(loc, "user")
    assert loc.__storage__ == {}


def test_release_when_close_raises() -> None:
    """A close() that raises still releases, and the error reaches the server."""
    loc = Local()
    manager = LocalManager([loc])

    class Body:
        def __iter__(self) -> Iterator[bytes]:
            return iter([b"x"])

        def close(self) -> None:
            raise OSError("close failed")

    def app(environ: dict[str, Any], start: StartResponse) -> Iterable[bytes]:
        loc.user = "dave"
        return Body()

    response = manager.make_middleware(app)({}, start_response)
    list(response)
    with pytest.raises(OSError, match="close failed"):
        response.close()  # type: ignore[attr-defined]
    assert not hasattr(loc, "user")


def test_release_when_iteration_raises() -> None:
    """A body that fails halfway: the server still calls close(), which releases."""
    loc = Local()
    manager = LocalManager([loc])

    def app(environ: dict[str, Any], start: StartResponse) -> Iterable[bytes]:
        loc.user = "erin"

        def body() -> Iterator[bytes]:
            yield b"first"
            raise ValueError("broken body")

        return body()

    response = manager.make_middleware(app)({}, start_response)
    with pytest.raises(ValueError, match="broken body"):
        list(response)
    assert loc.user == "erin"
    response.close()  # type: ignore[attr-defined]
    assert not hasattr(loc, "user")


def test_released_exactly_once() -> None:
    """However often close() is called, each managed local is released once."""
    counted = Counted()
    manager = LocalManager([counted])  # type: ignore[list-item]

    def app(environ: dict[str, Any], start: StartResponse) -> Iterable[bytes]:
        return [b"body"]

    response = manager.make_middleware(app)({}, start_response)
    assert counted.releases == 0
    list(response)
    assert counted.releases == 0
    response.close()  # type: ignore[attr-defined]
    response.close()  # type: ignore[attr-defined]
    assert counted.releases == 1


def test_released_once_when_the_app_raises() -> None:
    """The raising path releases once, too."""
    counted = Counted()

    def app(environ: dict[str, Any], start: StartResponse) -> Iterable[bytes]:
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        LocalManager([counted]).make_middleware(app)({}, start_response)  # type: ignore[list-item]
    assert counted.releases == 1


def test_middleware_decorator() -> None:
    """``@manager.middleware`` wraps like make_middleware and keeps the app's metadata."""
    loc = Local()
    manager = LocalManager([loc])

    @manager.middleware
    def application(environ: dict[str, Any], start: StartResponse) -> Iterable[bytes]:
        """The app's docstring."""
        loc.user = "frank"
        start("200 OK", [])
        return [loc.user.encode()]

    assert application.__name__ == "application"
    assert application.__doc__ == "The app's docstring."
    response = application({}, start_response)
    assert list(response) == [b"frank"]
    response.close()  # type: ignore[attr-defined]
    assert loc.__storage__ == {}


def test_each_request_in_its_own_greenlet() -> None:
    """Concurrent requests, interleaving while streaming, each see their own values and
    each release only their own."""
    loc = Local()
    manager = LocalManager([loc])

    def app(environ: dict[str, Any], start: StartResponse) -> Iterable[bytes]:
        loc.user = environ["user"]

        def body() -> Iterator[bytes]:
            for _ in range(3):
                gevent.sleep(0)
                yield loc.user.encode()

        return body()

    wrapped = manager.make_middleware(app)

    def serve(user: str) -> tuple[bytes, bool]:
        response = wrapped({"user": user}, start_response)
        try:
            body = b"".join(response)
        finally:
            response.close()  # type: ignore[attr-defined]
        return body, get_ident() in loc.__storage__

    workers = [gevent.spawn(serve, f"u{n}") for n in range(20)]
    gevent.joinall(workers, raise_error=True)
    assert [worker.value for worker in workers] == [
        (f"u{n}".encode() * 3, False) for n in range(20)]


def test_werkzeug_test_client() -> None:
    """A wrapped app driven by werkzeug's test client: the body sees the context and the
    context is gone after the client closed the response."""
    loc = Local()
    manager = LocalManager([loc])

    def app(environ: dict[str, Any], start: StartResponse) -> Iterable[bytes]:
        loc.path = environ["PATH_INFO"]

        def body() -> Iterator[bytes]:
            yield b"path="
            yield loc.path.encode()

        return Response(body(), mimetype="text/plain")(environ, start)

    client = Client(manager.make_middleware(app))
    response = client.get("/hello", buffered=True)
    assert response.status_code == 200
    assert response.get_data() == b"path=/hello"
    assert loc.__storage__ == {}
    streamed = client.get("/streamed")
    assert streamed.get_data() == b"path=/streamed"
    streamed.close()
    assert loc.__storage__ == {}
