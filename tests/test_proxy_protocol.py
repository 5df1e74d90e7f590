"""PROXY protocol v1/v2 (``server/http/proxy_protocol.py``): the parser as a table, then the
handler over real sockets -- trusted peers only, malformed or late headers closed unanswered."""

from __future__ import annotations

import json
import socket
import struct
import time
from typing import Any

import gevent
import pytest

from server.http import Limits
from server.http.forwarded import TrustedPeers
from server.http.proxy_protocol import (
    V2_SIGNATURE,
    ProxyHeader,
    ProxyHeaderError,
    parse_header,
)
from tests.inprocess import TEST_LIMITS
from tests.support import running_server

LOCAL = TrustedPeers.parse("127.0.0.1,::1")
V1 = b"PROXY TCP4 203.0.113.7 10.0.0.1 56324 443\r\n"


def v2(command: int = 1, family: int = 0x11, body: bytes | None = None) -> bytes:
    """A v2 header: TCP over IPv4 from 203.0.113.7:56324 to 10.0.0.1:443 by default."""
    if body is None:
        body = socket.inet_aton("203.0.113.7") + socket.inet_aton("10.0.0.1") + \
            struct.pack("!HH", 56324, 443)
    return V2_SIGNATURE + bytes([0x20 | command, family]) + struct.pack("!H", len(body)) + body


V2_IPV6 = v2(family=0x21, body=socket.inet_pton(socket.AF_INET6, "2001:db8::7")
             + socket.inet_pton(socket.AF_INET6, "2001:db8::1") + struct.pack("!HH", 4711, 443))


@pytest.mark.parametrize(("data", "versions", "expected"), [
    (V1 + b"GET / HTTP/1.1\r\n", (1,), ProxyHeader(1, len(V1), ("203.0.113.7", 56324))),
    (b"PROXY TCP6 2001:db8::7 2001:db8::1 4711 443\r\n", (1, 2),
     ProxyHeader(1, 45, ("2001:db8::7", 4711))),
    (b"PROXY UNKNOWN whatever\r\n", (1,), ProxyHeader(1, 24, None)),
    (b"PROXY TCP4 203.0", (1,), None),  # incomplete: more bytes needed
    (b"PRO", (1,), None),
    (b"GET / HTTP/1.1\r\n\r\n", (1, 2), False),  # no header: HTTP's to judge
    (V1, (2,), False),  # a version the mode does not allow
    (v2(), (2,), ProxyHeader(2, 28, ("203.0.113.7", 56324))),
    (V2_IPV6, (1, 2), ProxyHeader(2, 52, ("2001:db8::7", 4711))),
    (v2(command=0, body=b""), (2,), ProxyHeader(2, 16, None)),  # LOCAL: a health check
    (v2(family=0x00, body=b""), (2,), ProxyHeader(2, 16, None)),  # UNSPEC
    (v2() + b"tail", (2,), ProxyHeader(2, 28, ("203.0.113.7", 56324))),
    (v2()[:20], (2,), None),
    (V2_SIGNATURE[:5], (2,), None),
])
def test_parse_header(data: bytes, versions: tuple[int, ...], expected: Any) -> None:
    assert parse_header(data, versions) == expected


@pytest.mark.parametrize(("data", "message"), [
    (b"PROXY TCP4 203.0.113.7 10.0.0.1 56324\r\n", "malformed"),
    (b"PROXY TCP5 203.0.113.7 10.0.0.1 1 2\r\n", "unknown protocol"),
    (b"PROXY TCP4 2001:db8::7 10.0.0.1 1 2\r\n", "bad address"),
    (b"PROXY TCP4 203.0.113.7 10.0.0.1 1 65536\r\n", "bad port"),
    (b"PROXY TCP4 203.0.113.7 10.0.0.1 -1 2\r\n", "bad port"),
    (b"PROXY TCP4 203.0.113.7 10.0.0.1 1 2\n", "without CRLF"),
    (b"PROXY " + b"x" * 120, "without CRLF"),
    (V2_SIGNATURE + b"\x31\x11\x00\x0c" + b"\x00" * 12, "unsupported version"),
    (V2_SIGNATURE + b"\x2f\x11\x00\x0c" + b"\x00" * 12, "unknown command"),
    (v2(family=0x12), "only STREAM"),
    (v2(body=b"\x00" * 8), "shorter than its family"),
    (V2_SIGNATURE + b"\x21\x11\xff\xff", "over our"),
])
def test_parse_header_refuses(data: bytes, message: str) -> None:
    with pytest.raises(ProxyHeaderError, match=message):
        parse_header(data, (1, 2))


# --------------------------------------------------------------------------- sockets

def _calls() -> tuple[list[dict[str, Any]], Any]:
    calls: list[dict[str, Any]] = []

    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        calls.append({"REMOTE_ADDR": environ["REMOTE_ADDR"], "REMOTE_PORT": environ["REMOTE_PORT"]})
        start_response("200 OK", [("Content-Type", "application/json")])
        return [json.dumps(calls[-1]).encode()]
    return calls, app


