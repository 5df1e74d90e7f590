"""The per-connection loop (server/handler.py) over real sockets on 127.0.0.1.

The central property: every request runs in a greenlet of its own, so greenlet-keyed
context can never leak from one request to the next on a keep-alive connection. Also:
iterable close(), application errors, client disconnects, timeouts, and drain().
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from typing import Any

import gevent
import gevent.event
import gevent.local
import gevent.socket
import pytest

from server.http import ClientDisconnected, HTTPError, Limits
from tests.inprocess import CLIENT_TIMEOUT, TEST_LIMITS, Server

FAST_LIMITS = Limits(
    max_request_line=1024,
    max_header_size=4096,
    max_header_count=20,
    max_body_size=10_000,
    header_timeout=0.3,
    keep_alive=0.3,
)


def hello_app(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"hello"]


def wait_for(predicate: Callable[[], bool], what: str) -> None:
    """Poll a condition the test cannot wait on directly (bounded, never a speed claim)."""
    with gevent.Timeout(CLIENT_TIMEOUT, AssertionError(f"timed out waiting for {what}")):
        while not predicate():
            gevent.sleep(0.005)


class ClosingIterable:
    """A response iterable that records whether close() was called."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self.chunks = chunks
        self.closed = gevent.event.Event()

    def __iter__(self) -> Iterator[bytes]:
        return self.chunks

    def close(self) -> None:
        self.closed.set()


# --------------------------------------------------------------------------- greenlet per request


def test_each_request_runs_in_a_fresh_greenlet(serve: Callable[..., Server]) -> None:
    local = gevent.local.local()
    greenlets: list[Any] = []  # the objects themselves: ids of dead greenlets could recur
    leaked: list[Any] = []

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        greenlets.append(gevent.getcurrent())
        leaked.append(getattr(local, "user", None))
        local.user = environ["PATH_INFO"]  # what a careless request would leave behind
        start_response("200 OK", [])
        return [b"ok"]

    server = serve(app)
    client = server.connect()
    for i in range(5):
        assert client.get(f"/user{i}").status == 200
    assert leaked == [None] * 5
    assert len({id(g) for g in greenlets}) == 5
    # each ran in a greenlet that finished with its request
    assert all(g.dead for g in greenlets)
    # and none of them was the connection's greenlet (which is still serving the client)
    connection_greenlets = list(server.stream.pool)
    assert len(connection_greenlets) == 1
    assert not any(g is connection_greenlets[0] for g in greenlets)


def test_pipelined_requests_also_get_fresh_greenlets(serve: Callable[..., Server]) -> None:
    local = gevent.local.local()
    leaked: list[Any] = []

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        leaked.append(getattr(local, "value", None))
        local.value = environ["PATH_INFO"]
        start_response("200 OK", [])
        return [b"ok"]

    client = serve(app).connect()
    client.send(b"".join(b"GET /%d HTTP/1.1\r\n\r\n" % i for i in range(10)))
    for _ in range(10):
        assert client.read_response().body == b"ok"
    assert leaked == [None] * 10


# --------------------------------------------------------------------------- iterable close()


def test_close_called_on_normal_completion(serve: Callable[..., Server]) -> None:
    iterables: list[ClosingIterable] = []

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> ClosingIterable:
        start_response("200 OK", [])
        iterables.append(ClosingIterable(iter([b"a", b"b"])))
        return iterables[-1]

    client = serve(app).connect()
    assert client.get("/").body == b"ab"
    assert iterables[0].closed.wait(CLIENT_TIMEOUT)


