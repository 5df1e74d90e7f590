"""ConnectionHandler.drain(idle_grace): the drain deadline reaches every connection.

A connection accepted during the grace may still deliver one request, answered with
``Connection: close``; one that stays silent is closed when the grace ends.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import gevent
import gevent.socket
import pytest
from gevent.pool import Pool
from gevent.server import StreamServer

from loadtests.procs import ResponseReader
from server.handler import ConnectionHandler
from server.http import Limits

TIMEOUT = 5.0
GRACE = 0.5


def hello(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"hello"]


@pytest.fixture
def server() -> Iterator[tuple[ConnectionHandler, tuple[str, int]]]:
    handler = ConnectionHandler(hello, Limits(keep_alive=30.0, header_timeout=5.0),
                                server_name="127.0.0.1", server_port="0")
    stream = StreamServer(("127.0.0.1", 0), handler, spawn=Pool())
    stream.start()
    yield handler, stream.address
    stream.stop(timeout=2)


def read_all(sock: Any) -> bytes:
    """Everything up to the server's close."""
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    return data


def test_connection_accepted_during_the_grace_gets_one_answer(server: Any) -> None:
    handler, address = server
    handler.drain(idle_grace=GRACE)
    with gevent.socket.create_connection(address, timeout=TIMEOUT) as sock:
        gevent.sleep(GRACE / 5)  # well inside the grace
        sock.sendall(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
        reader = ResponseReader()
        reader.feed(read_all(sock))
    assert [(r.status, r.body, r.closes) for r in reader.responses] == [(200, b"hello", True)]


def test_silent_connection_is_closed_when_the_grace_ends(server: Any) -> None:
    handler, address = server
    with gevent.socket.create_connection(address, timeout=TIMEOUT) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
        reader = ResponseReader()
        while not reader.responses:
            reader.feed(sock.recv(65536))
        assert not reader.responses[0].closes
        handler.drain(idle_grace=GRACE)
        with gevent.Timeout(TIMEOUT):
            rest = read_all(sock)  # EOF once the grace is over, not after --keep-alive
    assert rest == b""