GET = b"GET / HTTP/1.1\r\nHost: t\r\n\r\n"


@pytest.mark.parametrize(("mode", "header", "client"), [
    ((1,), V1, ("203.0.113.7", "56324")),
    ((1, 2), V1, ("203.0.113.7", "56324")),
    ((2,), v2(), ("203.0.113.7", "56324")),
    ((1, 2), V2_IPV6, ("2001:db8::7", "4711")),
    ((1, 2), v2(command=0, body=b""), ("127.0.0.1", None)),  # LOCAL: the peer's own
])
def test_the_client_address_comes_from_the_header(serve: Any, mode: tuple[int, ...],
                                                  header: bytes, client: Any) -> None:
    calls, app = _calls()
    server = serve(app, proxy_protocol=mode, proxy_allow=LOCAL)
    conn = server.connect()
    conn.send(header + GET)
    assert conn.read_response().status == 200
    conn.send(GET)  # and for every request of the connection
    assert conn.read_response().status == 200
    assert [c["REMOTE_ADDR"] for c in calls] == [client[0]] * 2
    if client[1] is not None:
        assert calls[0]["REMOTE_PORT"] == client[1]


def test_a_header_in_small_pieces_is_read_whole(serve: Any) -> None:
    calls, app = _calls()
    server = serve(app, proxy_protocol=(1, 2), proxy_allow=LOCAL)
    conn = server.connect()
    for i in range(0, len(v2()), 5):
        conn.send(v2()[i : i + 5])
        gevent.sleep(0.01)
    conn.send(GET)
    assert conn.read_response().status == 200
    assert calls[0]["REMOTE_ADDR"] == "203.0.113.7"


def test_without_a_header_a_trusted_peer_is_served_as_itself(serve: Any) -> None:
    calls, app = _calls()
    server = serve(app, proxy_protocol=(1, 2), proxy_allow=LOCAL)
    assert server.connect().get("/").status == 200
    assert calls[0]["REMOTE_ADDR"] == "127.0.0.1"


@pytest.mark.parametrize(("mode", "allow"), [
    ((), LOCAL),  # --proxy-protocol off
    ((1, 2), TrustedPeers.parse("10.0.0.0/8")),  # a peer not in --proxy-allow-from
])
def test_a_proxy_line_is_a_bad_request_unless_allowed(serve: Any, mode: Any, allow: Any) -> None:
    calls, app = _calls()
    server = serve(app, proxy_protocol=mode, proxy_allow=allow)
    conn = server.connect()
    conn.send(V1 + GET)
    assert conn.read_response().status == 400
    conn.assert_closed()
    assert calls == []


@pytest.mark.parametrize("data", [
    b"PROXY TCP4 203.0.113.7 10.0.0.1 56324\r\n" + GET,  # malformed
    v2(body=b"\x00" * 8) + GET,
    b"PROXY TCP4 203.0.113.7 10.0",  # truncated: the peer closes mid-header
    v2()[:20],
])
def test_a_bad_header_closes_unanswered_and_the_worker_serves_on(serve: Any, data: bytes,
                                                                 caplog: Any) -> None:
    calls, app = _calls()
    server = serve(app, proxy_protocol=(1, 2), proxy_allow=LOCAL)
    conn = server.connect()
    conn.send(data)
    conn.sock.shutdown(socket.SHUT_WR)
    conn.assert_closed()
    assert calls == []
    assert "PROXY" in caplog.text or "connection closed" in caplog.text
    assert server.connect().get("/").status == 200  # the next connection is served


def test_a_header_that_never_completes_is_cut_at_the_read_timeout(serve: Any) -> None:
    calls, app = _calls()
    limits = Limits(**{**TEST_LIMITS.__dict__, "header_timeout": 0.5})
    server = serve(app, limits, proxy_protocol=(1, 2), proxy_allow=LOCAL)
    conn = server.connect()
    conn.send(b"PROXY TCP4 ")
    started = time.monotonic()
    conn.assert_closed()
    assert 0.3 < time.monotonic() - started < 3
    assert calls == []


def test_the_server_takes_the_client_from_a_proxy_header(tmp_path: Any) -> None:
    with running_server("--proxy-protocol", "auto", "tests.apps.hostile:app",
                        tmp_path=tmp_path) as server:
        for header in (V1, v2()):
            sock = socket.create_connection(("127.0.0.1", server.port), timeout=10)
            sock.sendall(header + b"GET /hostile/who HTTP/1.1\r\nHost: t\r\n"
                                  b"Connection: close\r\n\r\n")
            data = b""
            while chunk := sock.recv(65536):
                data += chunk
            sock.close()
            assert data.startswith(b"HTTP/1.1 200"), data
            who = json.loads(data.partition(b"\r\n\r\n")[2])
            assert (who["REMOTE_ADDR"], who["REMOTE_PORT"]) == ("203.0.113.7", "56324")