def test_close_called_when_client_disconnects_mid_stream(serve: Callable[..., Server]) -> None:
    iterables: list[ClosingIterable] = []
    reports: list[tuple[int, int]] = []

    def endless() -> Iterator[bytes]:
        for _ in range(100_000):  # bounded: ~6.5 GB, far more than any socket buffer
            yield b"x" * 65536

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> ClosingIterable:
        start_response("200 OK", [])
        iterables.append(ClosingIterable(endless()))
        return iterables[-1]

    server = serve(app, on_response=lambda env, status, sent, dur: reports.append((status, sent)))
    client = server.connect()
    client.send(b"GET / HTTP/1.1\r\n\r\n")
    client._fill()  # the stream has started
    client.close()
    wait_for(lambda: bool(iterables), "the app to be called")
    assert iterables[0].closed.wait(CLIENT_TIMEOUT)
    wait_for(lambda: bool(reports), "on_response")
    status, sent = reports[0]
    assert status == 200 and 0 < sent < 100_000 * 65536
    wait_for(lambda: server.handler.open_connections == 0, "the connection to be closed")


def test_close_called_when_app_raises_while_iterating(
    serve: Callable[..., Server], caplog: pytest.LogCaptureFixture
) -> None:
    iterables: list[ClosingIterable] = []

    def failing() -> Iterator[bytes]:
        yield b"first"
        raise RuntimeError("iteration failed")

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> ClosingIterable:
        start_response("200 OK", [])
        iterables.append(ClosingIterable(failing()))
        return iterables[-1]

    client = serve(app).connect()
    client.send(b"GET / HTTP/1.1\r\n\r\n")
    raw = client.read_to_eof()  # headers were sent: the connection is just closed
    assert raw.startswith(b"HTTP/1.1 200 OK\r\n")
    assert raw.endswith(b"5\r\nfirst\r\n")  # no terminating chunk: visibly truncated
    assert iterables[0].closed.wait(CLIENT_TIMEOUT)
    assert "iteration failed" in caplog.text


def test_close_exception_is_logged_not_raised(
    serve: Callable[..., Server], caplog: pytest.LogCaptureFixture
) -> None:
    class BadClose:
        def __iter__(self) -> Iterator[bytes]:
            return iter([b"ok"])

        def close(self) -> None:
            raise RuntimeError("close failed")

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> BadClose:
        start_response("200 OK", [])
        return BadClose()

    client = serve(app).connect()
    assert client.get("/").body == b"ok"
    assert client.get("/").body == b"ok"
    assert "close failed" in caplog.text


# --------------------------------------------------------------------------- application errors


def test_app_error_before_headers_gives_generic_500(
    serve: Callable[..., Server], caplog: pytest.LogCaptureFixture
) -> None:
    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        environ["ctxserver.request_id"] = "rid-42"
        if environ["PATH_INFO"] == "/boom":
            raise ValueError("secret internal detail")
        return hello_app(environ, start_response)

    logger = logging.getLogger("test.connection.app_errors")
    server = serve(app, logger=logger)
    client = server.connect()
    with caplog.at_level(logging.ERROR, logger=logger.name):
        resp = client.get("/boom")
    assert resp.status == 500
    assert resp.body == b"500 Internal Server Error\n"
    assert b"secret" not in resp.raw and b"Traceback" not in resp.raw
    assert resp.header("Connection") is None  # a clean app failure keeps the connection
    records = [r for r in caplog.records if r.name == logger.name]
    assert len(records) == 1
    assert "rid-42" in records[0].getMessage()
    assert records[0].exc_info is not None
    assert "secret internal detail" in caplog.text
    # the same connection and a new one are both served normally
    assert client.get("/ok").body == b"hello"
    assert server.connect().get("/ok").body == b"hello"


def test_app_error_keeps_context_out_of_the_next_request(serve: Callable[..., Server]) -> None:
    """The classic leak: a request fails half-way, the next one on the connection sees it."""
    local = gevent.local.local()
    seen: list[Any] = []

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        seen.append(getattr(local, "user", None))
        local.user = environ["PATH_INFO"]
        if environ["PATH_INFO"] == "/fail":
            raise RuntimeError("failed after setting context")
        return hello_app(environ, start_response)

    client = serve(app).connect()
    assert client.get("/fail").status == 500
    assert client.get("/next").status == 200
    assert seen == [None, None]


