"""Raw exchanges with a server under test: send bytes, read back what came, judge it.

Every socket has a timeout and every read a deadline, so no case can hang on a server that
misbehaves; :class:`Reply` records what was seen (responses, close or reset, stray bytes).
"""

from __future__ import annotations

import json
import secrets
import select
import socket
import time
from dataclasses import dataclass
from typing import Any

from loadtests.probe_check import check_probe_body, failure_message
from loadtests.procs import Response, ResponseReader
from tests.reliability.framework import expect

HOST = "127.0.0.1"


@dataclass
class Reply:
    """Everything one raw exchange brought back."""

    raw: bytes
    responses: list[Response]
    closed: bool  # the server closed (EOF or reset) within the wait
    reset: bool
    elapsed: float  # seconds from the last byte sent to the end of reading
    parse_error: str | None
    leftover: bytes

    @property
    def statuses(self) -> list[int]:
        return [r.status for r in self.responses]

    def describe(self) -> str:
        parts = [",".join(map(str, self.statuses)) or "no response"]
        if self.parse_error:
            parts.append(f"unparsable: {self.parse_error}")
        if self.leftover:
            parts.append(f"{len(self.leftover)} stray bytes")
        parts.append(("reset" if self.reset else "closed") if self.closed else "kept open")
        return ", ".join(parts)


def connect(port: int, timeout: float = 5.0) -> socket.socket:
    return socket.create_connection((HOST, port), timeout=timeout)


def read_reply(sock: socket.socket, *, timeout: float = 5.0, responses: int | None = None,
               reader: ResponseReader | None = None, started: float | None = None) -> Reply:
    """Read until the server closes, ``timeout`` passes, or ``responses`` complete ones."""
    reader = reader or ResponseReader()
    started = time.monotonic() if started is None else started
    deadline = started + timeout
    raw = bytearray(reader.buffer)
    closed = reset = False
    while True:
        if responses is not None and len(reader.responses) >= responses:
            break
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            break
        sock.settimeout(remaining)
        try:
            data = sock.recv(65536)
        except TimeoutError:
            break
        except ConnectionResetError:
            closed = reset = True
            break
        if not data:
            closed = True
            break
        raw += data
        reader.feed(data)
    if closed:
        reader.finish()
    return Reply(bytes(raw), reader.responses, closed, reset, time.monotonic() - started,
                 reader.error, bytes(reader.buffer))


def exchange(port: int, data: bytes, *, timeout: float = 5.0, responses: int | None = None,
             half_close: bool = False, pieces: int = 1, bodiless: int = 0) -> Reply:
    """Send ``data`` on a new connection (in ``pieces`` writes) and read what comes back."""
    with connect(port, timeout) as sock:
        try:
            if pieces <= 1:
                sock.sendall(data)
            else:  # separate segments: no Nagle, and a pause for the server to parse each
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                step = max(1, -(-len(data) // pieces))
                for i in range(0, len(data), step):
                    sock.sendall(data[i:i + step])
                    time.sleep(0.001)
            if half_close:
                sock.shutdown(socket.SHUT_WR)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server answered and closed before we were done: read that answer
        return read_reply(sock, timeout=timeout, responses=responses,
                          reader=ResponseReader(bodiless))


def server_quiet(sock: socket.socket, wait: float = 0.0) -> bool:
    """True if the server has neither sent anything nor closed within ``wait`` seconds."""
    readable, _, _ = select.select([sock], [], [], wait)
    return not readable


def get(path: str, *headers: str, close: bool = False) -> bytes:
    lines = [f"GET {path} HTTP/1.1", "Host: x", *headers]
    if close:
        lines.append("Connection: close")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def new_token() -> str:
    return secrets.token_hex(16)


def probe_request(token: str, *, close: bool = False, yields: int = 1) -> bytes:
    return get(f"/probe/{token}?yields={yields}", f"X-Probe-Token: {token}",
               f"X-Request-ID: {token}", close=close)


def probe_problems(token: str, resp: Response) -> str | None:
    """None when ``resp`` is a correct probe answer for ``token``, else the failure text."""
    return failure_message(check_probe_body(token, resp.status, resp.body.decode("utf-8",
                                                                                "replace")))


def fresh_probe(port: int, timeout: float = 5.0) -> dict[str, Any]:
    """One probe on a new connection; raises Mismatch unless it is answered correctly."""
    token = new_token()
    reply = exchange(port, probe_request(token, close=True), timeout=timeout, responses=1)
    expect(reply.responses, f"new connection not served ({reply.describe()})")
    problem = probe_problems(token, reply.responses[0])
    expect(problem is None, f"new connection: {problem}")
    return json.loads(reply.responses[0].body)


def expect_reject(reply: Reply, statuses: tuple[int, ...]) -> str:
    """One error response with a status in ``statuses``, ``Connection: close``, then EOF."""
    got = reply.describe()
    expect(len(reply.responses) == 1 and reply.statuses[0] in statuses and not reply.leftover,
           got)
    expect(reply.responses[0].closes, got + " (no Connection: close)")
    expect(reply.closed, got)
    return got


def hits(port: int, tag: str) -> int:
    reply = exchange(port, get(f"/hostile/hits/{tag}", close=True), responses=1)
    expect(reply.statuses == [200], f"/hostile/hits: {reply.describe()}")
    return json.loads(reply.responses[0].body)["hits"]
