"""Every limit answers with its status on a real server, the connection is closed, and the
worker keeps serving everyone else; wsgiref.validate finds no WSGI violation."""

from __future__ import annotations

import socket

import pytest

from tests.support import running_server


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    args = ("--max-request-line", "1024", "--max-header-size", "4096",
            "--max-header-count", "20", "--max-body-size", "1000", "--timeout", "1")
    with running_server(*args, tmp_path=tmp_path_factory.mktemp("limits")) as srv:
        yield srv


def exchange(server, raw: bytes, timeout: float = 5.0) -> bytes:
    """Send raw bytes, read until the server closes; return everything it sent."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=timeout) as sock:
        sock.sendall(raw)
        chunks = []
        while True:
            try:
                data = sock.recv(65536)
            except ConnectionResetError:
                break
            if not data:
                break
            chunks.append(data)
    return b"".join(chunks)


def status_of(response: bytes) -> int:
    return int(response.split(b" ", 2)[1])


CASES = {
    "uri too long": (b"GET /" + b"a" * 2000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", 414),
    "too many headers": (b"GET / HTTP/1.1\r\nHost: x\r\n"
                         + b"".join(b"X-H%d: v\r\n" % i for i in range(30)) + b"\r\n", 431),
    "header block too large": (b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"v" * 5000
                               + b"\r\n\r\n", 431),
    "body too large": (b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5000\r\n\r\n", 413),
    "malformed request line": (b"GARBAGE\r\n\r\n", 400),
    "transfer-encoding gzip": (b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n",
                               501),
    "cl and te together": (b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n"
                           b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_limit_answers_with_its_status_and_closes(server, case):
    raw, expected = CASES[case]
    response = exchange(server, raw)
    assert status_of(response) == expected, response[:200]
    assert b"Connection: close" in response.split(b"\r\n\r\n", 1)[0]
    # ...and the worker keeps serving everyone else
    assert server.get("/")[0] == 200


def test_slow_header_is_cut_at_timeout(server):
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n")  # never finishes the head
        data = sock.recv(4096)
        assert data == b"" or status_of(data) in (400, 408)
    assert server.get("/")[0] == 200


def test_wsgiref_validator_finds_no_violation(tmp_path):
    with running_server("tests.apps.bare:validated", tmp_path=tmp_path) as srv:
        for path in ("/", "/probe/abc", "/probe/abc/stream?yields=2", "/probe/abc/fanout",
                     "/nope"):
            status, _, _ = srv.get(path, headers={"X-Probe-Token": "abc"})
            assert status in (200, 404), path
        conn = srv.connection()
        conn.request("POST", "/", body=b"x" * 100, headers={"Content-Type": "text/plain"})
        response = conn.getresponse()
        assert response.status == 200 and response.read() == b"Hello, World!"
        conn.close()
        log = srv.log()
    assert "AssertionError" not in log and "WSGIWarning" not in log, log