def test_app_error_with_unread_large_body_closes(serve: Callable[..., Server]) -> None:
    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        raise RuntimeError("did not read the body")

    client = serve(app, Limits(max_body_size=0)).connect()
    client.send(b"POST / HTTP/1.1\r\nContent-Length: 1000000\r\n\r\n" + b"x" * 100)
    assert client.read_response().status == 500
    client.sock.shutdown(gevent.socket.SHUT_WR)
    client.assert_closed()


def test_app_error_on_head_request_has_no_body(serve: Callable[..., Server]) -> None:
    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        raise RuntimeError("boom")

    client = serve(app).connect()
    client.send(b"HEAD / HTTP/1.1\r\n\r\nHEAD / HTTP/1.1\r\n\r\n")
    first = client.read_response(head=True)
    assert (first.status, first.header("Content-Length")) == (500, "26")
    assert client.read_response(head=True).status == 500


def test_app_error_after_start_response_before_body_gives_500(
    serve: Callable[..., Server],
) -> None:
    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterator[bytes]:
        start_response("200 OK", [("X-Partial", "1")])
        raise RuntimeError("late")
        yield b""  # pragma: no cover - makes this a generator

    resp = serve(app).connect().get("/")
    assert resp.status == 500 and resp.header("X-Partial") is None


def test_app_error_after_headers_sent_closes_connection(serve: Callable[..., Server]) -> None:
    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterator[bytes]:
        start_response("200 OK", [("Content-Length", "100")])
        yield b"partial"
        raise RuntimeError("mid-body")

    server = serve(app)
    client = server.connect()
    client.send(b"GET / HTTP/1.1\r\n\r\n")
    raw = client.read_to_eof()
    assert raw.startswith(b"HTTP/1.1 200 OK") and raw.endswith(b"\r\n\r\npartial")
    wait_for(lambda: server.handler.open_connections == 0, "the connection to be closed")


def test_app_not_calling_start_response_gives_500(serve: Callable[..., Server]) -> None:
    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        return [b"no start_response"]

    assert serve(app).connect().get("/").status == 500


