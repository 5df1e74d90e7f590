"""``loadtests/procs.py``, the helpers bench/, loadtests/ and tests/ share: the raw response
reader on made-up bytes, and the process helpers on real (tiny) processes of 127.0.0.1."""

from __future__ import annotations

import http.server
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator

import pytest

from loadtests import procs
from loadtests.procs import ResponseReader

# --------------------------------------------------------------------------- responses


def feed_bytewise(data: bytes, bodiless: int = 0) -> ResponseReader:
    reader = ResponseReader(bodiless)
    for i in range(len(data)):
        reader.feed(data[i:i + 1])
    return reader


def test_reader_frames_by_length_chunks_and_close() -> None:
    wire = (b"HTTP/1.1 100 Continue\r\n\r\n"
            b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-A: 1\r\nx-a: 2\r\n\r\nhello"
            b"HTTP/1.1 204 No Content\r\n\r\n"
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"3;x=y\r\nabc\r\n2\r\nde\r\n0\r\nT: 1\r\n\r\n"
            b"HTTP/1.0 200 OK\r\nConnection: close\r\n\r\nto the end")
    reader = feed_bytewise(wire)  # one byte at a time: nothing depends on how bytes arrive
    assert [r.status for r in reader.responses] == [100, 200, 204, 200]
    assert reader.responses[1].body == b"hello" and reader.responses[1].header("x-A") == "1,2"
    assert reader.responses[3].body == b"abcde"
    reader.finish()  # EOF ends the close-delimited body
    last = reader.responses[4]
    assert (last.body, last.closes, reader.error) == (b"to the end", True, None)


def test_reader_takes_a_head_answer_without_body() -> None:
    reader = feed_bytewise(b"HTTP/1.1 200 OK\r\nContent-Length: 99\r\n\r\n"
                           b"HTTP/1.1 404 Not Found\r\nContent-Length: 2\r\n\r\nno", bodiless=1)
    assert [(r.status, r.body) for r in reader.responses] == [(200, b""), (404, b"no")]


@pytest.mark.parametrize(("wire", "error"), [
    (b"HTTP/2 200\r\n\r\n", "bad status line"),
    (b"HTTP/1.1 200 OK\r\nNo colon\r\n\r\n", "bad header line"),
    (b"HTTP/1.1 200 OK\r\n X-Folded: 1\r\n\r\n", "bad header line"),
    (b"HTTP/1.1 200 OK\r\nContent-Length: 1x\r\n\r\n", "bad Content-Length"),
])
def test_reader_reports_malformed_responses(wire: bytes, error: str) -> None:
    reader = ResponseReader()
    reader.feed(wire)
    assert reader.responses == [] and reader.error is not None and reader.error.startswith(error)


def test_read_response_from_a_socket_and_eof_before_one() -> None:
    a, b = socket.socketpair()
    with a, b:
        b.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokHTTP/1.1 500 X\r\n")
        reader = ResponseReader()
        assert procs.read_response(a, reader).body == b"ok"
        b.close()
        with pytest.raises(ConnectionError, match="closed before a complete response"):
            procs.read_response(a, reader)


# --------------------------------------------------------------------------- HTTP, health


@pytest.fixture
def http_server() -> Iterator[str]:
    """A stdlib HTTP server on 127.0.0.1: /healthz answers 200, anything else 503."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            ok = self.path == "/healthz"
            self.send_response(200 if ok else 503)
            self.end_headers()
            self.wfile.write(b'{"status": "ok"}' if ok else b"busy")

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", procs.free_port()), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_fetch_returns_error_statuses_as_answers(http_server: str) -> None:
    assert procs.fetch(f"{http_server}/healthz") == (200, b'{"status": "ok"}')
    assert procs.fetch(f"{http_server}/other") == (503, b"busy")


def test_wait_healthy(http_server: str) -> None:
    procs.wait_healthy(f"{http_server}/healthz", timeout=5)
    with pytest.raises(procs.NotHealthy, match="not healthy after"):
        procs.wait_healthy(f"{http_server}/other", timeout=0.3)
    with pytest.raises(procs.NotHealthy, match="not healthy after"):
        procs.wait_healthy(f"{http_server}/healthz", timeout=0.3, accept=lambda body: False)


def test_wait_healthy_gives_up_as_soon_as_the_process_exits() -> None:
    proc = subprocess.Popen([sys.executable, "-c", "raise SystemExit(3)"])
    started = time.monotonic()
    with pytest.raises(procs.NotHealthy, match="exited with 3"):
        procs.wait_healthy(f"http://127.0.0.1:{procs.free_port()}/healthz", proc, timeout=30)
    assert time.monotonic() - started < 10


def test_wait_for_zero() -> None:
    values = iter([3.0, 1.0, 0.0, 5.0])
    assert procs.wait_for_zero(lambda: next(values), timeout=5, interval=0.01) == 0.0
    assert procs.wait_for_zero(lambda: 2.0, timeout=0.05, interval=0.01) == 2.0


# --------------------------------------------------------------------------- processes

# A "master" in a session of its own that forks a "worker" which ignores SIGTERM and would
# outlive its master: what a crashed or misbehaving server leaves behind.
MASTER = """
import os, signal, sys, time
signal.signal(signal.SIGTERM, signal.SIG_IGN)
pid = os.fork()
if pid == 0:
    time.sleep(60)
    os._exit(0)
signal.signal(signal.SIGTERM, lambda *a: sys.exit(0))
print(pid, flush=True)
time.sleep(60)
"""


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie (not reaped yet by its parent) counts as gone
    with open(f"/proc/{pid}/stat") as stat:
        return stat.read().split(") ", 1)[1][0] != "Z"


@pytest.mark.parametrize("whole_group", [False, True])
def test_stop_process_group_kills_what_outlives_the_master(whole_group: bool) -> None:
    master = subprocess.Popen([sys.executable, "-c", MASTER], stdout=subprocess.PIPE,
                              start_new_session=True)
    worker = int(master.stdout.readline())  # type: ignore[union-attr]
    master.stdout.close()  # type: ignore[union-attr]
    assert procs.children_of(master.pid) == {worker}
    started = time.monotonic()
    # TERM (to the master, or to all): the master exits cleanly, the worker ignores it
    assert procs.stop_process_group(master, 2.0, whole_group=whole_group) == 0
    deadline = time.monotonic() + 5
    while alive(worker) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not alive(worker), "the worker that ignored TERM is still running"
    assert time.monotonic() - started < 10
    assert procs.children_of(master.pid) == set()


def test_stop_process_group_kills_a_master_that_ignores_term() -> None:
    proc = subprocess.Popen([sys.executable, "-c", "import signal, time; signal.signal("
                             "signal.SIGTERM, signal.SIG_IGN); print(1, flush=True); "
                             "time.sleep(60)"], stdout=subprocess.PIPE, start_new_session=True)
    proc.stdout.readline()  # type: ignore[union-attr]  # the handler is in place
    proc.stdout.close()  # type: ignore[union-attr]
    assert procs.stop_process_group(proc, 0.2) == -signal.SIGKILL


def test_stop_process_group_of_a_process_without_a_group_of_its_own() -> None:
    """Not a group leader: only the process is stopped, never the caller's group."""
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    assert procs.stop_process_group(proc, 5.0) == -signal.SIGTERM


def test_cpu_model_and_free_port() -> None:
    assert procs.cpu_model()
    port = procs.free_port()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", port))  # nobody holds it
