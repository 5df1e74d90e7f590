"""In-process HTTP servers for tests: the connection handler on a gevent ``StreamServer``.

The protocol and connection tests run the server's HTTP layer inside the test process
(``ConnectionHandler`` — or a hand-written loop over ``HTTPConnection`` — on 127.0.0.1, port
0) and talk to it with :class:`Client`, a raw-bytes client on a gevent socket, so malformed
requests can be sent and the exact response bytes inspected. No monkey-patching: everything
here is gevent-native already. The fixtures ``serve`` and ``serve_raw`` (``conftest.py``)
hand these out and tear them down.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import gevent.socket
from gevent.pool import Pool
from gevent.server import StreamServer

from loadtests.procs import Response, ResponseReader
from server.handler import ConnectionHandler
from server.http import Limits

__all__ = ["CLIENT_TIMEOUT", "TEST_LIMITS", "Client", "Server", "Servers"]

TEST_LIMITS = Limits(
    max_request_line=1024,
    max_header_size=4096,
    max_header_count=20,
    max_body_size=10_000,
    header_timeout=5.0,
    keep_alive=5.0,
)
CLIENT_TIMEOUT = 5.0


class Client:
    """A raw-bytes HTTP/1.1 client on a gevent socket; responses are parsed by the shared
    :class:`~loadtests.procs.ResponseReader`."""

    def __init__(self, address: tuple[str, int]) -> None:
        self.sock = gevent.socket.create_connection(address, timeout=CLIENT_TIMEOUT)
        self.reader = ResponseReader()

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def get(self, path: str = "/", headers: str = "") -> Response:
        self.send(f"GET {path} HTTP/1.1\r\nHost: t\r\n{headers}\r\n".encode("latin-1"))
        return self.read_response()

    def _fill(self) -> bool:
        """Receive what is there into the reader's buffer, unparsed; False at EOF."""
        data = self.sock.recv(65536)
        self.reader.buffer += data
        return bool(data)

    def read_response(self, *, head: bool = False) -> Response:
        """The next response (``head``: the answer to a HEAD request, without a body)."""
        reader = self.reader
        if head:
            reader.bodiless += 1
        reader.feed(b"")
        while not reader.responses:
            assert reader.error is None, reader.error
            if not self._fill():
                reader.finish()
                assert reader.responses, f"EOF before a complete response: {reader.buffer!r}"
                break
            reader.feed(b"")
        assert reader.error is None, reader.error
        resp = reader.responses.pop(0)
        assert resp.head.startswith(b"HTTP/1.1 "), resp.head[:40]
        return resp

    def read_to_eof(self) -> bytes:
        """Everything not parsed yet, up to the server's close."""
        while self._fill():
            pass
        data = bytes(self.reader.buffer)
        self.reader.buffer.clear()
        return data

    def assert_closed(self) -> None:
        """The server closed the connection (nothing more than EOF arrives)."""
        try:
            rest = self.read_to_eof()
        except ConnectionResetError:
            rest = b""
        assert rest == b"", rest

    def close(self) -> None:
        self.sock.close()


@dataclass
class Server:
    address: tuple[str, int]
    handler: ConnectionHandler
    stream: StreamServer
    clients: list[Client] = field(default_factory=list)

    def connect(self) -> Client:
        client = Client(self.address)
        self.clients.append(client)
        return client


class Servers:
    """Starts servers for one test and tears all of them (and their clients) down."""

    def __init__(self) -> None:
        self.running: list[Server] = []

    def start(self, app: Any, limits: Limits = TEST_LIMITS, **kwargs: Any) -> Server:
        handler = ConnectionHandler(
            app, limits, server_name="127.0.0.1", server_port="0", **kwargs
        )
        stream = StreamServer(("127.0.0.1", 0), handler, spawn=Pool())
        stream.start()
        server = Server(stream.address, handler, stream)
        self.running.append(server)
        return server

    def start_raw(self, handle: Callable[[Any, Any], None]) -> Server:
        stream = StreamServer(("127.0.0.1", 0), handle, spawn=Pool())
        stream.start()
        server = Server(stream.address, None, stream)  # type: ignore[arg-type]
        self.running.append(server)
        return server

    def close(self) -> None:
        for server in self.running:
            for client in server.clients:
                client.close()
            server.stream.stop(timeout=2)  # joins, then kills, the connection greenlets
            if server.handler is not None:
                assert server.handler.open_connections == 0
                assert server.handler.active_requests == 0
