"""The four holes of issue 10, each pinned on a real server process and real sockets.

1. nothing a request does after its end reaches the socket (late ``write()``, late
   ``wsgi.input`` read): refused with an exception, logged with the request id;
2. any ``BaseException`` out of the app ends that request only (500, or a closed connection
   once the response had started); the worker and its other requests carry on;
3. the app's header list is never mutated; an app's own ``X-Request-ID`` is not doubled; the
   server's own 500 echoes the id;
4. every gevent threadpool task starts with fresh context.
"""

from __future__ import annotations

import json
import socket
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from loadtests.procs import ResponseReader, read_response
from tests.support import running_server

APP = "tests.apps.adversary:app"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with running_server(APP, tmp_path=tmp_path_factory.mktemp("holes"), workers=1) as srv:
        yield srv


def _connect(server) -> socket.socket:
    return socket.create_connection(("127.0.0.1", server.port), timeout=5)


def _request(path: str, headers: str = "") -> bytes:
    return f"GET {path} HTTP/1.1\r\nHost: t\r\n{headers}\r\n".encode()


def _rest(sock: socket.socket, reader: ResponseReader, wait: float) -> bytes:
    """What else arrives on the connection within ``wait`` seconds (unparsed bytes too)."""
    sock.settimeout(wait)
    data = bytes(reader.buffer)
    try:
        while chunk := sock.recv(65536):
            data += chunk
    except TimeoutError:
        pass
    return data


# -- 1. nothing after the end ---------------------------------------------------------------

def test_a_late_write_is_refused_and_never_reaches_the_next_response(server):
    with _connect(server) as sock:
        reader = ResponseReader()
        sock.sendall(_request("/late-write/A", "X-Request-ID: late-writer\r\n"))
        assert read_response(sock, reader).body == b"ok"
        # The next request of the connection is in flight when the child writes (at 50 ms).
        sock.sendall(_request("/slow"))
        second = read_response(sock, reader)
        assert second.status == 200 and second.body.isdigit(), second
        assert b"SECRET" not in _rest(sock, reader, 0.2)
    result = json.loads(server.get("/late-result")[2])
    assert len(result) == 1 and "ResponseEnded" in result[0], result
    assert "late-writer" in server.log()  # the refusal is logged with the request id


def test_a_late_body_read_is_refused(server):
    with _connect(server) as sock:
        reader = ResponseReader()
        sock.sendall(b"POST /late-read HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\n"
                     b"X-Request-ID: late-reader\r\n\r\nabc")
        assert read_response(sock, reader).body == b"ok"
        sock.sendall(_request("/slow"))
        assert read_response(sock, reader).status == 200
    result = json.loads(server.get("/late-result")[2])
    assert len(result) == 1 and "ResponseEnded" in result[0], result
    assert "late-reader" in server.log()


# -- 2. BaseException ends that request only ------------------------------------------------

RAISED = ["GreenletExit", "SystemExit", "KeyboardInterrupt", "AppBaseException"]


@pytest.mark.parametrize("name", RAISED)
def test_a_base_exception_from_the_app_costs_that_request_only(server, name):
    pid = server.get("/pid")[2]
    with ThreadPoolExecutor(5) as pool:
        neighbours = [pool.submit(server.get, "/slow") for _ in range(5)]
        time.sleep(0.05)  # all five in flight on the worker
        with _connect(server) as sock:
            reader = ResponseReader()
            # Pipelined: the answer to the second must never pass for the first's.
            sock.sendall(_request(f"/raise/{name}", f"X-Request-ID: raise-{name}\r\n")
                         + _request("/pid"))
            failed = read_response(sock, reader)
            assert failed.status == 500, failed
            assert failed.header("X-Request-ID") == f"raise-{name}"
            after = read_response(sock, reader)
            assert (after.status, after.body) == (200, pid)
        for neighbour in neighbours:
            assert neighbour.result()[0:3:2] == (200, pid)
    assert server.get("/pid")[2] == pid  # the same worker still
    assert f"request_id=raise-{name}" in server.log()


@pytest.mark.parametrize("name", RAISED)
def test_a_base_exception_after_the_head_closes_the_connection(server, name):
    pid = server.get("/pid")[2]
    with _connect(server) as sock:
        sock.sendall(_request(f"/raise-late/{name}") + _request("/pid"))
        data = _rest(sock, ResponseReader(), 2.0)
    assert data.startswith(b"HTTP/1.1 200 OK\r\n") and b"first chunk" in data, data
    assert not data.endswith(b"0\r\n\r\n")  # no terminating chunk: the client sees the cut
    assert data.count(b"HTTP/1.1") == 1  # the pipelined request was not answered on it
    assert server.get("/pid")[2] == pid


@pytest.mark.parametrize("name", RAISED)
def test_a_base_exception_in_a_child_greenlet_of_the_app_spares_the_worker(server, name):
    """gevent's hub re-raises SystemExit/KeyboardInterrupt of *any* greenlet in the main
    one, which would end the worker: the worker's hub treats them as any other error."""
    pid = server.get("/pid")[2]
    with ThreadPoolExecutor(5) as pool:
        neighbours = [pool.submit(server.get, "/slow") for _ in range(5)]
        time.sleep(0.05)
        assert server.get(f"/spawn-raise/{name}")[0:3:2] == (200, pid)
        for neighbour in neighbours:
            assert neighbour.result()[0:3:2] == (200, pid)
    assert server.get("/pid")[2] == pid


# -- 3. headers -----------------------------------------------------------------------------

def test_the_apps_header_list_is_never_mutated(server):
    with _connect(server) as sock:
        reader = ResponseReader()
        for n in range(5):  # the app passes the same list object every time
            sock.sendall(_request("/shared-headers", f"X-Request-ID: client-{n}\r\n"))
            resp = read_response(sock, reader)
            assert resp.body == b"shared"
            ids = [value for name, value in resp.headers if name.lower() == "x-request-id"]
            assert ids == [f"client-{n}"], resp.headers


def test_an_apps_own_request_id_is_not_doubled(server):
    with _connect(server) as sock:
        sock.sendall(_request("/own-id", "X-Request-ID: from-client\r\n"))
        resp = read_response(sock)
    ids = [value for name, value in resp.headers if name.lower() == "x-request-id"]
    assert ids == ["set-by-the-app"], resp.headers


# -- 4. threadpool --------------------------------------------------------------------------

def test_every_threadpool_task_starts_with_fresh_context(server):
    threads = set()
    for n in range(30):  # far more tasks than the pool has threads: threads are reused
        result = server.get_json(f"/threadpool/token-{n}")
        assert result["stale"] == {}, (n, result)
        threads.add(result["thread"])
    assert len(threads) < 30
