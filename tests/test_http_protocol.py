"""HTTP/1.1 protocol layer (``server/http/``) over real sockets on 127.0.0.1.

Servers are ``gevent.server.StreamServer`` instances running ``ConnectionHandler`` (or a
tiny loop over ``HTTPConnection`` for the lower-level tests), from the ``serve`` and
``serve_raw`` fixtures (``tests/inprocess.py``); clients speak raw bytes, so malformed
requests can be sent and the exact response bytes inspected.
"""

from __future__ import annotations

import io
import json
import os
import sys
import tempfile
import warnings
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import quote_from_bytes
from wsgiref.validate import WSGIWarning, validator

import gevent
import gevent.event
import gevent.socket
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from server.http import (
    ClientDisconnected,
    FileWrapper,
    HTTPConnection,
    HTTPError,
    HTTPRequest,
    HTTPResponse,
    Limits,
)
from server.http.parser import RequestParser
from tests import corpus
from tests.inprocess import CLIENT_TIMEOUT, TEST_LIMITS, Server

# --------------------------------------------------------------------------- apps


def echo_app(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
    """Answers with what it saw, as JSON, with a Content-Length."""
    body = environ["wsgi.input"].read()
    info = {
        "method": environ["REQUEST_METHOD"],
        "path": environ["PATH_INFO"],
        "query": environ["QUERY_STRING"],
        "raw_uri": environ["RAW_URI"],
        "protocol": environ["SERVER_PROTOCOL"],
        "content_length": environ.get("CONTENT_LENGTH"),
        "content_type": environ.get("CONTENT_TYPE"),
        "headers": {k: v for k, v in environ.items() if k.startswith("HTTP_")},
        "body": body.decode("latin-1"),
    }
    data = json.dumps(info).encode()
    start_response("200 OK", [("Content-Type", "application/json")])
    return [data]


def stream_app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterator[bytes]:
    """A generator body without a length: chunked for 1.1, close-delimited for 1.0."""
    start_response("200 OK", [("Content-Type", "text/plain")])
    yield b""
    yield b"hello "
    yield b""
    yield b"world"


def sized_app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterator[bytes]:
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "5")])
    yield b"hel"
    yield b"lo"


def status_app(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
    """Status taken from the path, e.g. /204; always tries to send a body."""
    code = environ["PATH_INFO"].strip("/")
    start_response(f"{code} Whatever", [("Content-Type", "text/plain")])
    return [b"this body must not be sent"]


# --------------------------------------------------------------------------- happy paths


def test_simple_get_and_environ(serve: Callable[..., Server]) -> None:
    seen: list[dict[str, Any]] = []

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        seen.append(dict(environ))
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"hi"]

    server = serve(app)
    client = server.connect()
    resp = client.get("/x/y?a=1&b=2", "Accept: */*\r\nX-Dup: 1\r\nX-Dup: 2\r\nCookie: a=1\r\n"
                                      "Cookie: b=2\r\nContent-Type: text/x\r\n")
    assert (resp.status, resp.body) == (200, b"hi")
    assert resp.header("Content-Length") == "2"
    assert resp.header("Server") == "ctxserver"
    assert resp.header("Date", ).endswith("GMT")  # type: ignore[union-attr]
    assert resp.header("Connection") is None
    env = seen[0]
    expected = {
        "REQUEST_METHOD": "GET",
        "SCRIPT_NAME": "",
        "PATH_INFO": "/x/y",
        "QUERY_STRING": "a=1&b=2",
        "RAW_URI": "/x/y?a=1&b=2",
        "REQUEST_URI": "/x/y?a=1&b=2",
        "SERVER_NAME": "127.0.0.1",
        "SERVER_PORT": "0",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "REMOTE_ADDR": "127.0.0.1",
        "REMOTE_PORT": str(client.sock.getsockname()[1]),
        "CONTENT_TYPE": "text/x",
        "HTTP_HOST": "t",
        "HTTP_ACCEPT": "*/*",
        "HTTP_X_DUP": "1,2",
        "HTTP_COOKIE": "a=1; b=2",
        "wsgi.version": (1, 0),
        "wsgi.url_scheme": "http",
        "wsgi.multithread": False,
        "wsgi.multiprocess": True,
        "wsgi.run_once": False,
        "wsgi.input_terminated": True,
        "wsgi.file_wrapper": FileWrapper,
    }
    assert {k: env[k] for k in expected} == expected
    assert "CONTENT_LENGTH" not in env and "HTTP_CONTENT_TYPE" not in env
    assert env["wsgi.input"].read() == b""
    assert hasattr(env["wsgi.errors"], "write")


