"""The two protocol decisions of a response (server/http/framing.py), as tables, and
HTTPResponse.close_after() as the one way keep-alive is turned off."""

from __future__ import annotations

import logging

import pytest

from server.http import HTTPRequest, HTTPResponse
from server.http.framing import (
    CHUNKED,
    CLOSE_DELIMITED,
    CONTENT_LENGTH,
    NO_BODY,
    body_framing,
    close_reason,
)


@pytest.mark.parametrize(
    ("method", "status", "length", "version", "expected"),
    [
        ("HEAD", 200, 5, "HTTP/1.1", NO_BODY),  # RFC 9112 6.3 rule 1
        ("GET", 101, None, "HTTP/1.1", NO_BODY),
        ("GET", 204, 0, "HTTP/1.1", NO_BODY),
        ("GET", 304, None, "HTTP/1.0", NO_BODY),
        ("GET", 200, 0, "HTTP/1.1", CONTENT_LENGTH),  # rule 6
        ("POST", 500, 12, "HTTP/1.0", CONTENT_LENGTH),
        ("GET", 200, None, "HTTP/1.1", CHUNKED),  # 7.1
        ("GET", 200, None, "HTTP/1.0", CLOSE_DELIMITED),  # 6.1: no chunked to 1.0; rule 8
    ],
)
def test_body_framing(method: str, status: int, length: int | None, version: str,
                      expected: int) -> None:
    assert body_framing(method, status, length, version) == expected


def _request(version: str = "HTTP/1.1", keep_alive: bool = True, *, chunked: bool = False,
             expect: bool = False, upgrade: bool = False) -> HTTPRequest:
    request = HTTPRequest("POST", version, keep_alive, None if chunked else 3, chunked, expect)
    request.upgrade = upgrade
    request.environ = {}  # the parser builds every request's environ with its head
    return request


REUSABLE = {"app_close": False, "server_allows": True, "server_closing": False}


@pytest.mark.parametrize(
    ("request_", "status", "framing", "overrides", "reason"),
    [
        (_request(), 200, CONTENT_LENGTH, {}, None),
        (_request("HTTP/1.0"), 200, CONTENT_LENGTH, {}, None),  # with Connection: keep-alive
        (_request(), 200, CHUNKED, {"server_allows": False}, "keep-alive is disabled"),
        (_request(), 200, CHUNKED, {"server_closing": True}, "the connection is closing"),
        (_request(keep_alive=False), 200, CHUNKED, {}, "the client asked to close"),
        (_request(upgrade=True), 200, CHUNKED, {}, "an Upgrade/CONNECT request"),
        (_request("HTTP/1.0", chunked=True), 200, CONTENT_LENGTH, {}, "chunked HTTP/1.0"),
        (_request(), 200, CHUNKED, {"app_close": True}, "sent Connection: close"),
        (_request(expect=True), 417, CONTENT_LENGTH, {}, "waits for 100 Continue"),
        (_request(), 103, NO_BODY, {}, "final status is 103"),
        (_request("HTTP/1.0"), 200, CLOSE_DELIMITED, {}, "delimited by closing"),
    ],
)
def test_close_reason(request_: HTTPRequest, status: int, framing: int,
                      overrides: dict[str, bool], reason: str | None) -> None:
    got = close_reason(request_, status, framing, **{**REUSABLE, **overrides})
    if reason is None:
        assert got is None
    else:
        assert got is not None and reason in got


def test_expect_continue_answered_or_body_read_keeps_alive() -> None:
    request = _request(expect=True)
    request.continue_sent = True
    assert close_reason(request, 200, CONTENT_LENGTH, **REUSABLE) is None
    request = _request(expect=True)
    request.message_complete = True
    assert close_reason(request, 200, CONTENT_LENGTH, **REUSABLE) is None


class _Conn:
    """The parts of HTTPConnection an HTTPResponse uses."""

    closing = False
    keep_alive_allowed = True
    server_line = b""
    remote_addr, remote_port = "192.0.2.1", "4321"

    def __init__(self) -> None:
        self.sent: list[bytes] = []
        self.transport = self

    def sendall(self, data: bytes) -> None:
        self.sent.append(data)


def test_close_after_logs_its_first_reason_and_the_head_says_close(
    caplog: pytest.LogCaptureFixture,
) -> None:
    conn = _Conn()
    response = HTTPResponse(conn, _request())  # type: ignore[arg-type]
    with caplog.at_level(logging.DEBUG, logger="server.http"):
        response.close_after("first")
        response.close_after("second")
        response.start_response("200 OK", [("Content-Length", "2")])
        response.send_iterable([b"ok"])
    assert response.keep_alive is False
    assert b"Connection: close\r\n" in conn.sent[0]
    messages = [r.getMessage() for r in caplog.records if r.name == "server.http"]
    assert messages == ["192.0.2.1:4321: closing after this response: first"]


def test_short_body_closes_after_the_response() -> None:
    conn = _Conn()
    response = HTTPResponse(conn, _request())  # type: ignore[arg-type]
    write = response.start_response("200 OK", [("Content-Length", "5")])
    write(b"abc")
    assert response.keep_alive  # the head said keep-alive ...
    response.finish()
    assert not response.keep_alive  # ... but the client can only learn the end by our close
    assert b"Connection: close" not in conn.sent[0]
