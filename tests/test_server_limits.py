"""A real server on every request of the invalid corpus (``tests/requests/invalid/``): each
is answered with its status, the connection is closed, and the worker keeps serving everyone
else; slow heads are cut at --read-timeout; wsgiref.validate finds no WSGI violation."""

from __future__ import annotations

import socket

import pytest

from tests import corpus
from tests.reliability.wire import exchange
from tests.support import running_server


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """The hostile test app (its /hostile/echo reads the body, so body errors are met) with
    the corpus limits."""
    args = ("tests.apps.hostile:app", *corpus.SERVER_FLAGS, "--read-timeout", "1")
    with running_server(*args, tmp_path=tmp_path_factory.mktemp("limits")) as srv:
        yield srv


def status_of(response: bytes) -> int:
    return int(response.split(b" ", 2)[1])


@pytest.mark.parametrize("case", corpus.INVALID, ids=lambda c: c.id)
def test_invalid_request_answers_with_its_status_and_closes(server, case):
    reply = exchange(server.port, case.raw())
    assert len(reply.responses) == 1 and reply.statuses[0] in case.status, reply.describe()
    assert reply.responses[0].closes, reply.raw[:300]
    assert reply.closed and not reply.leftover, reply.describe()
    # ...and the worker keeps serving everyone else
    assert server.get("/")[0] == 200


@pytest.mark.parametrize(("body", "status"), [
    (b"186A1\r\n" + b"a" * 100_001 + b"\r\n0\r\n\r\n", 413),  # over --max-body-size
    (b"zz\r\n", 400),  # a chunk size that is not hex
])
def test_an_error_met_in_wsgi_input_carries_the_request_id(server, body, status):
    """The 413/400 the app meets reading its body is the request's answer: the client
    quotes its X-Request-ID when it reports it, as for the app's own 500."""
    head = (b"POST /hostile/echo HTTP/1.1\r\nHost: x\r\nX-Request-ID: body-err-1\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n")
    reply = exchange(server.port, head + body)
    assert reply.statuses == [status], reply.describe()
    assert reply.responses[0].header("X-Request-ID") == "body-err-1"
    assert reply.responses[0].closes and reply.closed


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