def test_request_body_readline_readlines_iter(serve: Callable[..., Server]) -> None:
    seen: dict[str, Any] = {}

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        inp = environ["wsgi.input"]
        seen["line1"] = inp.readline()
        seen["short"] = inp.readline(3)
        seen["rest_of_line"] = inp.readline(-1)
        seen["read2"] = inp.read(2)
        seen["lines"] = inp.readlines()
        seen["after"] = (inp.read(), inp.readline(), list(inp))
        start_response("200 OK", [])
        return []

    client = serve(app).connect()
    body = b"first\nsecond\nthird\nfour\nfive"
    client.send(b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n")
    gevent.sleep(0.05)  # let the app start reading before the body exists
    for i in range(0, len(body), 4):
        piece = body[i:i + 4]
        client.send(b"%x\r\n%s\r\n" % (len(piece), piece))
    client.send(b"0\r\n\r\n")
    assert client.read_response().status == 200
    assert seen == {
        "line1": b"first\n",
        "short": b"sec",
        "rest_of_line": b"ond\n",
        "read2": b"th",
        "lines": [b"ird\n", b"four\n", b"five"],
        "after": (b"", b"", []),
    }


def test_chunked_response_for_unsized_iterable(serve: Callable[..., Server]) -> None:
    client = serve(stream_app).connect()
    resp = client.get("/")
    assert resp.header("Transfer-Encoding") == "chunked"
    assert resp.header("Content-Length") is None
    assert resp.body == b"hello world"
    assert client.get("/").body == b"hello world"  # keep-alive still works


def test_list_body_gets_a_content_length(serve: Callable[..., Server]) -> None:
    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        start_response("200 OK", [])
        return [b"abc", b"", b"de"] if environ["PATH_INFO"] == "/list" else []

    client = serve(app).connect()
    resp = client.get("/list")
    assert (resp.header("Content-Length"), resp.body) == ("5", b"abcde")
    resp = client.get("/empty")
    assert (resp.header("Content-Length"), resp.body) == ("0", b"")
    assert resp.header("Transfer-Encoding") is None


def test_app_content_length_is_used_and_never_exceeded(serve: Callable[..., Server]) -> None:
    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterator[bytes]:
        start_response("200 OK", [("Content-Length", "4")])
        yield b"ab"
        yield b"cdEXTRA"
        yield b"MORE"

    client = serve(app).connect()
    resp = client.get("/")
    assert resp.body == b"abcd"
    client.assert_closed()  # it lied about its length: the connection is not reused


def test_app_content_length_short_body_closes(serve: Callable[..., Server]) -> None:
    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        start_response("200 OK", [("Content-Length", "10")])
        return [b"abc"]

    client = serve(app).connect()
    client.send(b"GET / HTTP/1.1\r\n\r\n")
    assert client.read_to_eof().endswith(b"\r\n\r\nabc")


def test_http10_close_delimited(serve: Callable[..., Server]) -> None:
    client = serve(stream_app).connect()
    client.send(b"GET / HTTP/1.0\r\n\r\n")
    raw = client.read_to_eof()
    head, body = raw.split(b"\r\n\r\n", 1)
    assert head.startswith(b"HTTP/1.1 200 OK")
    assert b"Transfer-Encoding" not in head and b"Content-Length" not in head
    assert b"Connection: close" in head
    assert body == b"hello world"


def test_http10_keep_alive(serve: Callable[..., Server]) -> None:
    client = serve(sized_app).connect()
    for _ in range(2):
        client.send(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
        resp = client.read_response()
        assert (resp.body, resp.header("Connection")) == (b"hello", "keep-alive")
    client.send(b"GET / HTTP/1.0\r\n\r\n")  # without the header: close after it
    resp = client.read_response()
    assert resp.header("Connection") == "close"
    client.assert_closed()


def test_connection_close_request(serve: Callable[..., Server]) -> None:
    client = serve(sized_app).connect()
    client.send(b"GET /a HTTP/1.1\r\nConnection: close\r\n\r\nGET /b HTTP/1.1\r\n\r\n")
    resp = client.read_response()
    assert (resp.status, resp.header("Connection")) == (200, "close")
    client.assert_closed()  # the bytes after it were ignored, not answered


def test_head_has_no_body(serve: Callable[..., Server]) -> None:
    client = serve(echo_app).connect()
    client.send(b"HEAD /h HTTP/1.1\r\n\r\nGET /g HTTP/1.1\r\n\r\n")
    head = client.read_response(head=True)
    assert head.status == 200
    length = int(head.header("Content-Length") or 0)
    assert length > 0  # the length the GET would have
    get = client.read_response()  # parses right after the head: no stray body bytes
    assert json.loads(get.body)["path"] == "/g"


def test_head_of_stream_has_no_body(serve: Callable[..., Server]) -> None:
    client = serve(stream_app).connect()
    client.send(b"HEAD / HTTP/1.1\r\n\r\nGET / HTTP/1.1\r\n\r\n")
    head = client.read_response(head=True)
    assert head.header("Transfer-Encoding") is None
    assert client.read_response().body == b"hello world"


@pytest.mark.parametrize("code", [204, 304])
def test_no_body_statuses(serve: Callable[..., Server], code: int) -> None:
    client = serve(status_app).connect()
    client.send(f"GET /{code} HTTP/1.1\r\n\r\nGET /200 HTTP/1.1\r\n\r\n".encode())
    resp = client.read_response()
    assert resp.status == code
    assert resp.header("Content-Length") is None
    assert resp.header("Transfer-Encoding") is None
    assert client.read_response().body == b"this body must not be sent"


def test_pipelined_requests_answered_in_order(serve: Callable[..., Server]) -> None:
    client = serve(echo_app).connect()
    client.send(b"".join(
        b"POST /%d HTTP/1.1\r\nContent-Length: 1\r\n\r\n%d" % (i, i % 10) for i in range(20)
    ))
    for i in range(20):
        info = json.loads(client.read_response().body)
        assert (info["path"], info["body"]) == (f"/{i}", str(i % 10))


def test_expect_100_continue(serve: Callable[..., Server]) -> None:
    client = serve(echo_app).connect()
    client.send(b"POST /e HTTP/1.1\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n")
    interim = client.read_response()
    assert (interim.status, interim.raw) == (100, b"HTTP/1.1 100 Continue\r\n\r\n")
    client.send(b"hello")
    resp = client.read_response()
    assert json.loads(resp.body)["body"] == "hello"
    assert resp.header("Connection") is None
    assert client.get("/").status == 200


def test_expect_100_continue_unread_body_closes(serve: Callable[..., Server]) -> None:
    client = serve(sized_app).connect()
    client.send(b"POST / HTTP/1.1\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n")
    resp = client.read_response()
    assert (resp.status, resp.body) == (200, b"hello")  # no 100 Continue before it
    assert resp.header("Connection") == "close"
    client.assert_closed()


def test_unread_small_body_is_discarded(serve: Callable[..., Server]) -> None:
    client = serve(sized_app).connect()
    client.send(b"POST / HTTP/1.1\r\nContent-Length: 7\r\n\r\nignored")
    assert client.read_response().body == b"hello"
    assert client.get("/").body == b"hello"


def test_unread_large_body_closes_connection(serve: Callable[..., Server]) -> None:
    limits = Limits(max_body_size=0, header_timeout=5.0)
    client = serve(sized_app, limits).connect()
    client.send(b"POST / HTTP/1.1\r\nContent-Length: 1000000\r\n\r\n" + b"x" * 1000)
    assert client.read_response().body == b"hello"
    client.sock.shutdown(gevent.socket.SHUT_WR)
    client.assert_closed()


def test_upgrade_request_is_answered_in_http11_then_closed(serve: Callable[..., Server]) -> None:
    client = serve(echo_app).connect()
    client.send(b"GET /ws HTTP/1.1\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n"
                b"\x81\x05hello")
    resp = client.read_response()
    assert (resp.status, resp.header("Connection")) == (200, "close")
    assert json.loads(resp.body)["path"] == "/ws"
    client.assert_closed()


@pytest.mark.parametrize(
    "framing, body",
    [
        (b"Content-Length: 11", b"hello world"),
        (b"Transfer-Encoding: chunked", b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"),
    ],
)
@pytest.mark.parametrize("split", [False, True])
def test_upgrade_request_body_is_not_lost(
    serve: Callable[..., Server], framing: bytes, body: bytes, split: bool
) -> None:
    """``curl --http2 -d``: an h2c upgrade offer on a POST still carries an HTTP/1.1 body."""
    client = serve(echo_app).connect()
    head = (b"POST /up HTTP/1.1\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\n"
            b"HTTP2-Settings: AAMAAABkAAQAoAAAAAIAAAAA\r\n" + framing + b"\r\n\r\n")
    if split:  # the body then (most likely) arrives in a later recv than the head
        client.send(head)
        gevent.sleep(0.02)
        client.send(body)
    else:
        client.send(head + body)
    resp = client.read_response()
    info = json.loads(resp.body)
    assert (info["path"], info["body"]) == ("/up", "hello world")
    assert resp.header("Connection") == "close"
    client.assert_closed()


def test_write_callable(serve: Callable[..., Server]) -> None:
    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        write = start_response("200 OK", [("Content-Type", "text/plain")])
        write(b"written ")
        write(b"")
        return [b"returned"]

    client = serve(app).connect()
    resp = client.get("/")
    assert resp.body == b"written returned"
    assert resp.header("Transfer-Encoding") == "chunked"


def test_file_wrapper_real_file_uses_length(serve: Callable[..., Server]) -> None:
    data = os.urandom(300_000)
    with tempfile.NamedTemporaryFile() as tmp:
        tmp.write(data)
        tmp.flush()

        def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
            start_response("200 OK", [("Content-Type", "application/octet-stream")])
            f = open(tmp.name, "rb")  # noqa: SIM115 - closed by the wrapper
            f.seek(1000)
            return environ["wsgi.file_wrapper"](f, 4096)

        client = serve(app).connect()
        resp = client.get("/")
        assert resp.header("Content-Length") == str(len(data) - 1000)
        assert resp.body == data[1000:]
        client.send(b"HEAD / HTTP/1.1\r\n\r\n")
        head = client.read_response(head=True)
        assert head.header("Content-Length") == str(len(data) - 1000)
        assert client.get("/").body == data[1000:]


def test_file_wrapper_over_non_file_iterates(serve: Callable[..., Server]) -> None:
    closed: list[bool] = []

    class Stream(io.BytesIO):
        def close(self) -> None:
            closed.append(True)
            super().close()

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        start_response("200 OK", [])
        return environ["wsgi.file_wrapper"](Stream(b"a" * 10_000), 1000)

    client = serve(app).connect()
    resp = client.get("/")
    assert resp.body == b"a" * 10_000
    assert resp.header("Transfer-Encoding") == "chunked"
    assert closed == [True]


def test_server_header_configurable(serve: Callable[..., Server]) -> None:
    client = serve(sized_app, server_software=None).connect()
    assert client.get("/").header("Server") is None

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        start_response("200 OK", [("Server", "mine"), ("Date", "yesterday")])
        return []

    resp = serve(app, server_software="x/1").connect().get("/")
    assert (resp.header("Server"), resp.header("Date")) == ("mine", "yesterday")


def test_app_connection_close_header_is_honoured(serve: Callable[..., Server]) -> None:
    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        start_response("200 OK", [("Connection", "close"), ("Transfer-Encoding", "chunked")])
        return [b"x"]

    client = serve(app).connect()
    resp = client.get("/")
    assert resp.header("Connection") == "close"
    assert resp.header("Transfer-Encoding") is None and resp.body == b"x"
    client.assert_closed()


@pytest.mark.filterwarnings("error::wsgiref.validate.WSGIWarning")
def test_wsgiref_validator_finds_no_violation(serve: Callable[..., Server]) -> None:
    failures: list[BaseException] = []

    def inner(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterator[bytes]:
        inp = environ["wsgi.input"]
        body = inp.read(int(environ.get("CONTENT_LENGTH") or 0)) if environ.get(
            "CONTENT_LENGTH") else b"".join(iter(inp.readline, b""))
        start_response("200 OK", [("Content-Type", "text/plain")])
        yield b"ok:" + body

    checked = validator(inner)

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("error", WSGIWarning)
                return checked(environ, start_response)
        except BaseException as exc:
            failures.append(exc)
            raise

    client = serve(app).connect()
    assert client.get("/v?x=1").body == b"ok:"
    client.send(b"POST /p HTTP/1.1\r\nContent-Type: a/b\r\nContent-Length: 3\r\n\r\nabc")
    assert client.read_response().body == b"ok:abc"
    client.send(b"POST /c HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\na\nb\r\n0\r\n\r\n")
    assert client.read_response().body == b"ok:a\nb"
    client.send(b"HEAD /h HTTP/1.1\r\n\r\n")
    assert client.read_response(head=True).status == 200
    client.send(b"GET /10 HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
    assert client.read_response().body == b"ok:"
    assert failures == []


# --------------------------------------------------------------------------- bad input

# The request corpus (tests/requests/, loaded by tests/corpus.py): every hostile request
# and every edge case of the request environ, as data; the real-server layers run it too.
CORPUS_LIMITS = Limits(**corpus.LIMITS, header_timeout=5.0, keep_alive=5.0)


@pytest.mark.parametrize("case", corpus.INVALID, ids=lambda c: c.id)
def test_invalid_request_is_refused_and_server_keeps_serving(
    serve: Callable[..., Server], case: corpus.Invalid
) -> None:
    called: list[str] = []

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        called.append(environ["PATH_INFO"])
        return echo_app(environ, start_response)

    server = serve(app, CORPUS_LIMITS)
    bad = server.connect()
    bad.send(case.raw())
    resp = bad.read_response()
    assert resp.status in case.status, resp.raw
    assert resp.header("Connection") == "close"
    assert resp.header("Content-Type") == "text/plain; charset=utf-8"
    assert resp.body.startswith(str(resp.status).encode())
    bad.assert_closed()
    # A head error is refused before the app runs; a body error reaches it through
    # wsgi.input. Either way the smuggled request, if any, never runs.
    assert called == ([case.path] if case.reaches_app else [])
    good = server.connect()
    assert json.loads(good.get("/fine").body)["path"] == "/fine"


@pytest.mark.parametrize("case", corpus.VALID, ids=lambda c: c.id)
def test_valid_request_reaches_the_app_as_sent(
    serve: Callable[..., Server], case: corpus.Valid
) -> None:
    seen: list[tuple[dict[str, Any], bytes]] = []

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        seen.append((dict(environ), environ["wsgi.input"].read()))
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"ok"]

    client = serve(app, CORPUS_LIMITS).connect()
    client.send(case.raw())
    resp = client.read_response()
    assert (resp.status, resp.body) == (200, b"ok"), resp.raw
    if case.closes:
        assert resp.header("Connection") == "close"
        client.assert_closed()  # and whatever followed was ignored, not answered
    else:  # the connection is still usable
        assert resp.header("Connection") is None
        assert client.get("/again").status == 200
        assert seen[1][0]["PATH_INFO"] == "/again"
    environ, body = seen[0]
    assert len(seen) == (1 if case.closes else 2)  # never a smuggled request
    assert {key: environ.get(key) for key in case.environ} == case.environ
    assert [key for key in case.absent if key in environ] == []
    assert body == case.body


def test_good_pipelined_request_before_bad_one_is_answered(serve: Callable[..., Server]) -> None:
    client = serve(echo_app).connect()
    client.send(b"GET /ok HTTP/1.1\r\n\r\nGET / HTTP/1.1\r\nBad Name: x\r\n\r\n")
    assert json.loads(client.read_response().body)["path"] == "/ok"
    assert client.read_response().status == 400
    client.assert_closed()


def test_body_over_max_is_answered_before_the_body_is_sent(serve: Callable[..., Server]) -> None:
    seen: list[str] = []

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        seen.append("called")
        return echo_app(environ, start_response)

    client = serve(app).connect()
    # Only the head goes out; the 413 must come without waiting for any body byte.
    client.send(b"POST / HTTP/1.1\r\nContent-Length: 50000\r\nExpect: 100-continue\r\n\r\n")
    resp = client.read_response()
    assert resp.status == 413
    assert seen == []
    client.assert_closed()


def test_chunked_body_over_max_is_413(serve: Callable[..., Server]) -> None:
    errors: list[BaseException] = []

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        try:
            environ["wsgi.input"].read()
        except HTTPError as exc:
            errors.append(exc)
            raise
        start_response("200 OK", [])
        return [b"unreachable"]

    client = serve(app).connect()
    client.send(b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n")
    for _ in range(12):
        client.send(b"3e8\r\n" + b"x" * 1000 + b"\r\n")
    resp = client.read_response()
    assert resp.status == 413
    assert [e.status for e in errors] == [413]
    client.sock.shutdown(gevent.socket.SHUT_WR)
    client.assert_closed()


@pytest.mark.parametrize(
    "headers",
    [
        [("X-Bad", "a\r\nSet-Cookie: evil=1")],
        [("X-Bad", "a\nSet-Cookie: evil=1")],
        [("X-Bad", "nul\x00")],
        [("Bad Name", "x")],
        [("Set-Cookie\r\nX", "evil=1")],
        [("Content-Length", "12x")],
        [("X-Unicode", "snow\u2603man")],
    ],
)
def test_invalid_app_headers_give_500_never_a_split_response(
    serve: Callable[..., Server], headers: list[tuple[str, str]]
) -> None:
    errors: list[BaseException] = []

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        try:
            start_response("200 OK", headers)
        except ValueError as exc:
            errors.append(exc)
            raise
        return [b"body"]

    client = serve(app).connect()
    client.send(b"GET / HTTP/1.1\r\n\r\nGET / HTTP/1.1\r\n\r\n")
    first, second = client.read_response(), client.read_response()
    for resp in (first, second):
        assert resp.raw.startswith(b"HTTP/1.1 500 Internal Server Error\r\n")
        assert b"evil" not in resp.raw and b"X-Bad" not in resp.raw and b"body" not in resp.raw
        assert resp.raw.count(b"HTTP/1.1") == 1
    assert len(errors) == 2


@pytest.mark.parametrize("status", ["200", "OK 200", "2000 X", "200 A\r\nX-Evil: 1", 200])
def test_invalid_status(serve: Callable[..., Server], status: Any) -> None:
    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        start_response(status, [])
        return [b"body"]

    client = serve(app).connect()
    resp = client.get("/")
    if status == "200":  # a bare code is completed with its standard phrase
        assert (resp.status, resp.reason, resp.body) == (200, "OK", b"body")
    else:
        assert resp.status == 500
        assert b"Evil" not in resp.raw


def test_start_response_twice_without_exc_info_fails(serve: Callable[..., Server]) -> None:
    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        start_response("200 OK", [])
        start_response("404 Not Found", [])
        return []

    assert serve(app).connect().get("/").status == 500


def test_start_response_exc_info_replaces_unsent_headers(serve: Callable[..., Server]) -> None:
    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        start_response("200 OK", [("X-First", "1")])
        try:
            raise RuntimeError("boom")
        except RuntimeError:
            start_response("503 Busy", [("X-Second", "2")], sys.exc_info())
        return [b"sorry"]

    resp = serve(app).connect().get("/")
    assert (resp.status, resp.body) == (503, b"sorry")
    assert resp.header("X-First") is None and resp.header("X-Second") == "2"


def test_start_response_exc_info_after_headers_sent_reraises() -> None:
    """PEP 3333: once the head is out, start_response(exc_info) re-raises the error."""

    class Conn:  # the smallest stand-in for HTTPConnection that HTTPResponse needs
        closing = False
        keep_alive_allowed = True
        server_line = b""

        def __init__(self) -> None:
            self.sent: list[bytes] = []
            self.transport = self  # HTTPResponse sends through conn.transport

        def sendall(self, data: bytes) -> None:
            self.sent.append(data)

    request = HTTPRequest("GET", "HTTP/1.1", True, None, False, False)
    request.environ = {}  # the parser builds every request's environ with its head
    conn = Conn()
    response = HTTPResponse(conn, request)  # type: ignore[arg-type]
    write = response.start_response("200 OK", [("Content-Type", "text/plain")])
    write(b"partial")
    assert response.headers_sent
    try:
        raise KeyError("original")
    except KeyError:
        info = sys.exc_info()
    with pytest.raises(KeyError, match="original"):
        response.start_response("500 Oops", [], info)
    assert b"".join(conn.sent).startswith(b"HTTP/1.1 200 OK\r\n")


# --------------------------------------------------------------------------- HTTPConnection


def test_connection_api_directly(serve_raw: Callable[..., Server]) -> None:
    """A hand-written loop over HTTPConnection: read_request/idle/None at EOF."""
    log: list[Any] = []
    done = gevent.event.Event()

    def handle(sock: Any, address: Any) -> None:
        conn = HTTPConnection(sock, address, TEST_LIMITS, server_name="h", server_port="1")
        try:
            while (request := conn.read_request()) is not None:
                log.append((request.method, request.http_version, request.keep_alive,
                            request.environ["PATH_INFO"], request.environ["wsgi.input"].read()))
                response = HTTPResponse(conn, request)
                response.start_response("200 OK", [])
                response.send_iterable([b"ok"])
                log.append(response.keep_alive)
                if not response.keep_alive:
                    break
            log.append("end")
        finally:
            conn.close()
            done.set()

    server = serve_raw(handle)
    client = server.connect()
    client.send(b"PUT /a HTTP/1.1\r\nContent-Length: 2\r\n\r\nxy")
    assert client.read_response().body == b"ok"
    client.send(b"DELETE /b HTTP/1.0\r\n\r\n")
    assert client.read_response().body == b"ok"
    client.assert_closed()
    assert done.wait(CLIENT_TIMEOUT)
    assert log == [("PUT", "HTTP/1.1", True, "/a", b"xy"), True,
                   ("DELETE", "HTTP/1.0", False, "/b", b""), False, "end"]


def test_read_request_returns_none_on_clean_close(serve_raw: Callable[..., Server]) -> None:
    results: list[Any] = []
    done = gevent.event.Event()

    def handle(sock: Any, address: Any) -> None:
        conn = HTTPConnection(sock, address, TEST_LIMITS)
        try:
            results.append(conn.read_request())
        finally:
            conn.close()
            done.set()

    server = serve_raw(handle)
    client = server.connect()
    client.sock.shutdown(gevent.socket.SHUT_WR)
    assert done.wait(CLIENT_TIMEOUT)
    assert results == [None]


def test_close_when_idle_ends_a_waiting_read(serve_raw: Callable[..., Server]) -> None:
    conns: list[HTTPConnection] = []
    results: list[Any] = []
    done = gevent.event.Event()

    def handle(sock: Any, address: Any) -> None:
        conn = HTTPConnection(sock, address, TEST_LIMITS)
        conns.append(conn)
        try:
            results.append(conn.read_request())
        finally:
            conn.close()
            done.set()

    server = serve_raw(handle)
    client = server.connect()
    while not (conns and conns[0].idle):
        gevent.sleep(0.01)
    conns[0].close_when_idle()
    assert done.wait(CLIENT_TIMEOUT)
    assert results == [None]
    client.assert_closed()


def test_unix_socket_connection() -> None:
    """TCP_NODELAY is skipped for unix sockets and the peer has no address."""
    a, b = gevent.socket.socketpair()
    try:
        conn = HTTPConnection(a, "", TEST_LIMITS)
        b.sendall(b"GET /u HTTP/1.1\r\n\r\n")
        request = conn.read_request()
        assert request is not None
        assert request.environ["PATH_INFO"] == "/u"
        assert request.environ["REMOTE_ADDR"] == ""
        response = HTTPResponse(conn, request)
        response.start_response("204 No Content", [])
        response.send_iterable([])
        assert b.recv(1000).startswith(b"HTTP/1.1 204 No Content\r\n")
        b.close()
        assert conn.read_request() is None
        conn.close()
    finally:
        a.close()
        b.close()


def test_client_disconnected_is_both_http_and_os_error() -> None:
    exc = ClientDisconnected("gone")
    assert isinstance(exc, HTTPError) and isinstance(exc, ConnectionError)
    assert exc.status == 400
    assert str(exc) == "400 gone"


# --------------------------------------------------------------------------- property tests

FUZZ_LIMITS = Limits(max_request_line=512, max_header_size=2048, max_header_count=10,
                     max_body_size=4096, header_timeout=0.5, keep_alive=0.5)


def _parse_all(data: bytes, limits: Limits = FUZZ_LIMITS) -> list[Any]:
    """Feed ``data`` to an HTTPConnection; return [(environ, body) | HTTPError, ...]."""
    a, b = gevent.socket.socketpair()
    results: list[Any] = []
    try:
        b.sendall(data)
        b.shutdown(gevent.socket.SHUT_WR)
        conn = HTTPConnection(a, ("127.0.0.1", 1), limits)
        try:
            while True:
                try:
                    request = conn.read_request()
                    if request is None:
                        break
                    results.append((request.environ, request.environ["wsgi.input"].read()))
                except HTTPError as exc:
                    results.append(exc)
                    break
        finally:
            conn.close()
    finally:
        a.close()
        b.close()
    return results


_FRAGMENTS = [
    b"GET ", b"POST ", b"HEAD ", b"PRI ", b"/", b"/a%20b", b"?q=1", b"#f", b" HTTP/1.1",
    b" HTTP/1.0", b" HTTP/2.0", b"\r\n", b"\n", b"\r", b" ", b"\t", b":", b"Host: h",
    b"Content-Length: 3", b"Content-Length: -1", b"Transfer-Encoding: chunked",
    b"Transfer-Encoding: gzip", b"Expect: 100-continue", b"Connection: close",
    b"Connection: Upgrade", b"Upgrade: h2c", b"X_Y: 1", b"3\r\nabc\r\n", b"0\r\n\r\n",
    b"zz\r\n", b"\x00", b"\xff", b"abc",
]


@settings(max_examples=300, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(st.lists(st.one_of(st.sampled_from(_FRAGMENTS), st.binary(max_size=20)), max_size=60))
def test_arbitrary_input_yields_requests_or_http_errors(parts: list[bytes]) -> None:
    """Whatever the bytes, the parser produces requests or HTTPError, nothing else."""
    for result in _parse_all(b"".join(parts)):
        if isinstance(result, HTTPError):
            assert 400 <= result.status <= 505
            continue
        environ, body = result
        assert all(type(v) is str for k, v in environ.items() if k.isupper())
        assert environ["SERVER_PROTOCOL"] in ("HTTP/1.0", "HTTP/1.1")
        assert isinstance(body, bytes)
        if "CONTENT_LENGTH" in environ:
            assert len(body) == int(environ["CONTENT_LENGTH"]) or "HTTP_UPGRADE" in environ


_token = st.text("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-", min_size=1,
                 max_size=12).filter(lambda s: s.lower() not in {
                     "content-length", "transfer-encoding", "host", "cookie", "connection",
                     "expect", "upgrade", "te", "trailer", "keep-alive"})
_field_value = st.text(st.characters(min_codepoint=0x21, max_codepoint=0xFF,
                                     blacklist_characters="\x7f"), max_size=30)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    path=st.binary(max_size=30),
    query=st.text("abc=&%20+", max_size=10),
    headers=st.dictionaries(_token, _field_value, max_size=5),
    body=st.binary(max_size=300),
    chunked=st.booleans(),
    splits=st.lists(st.integers(min_value=1, max_value=50), max_size=10),
)
def test_valid_requests_round_trip(
    path: bytes, query: str, headers: dict[str, str], body: bytes, chunked: bool,
    splits: list[int],
) -> None:
    """A well-formed request arrives in the environ exactly as it was meant."""
    target = "/" + quote_from_bytes(path) + ("?" + query if query else "")
    lines = [f"POST {target} HTTP/1.1", "Host: h"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    if chunked:
        lines.append("Transfer-Encoding: chunked")
        payload, rest = b"", body
        for size in splits:
            piece, rest = rest[:size], rest[size:]
            if piece:
                payload += b"%x\r\n%s\r\n" % (len(piece), piece)
        if rest:
            payload += b"%x\r\n%s\r\n" % (len(rest), rest)
        payload += b"0\r\n\r\n"
    else:
        lines.append(f"Content-Length: {len(body)}")
        payload = body
    raw = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + payload
    [(environ, received)] = _parse_all(raw + raw)[:1]
    assert environ["PATH_INFO"] == "/" + path.decode("latin-1")
    assert environ["QUERY_STRING"] == query
    assert received == body
    expected: dict[str, str] = {}
    for name, value in headers.items():  # names differing only in case are one field
        key = "HTTP_" + name.upper().replace("-", "_")
        expected[key] = expected[key] + "," + value if key in expected else value
    assert {k: environ[k] for k in expected} == expected
    assert len(_parse_all(raw + raw)) == 2  # and the same again, pipelined


# ------------------------------------------------------- methods llhttp does not know

def _parsed(*pieces: bytes) -> tuple[list[str], HTTPError | None]:
    """The methods of the requests a RequestParser makes of ``pieces``, and its error."""
    methods: list[str] = []
    parser = RequestParser(Limits(), lambda req, url, headers: methods.append(req.method))
    for piece in pieces:
        parser.feed(piece)
    return methods, parser.error


@pytest.mark.parametrize(("pieces", "methods", "error"), [
    ((b"FOO / HTTP/1.1\r\n\r\n",), ["FOO"], None),
    ((b"\r\nFOO / HTTP/1.1\r\n\r\n",), ["FOO"], None),  # after an empty line llhttp skips
    ((b"FOO / HT", b"TP/1.1\r\n\r\n"), ["FOO"], None),  # the head completes later
    ((b"FOO / HTTP/1.1\r\n\r\nGET /2 HTTP/1.1\r\n\r\n",), ["FOO", "GET"], None),
    ((b"FOO / HTTP/1.1\r\n\r\n", b"BAR / HTTP/1.1\r\n\r\n"), ["FOO", "BAR"], None),
    # what is not retried: not a conventional token, or pipelined behind another request
    ((b"get / HTTP/1.1\r\n\r\n",), [], 400),
    ((b"FO\x01 / HTTP/1.1\r\n\r\n",), [], 400),
    ((b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\n",), [], 400),
    ((b"GET / HTTP/1.1\r\n\r\nFOO / HTTP/1.1\r\n\r\n",), ["GET"], 400),
])
def test_methods_llhttp_does_not_know(pieces: tuple[bytes, ...], methods: list[str],
                                      error: int | None) -> None:
    got, exc = _parsed(*pieces)
    assert got == methods
    assert (exc.status if exc else None) == error


HOP_BY_HOP = [("Connection", "keep-alive"), ("Keep-Alive", "timeout=99"), ("Upgrade", "h2c"),
              ("Transfer-Encoding", "gzip"), ("TE", "trailers"), ("Trailer", "X-Sum"),
              ("Proxy-Authenticate", "Basic"), ("proxy-connection", "keep-alive")]


def test_hop_by_hop_headers_of_the_app_are_dropped_with_one_warning_per_route(
        serve: Callable[..., Server], caplog: Any) -> None:
    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        start_response("200 OK", [("Content-Type", "text/plain"), *HOP_BY_HOP,
                                  ("X-Kept", "1")])
        return [b"body"]

    client = serve(app).connect()
    for path in ("/hop/a", "/hop/a", "/hop/b"):
        resp = client.get(path)
        assert (resp.status, resp.body, resp.header("X-Kept")) == (200, b"body", "1")
        names = {line.split(b":")[0].lower() for line in resp.head.split(b"\r\n")[1:]}
        assert names.isdisjoint({n.lower().encode() for n, _ in HOP_BY_HOP}), resp.head
        assert resp.header("Content-Length") == "4"  # our framing, not the app's gzip
    warnings_for = {path: [r for r in caplog.records if f"for {path}:" in r.getMessage()]
                    for path in ("/hop/a", "/hop/b")}
    assert [len(records) for records in warnings_for.values()] == [len(HOP_BY_HOP)] * 2
    assert all(r.levelname == "WARNING" for records in warnings_for.values() for r in records)