def test_http_error_from_wsgi_input_is_answered(serve: Callable[..., Server]) -> None:
    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        environ["wsgi.input"].read()
        return hello_app(environ, start_response)

    client = serve(app).connect()
    client.send(b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nabc")
    client.send(b"xy\r\nnot-hex\r\n")
    resp = client.read_response()
    assert resp.status == 400 and resp.header("Connection") == "close"


def test_client_disconnect_mid_body(serve: Callable[..., Server]) -> None:
    errors: list[BaseException] = []
    reports: list[int] = []

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        try:
            environ["wsgi.input"].read()
        except Exception as exc:
            errors.append(exc)
            raise
        return hello_app(environ, start_response)

    server = serve(app, on_response=lambda env, status, sent, dur: reports.append(status))
    client = server.connect()
    client.send(b"POST / HTTP/1.1\r\nContent-Length: 1000\r\n\r\nonly a little")
    wait_for(lambda: server.handler.active_requests == 1, "the app to start")
    client.close()
    wait_for(lambda: bool(errors), "the body read to fail")
    assert isinstance(errors[0], ClientDisconnected)
    assert isinstance(errors[0], OSError) and isinstance(errors[0], HTTPError)
    assert errors[0].status == 400
    wait_for(lambda: server.handler.open_connections == 0, "the connection to be closed")
    assert len(reports) == 1


def test_on_response_reports_each_request(serve: Callable[..., Server]) -> None:
    reports: list[tuple[str, int, int, float]] = []

    def on_response(environ: dict[str, Any], status: int, sent: int, duration: float) -> None:
        reports.append((environ["PATH_INFO"], status, sent, duration))

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        if environ["PATH_INFO"] == "/missing":
            start_response("404 Not Found", [])
            return [b"nope"]
        return hello_app(environ, start_response)

    server = serve(app, on_response=on_response)
    client = server.connect()
    client.get("/a")
    client.get("/missing")
    client.send(b"GET / HTTP/1.1\r\nBad Name: x\r\n\r\n")
    assert client.read_response().status == 400
    wait_for(lambda: len(reports) == 3, "three reports")
    assert [r[:3] for r in reports[:2]] == [("/a", 200, 5), ("/missing", 404, 4)]
    assert reports[2][1] == 400
    assert all(r[3] >= 0 for r in reports)


def test_failing_on_response_does_not_break_serving(serve: Callable[..., Server]) -> None:
    def on_response(*args: Any) -> None:
        raise RuntimeError("metrics down")

    client = serve(hello_app, on_response=on_response).connect()
    assert client.get("/").body == b"hello"
    assert client.get("/").body == b"hello"


# --------------------------------------------------------------------------- timeouts


def test_stalled_head_is_cut_off_after_header_timeout(serve: Callable[..., Server]) -> None:
    server = serve(hello_app, FAST_LIMITS)
    client = server.connect()
    client.send(b"GET / HTTP/1.1\r\nHost: x\r\n")  # ... and never the blank line
    resp = client.read_response()
    assert (resp.status, resp.header("Connection")) == (408, "close")
    client.assert_closed()


def test_header_timeout_is_a_total_not_per_recv(serve: Callable[..., Server]) -> None:
    """Slowloris: a byte every 50 ms never lets a per-recv timeout fire; a total does."""
    server = serve(hello_app, FAST_LIMITS)
    client = server.connect()
    trickled = {"bytes": 0, "finished": False}

    def trickle() -> None:
        try:
            client.send(b"GET / HTTP/1.1\r\n")
            for _ in range(100):  # 5 s worth, bounded
                client.send(b"X-Slow: 1\r\n"[:1])
                trickled["bytes"] += 1
                gevent.sleep(0.05)
            trickled["finished"] = True
        except OSError:
            pass

    sender = gevent.spawn(trickle)
    try:
        resp = client.read_response()
        assert resp.status == 408
        assert not trickled["finished"]
    finally:
        sender.kill()


def test_idle_keep_alive_connection_is_closed(serve: Callable[..., Server]) -> None:
    server = serve(hello_app, FAST_LIMITS)
    client = server.connect()
    assert client.get("/").header("Connection") is None
    client.assert_closed()  # after keep_alive seconds of silence
    wait_for(lambda: server.handler.open_connections == 0, "the connection to be closed")


def test_client_that_stops_reading_is_dropped_after_send_timeout(
    serve: Callable[..., Server],
) -> None:
    iterables: list[ClosingIterable] = []

    def big() -> Iterator[bytes]:
        for _ in range(4096):  # 256 MiB at most: far more than loopback socket buffers
            yield b"x" * 65536

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> ClosingIterable:
        start_response("200 OK", [])
        iterables.append(ClosingIterable(big()))
        return iterables[-1]

    limits = Limits(header_timeout=5.0, send_timeout=0.3)
    server = serve(app, limits)
    client = server.connect()
    client.send(b"GET / HTTP/1.1\r\n\r\n")  # ... and never read the response
    wait_for(lambda: bool(iterables), "the app to be called")
    assert iterables[0].closed.wait(CLIENT_TIMEOUT)
    wait_for(lambda: server.handler.open_connections == 0, "the connection to be closed")


def test_keep_alive_zero_disables_keep_alive(serve: Callable[..., Server]) -> None:
    limits = Limits(keep_alive=0, header_timeout=5.0)
    client = serve(hello_app, limits).connect()
    assert client.get("/").header("Connection") == "close"
    client.assert_closed()


def test_connection_that_never_sends_is_closed(serve: Callable[..., Server]) -> None:
    server = serve(hello_app, FAST_LIMITS)
    client = server.connect()
    client.assert_closed()  # header_timeout also covers the wait for the first byte
    wait_for(lambda: server.handler.open_connections == 0, "the connection to be closed")


def test_stalled_body_gives_408(serve: Callable[..., Server]) -> None:
    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        environ["wsgi.input"].read()
        return hello_app(environ, start_response)

    client = serve(app, FAST_LIMITS).connect()
    client.send(b"POST / HTTP/1.1\r\nContent-Length: 10\r\n\r\nabc")
    assert client.read_response().status == 408
    client.assert_closed()


# --------------------------------------------------------------------------- drain and shutdown


def test_drain_closes_idle_keep_alive_connection(serve: Callable[..., Server]) -> None:
    server = serve(hello_app)
    client = server.connect()
    assert client.get("/").status == 200
    assert server.handler.open_connections == 1
    server.handler.drain()
    client.assert_closed()
    wait_for(lambda: server.handler.open_connections == 0, "the connection to be closed")


def test_drain_lets_in_flight_request_finish_with_connection_close(
    serve: Callable[..., Server],
) -> None:
    release = gevent.event.Event()

    def slow_app(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        release.wait(CLIENT_TIMEOUT)
        return hello_app(environ, start_response)

    server = serve(slow_app)
    busy = server.connect()
    idle = server.connect()
    busy.send(b"GET /slow HTTP/1.1\r\n\r\nGET /queued HTTP/1.1\r\n\r\n")
    wait_for(lambda: server.handler.active_requests == 1, "the slow request to start")
    wait_for(lambda: server.handler.open_connections == 2, "both connections")
    server.handler.drain()
    idle.assert_closed()
    release.set()
    resp = busy.read_response()
    assert (resp.status, resp.body, resp.header("Connection")) == (200, b"hello", "close")
    busy.assert_closed()  # the pipelined request behind it is not served
    wait_for(lambda: server.handler.open_connections == 0, "the connections to be closed")


def test_killing_the_connection_kills_the_request_greenlet(serve: Callable[..., Server]) -> None:
    unwound = gevent.event.Event()
    iterables: list[ClosingIterable] = []

    def blocked() -> Iterator[bytes]:
        try:
            yield b"start"
            gevent.sleep(CLIENT_TIMEOUT * 10)
            yield b"never"
        finally:
            unwound.set()

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> ClosingIterable:
        start_response("200 OK", [])
        iterables.append(ClosingIterable(blocked()))
        return iterables[-1]

    server = serve(app)
    client = server.connect()
    client.send(b"GET / HTTP/1.1\r\n\r\n")
    wait_for(lambda: server.handler.active_requests == 1, "the request to start")
    server.stream.stop(timeout=0.1)  # kills the connection greenlets
    assert iterables[0].closed.wait(CLIENT_TIMEOUT)  # the iterable was closed...
    assert unwound.is_set()  # ...which unwound the generator's finally
    assert server.handler.active_requests == 0
    assert server.handler.open_connections == 0


def test_new_connection_while_draining_is_closed(serve: Callable[..., Server]) -> None:
    server = serve(hello_app)
    server.handler.drain()
    server.connect().assert_closed()


def test_many_concurrent_connections(serve: Callable[..., Server]) -> None:
    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        gevent.sleep(0.01)  # overlap the requests
        return hello_app(environ, start_response)

    server = serve(app, TEST_LIMITS)
    clients = [server.connect() for _ in range(20)]

    def run(client: Any) -> list[bytes]:
        return [client.get(f"/{i}").body for i in range(5)]

    jobs = [gevent.spawn(run, c) for c in clients]
    try:
        gevent.joinall(jobs, timeout=CLIENT_TIMEOUT, raise_error=True)
        assert [job.value for job in jobs] == [[b"hello"] * 5] * 20
    finally:
        gevent.killall(jobs)
