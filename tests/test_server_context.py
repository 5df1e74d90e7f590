"""Per-request context on a real server: fresh on every request of a keep-alive
connection, released on error, streaming, disconnect; children get a copy."""

from __future__ import annotations

import json
import secrets
import socket
from concurrent.futures import ThreadPoolExecutor

import pytest

from loadtests.procs import ResponseReader, read_response
from tests.support import metric_values, running_server, wait_no_live_entries


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with running_server(tmp_path=tmp_path_factory.mktemp("ctx"), workers=1) as srv:
        yield srv


def _probe_headers(token: str) -> dict[str, str]:
    return {"X-Probe-Token": token, "X-Request-ID": token}


def _assert_clean(payload: dict, token: str) -> None:
    assert payload["stale"] == [], payload
    for key, value in payload["values"].items():
        assert value == token, (key, value, token)


def test_sequential_keep_alive_requests_see_a_fresh_context(server):
    conn = server.connection()
    try:
        for _ in range(20):
            token = secrets.token_hex(16)
            conn.request("GET", f"/probe/{token}?yields=0", headers=_probe_headers(token))
            resp = conn.getresponse()
            assert resp.status == 200
            assert resp.getheader("Connection") != "close"
            _assert_clean(json.loads(resp.read()), token)
    finally:
        conn.close()


def test_error_then_next_request_on_the_same_connection_is_clean(server):
    """One socket, two requests: the app raises after filling the context, the next request
    on that very connection must find nothing of it."""
    token, token2 = secrets.token_hex(16), secrets.token_hex(16)
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        reader = ResponseReader()
        sock.sendall(f"GET /probe/{token}/error HTTP/1.1\r\nHost: x\r\n"
                     f"X-Probe-Token: {token}\r\n\r\n".encode())
        resp = read_response(sock, reader)
        assert resp.status == 500
        assert b"Traceback" not in resp.body and b"ProbeFailure" not in resp.body
        assert not resp.closes  # the connection stays usable
        sock.sendall(f"GET /probe/{token2} HTTP/1.1\r\nHost: x\r\n"
                     f"X-Probe-Token: {token2}\r\nX-Request-ID: {token2}\r\n\r\n".encode())
        resp = read_response(sock, reader)
        assert resp.status == 200
        _assert_clean(json.loads(resp.body), token2)
    # The deliberate failure is not logged at info (tests/test_probe_logging.py checks that
    # a real app error is, with its request id and traceback).
    assert "ProbeFailure" not in server.log()


def test_streamed_body_reads_its_own_context(server):
    token = secrets.token_hex(16)
    status, _headers, body = server.get(f"/probe/{token}/stream?yields=5",
                                       headers=_probe_headers(token))
    assert status == 200
    lines = [json.loads(line) for line in body.splitlines()]
    assert len(lines) == 5
    for line in lines:
        _assert_clean(line, token)


def test_child_greenlets_see_a_copy_and_never_write_back(server):
    token = secrets.token_hex(16)
    payload = server.get_json(f"/probe/{token}/fanout?children=6", _probe_headers(token))
    _assert_clean(payload, token)  # parent's g is still the token after children wrote
    assert len(payload["children"]) == 6
    for child in payload["children"]:
        assert child == {"g": token, "local": token, "stack": token, "header": token}


def test_request_id_is_echoed_and_sanitised(server):
    _, headers, _ = server.get("/", headers={"X-Request-ID": "abc-123"})
    assert headers["X-Request-ID"] == "abc-123"
    _, headers, _ = server.get("/", headers={"X-Request-ID": "bad id<script>"})
    assert headers["X-Request-ID"] != "bad id<script>"
    assert len(headers["X-Request-ID"]) == 16
    _status, headers, _ = server.get("/", headers={"X-Request-ID": "x" * 500})
    assert len(headers["X-Request-ID"]) == 16


def test_disconnect_mid_response_releases_the_context(server):
    token = secrets.token_hex(16)
    sock = socket.create_connection(("127.0.0.1", server.port))
    sock.sendall(f"GET /probe/{token}/stream?yields=50 HTTP/1.1\r\nHost: x\r\n"
                 f"X-Probe-Token: {token}\r\n\r\n".encode())
    first = sock.recv(4096)
    assert first.startswith(b"HTTP/1.1 200")
    sock.close()  # gone mid-stream
    assert wait_no_live_entries(server) == 0
    # and the worker keeps serving
    assert server.get("/")[0] == 200


def test_no_live_entries_after_requests_end(server):
    for _ in range(10):
        token = secrets.token_hex(16)
        server.get_json(f"/probe/{token}/fanout", _probe_headers(token))
    assert wait_no_live_entries(server) == 0
    metrics = server.metrics()
    # the only in-flight request is the scrape itself
    assert metric_values(metrics, "ctxserver_requests_in_flight")[""] == 1


def test_unsafe_probe_is_not_mounted_by_default(server):
    assert server.get(f"/unsafe/probe/{secrets.token_hex(16)}")[0] == 404


def test_unsafe_probe_leaks_when_enabled(tmp_path):
    """The negative control: concurrent clients overwrite the global, and it shows."""
    with running_server("--unsafe-probe", tmp_path=tmp_path) as srv:
        def one() -> bool:
            token = secrets.token_hex(16)
            payload = srv.get_json(f"/unsafe/probe/{token}?yields=3", _probe_headers(token))
            return bool(payload["stale"]) or any(v != token for v in payload["values"].values())

        with ThreadPoolExecutor(20) as pool:
            leaked = list(pool.map(lambda _: one(), range(60)))
    assert any(leaked)


def test_flask_app_under_the_server_does_not_leak(tmp_path):
    with running_server("tests.apps.flask_app:app", tmp_path=tmp_path) as srv:
        conn = srv.connection()
        try:
            for _ in range(20):
                token = secrets.token_hex(16)
                conn.request("GET", f"/probe/{token}", headers={"X-Probe-Token": token})
                resp = conn.getresponse()
                payload = json.loads(resp.read())
                assert resp.status == 200
                assert payload["stale"] == []
                assert set(payload["values"].values()) == {token}
        finally:
            conn.close()
        assert wait_no_live_entries(srv) == 0


def test_bare_wsgi_app_gets_its_locals_released(tmp_path):
    with running_server("tests.apps.bare:app", tmp_path=tmp_path) as srv:
        conn = srv.connection()
        try:
            for i in range(5):
                conn.request("GET", f"/{i}")
                resp = conn.getresponse()
                assert resp.read() == b"stale=None"
        finally:
            conn.close()
