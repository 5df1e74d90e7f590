"""Probe shapes an HTTP client library would smooth over, spoken in raw bytes on one socket.

Each shape is one generator ``shape(conn)`` of :class:`Outcome`: it sends the requests of
the shape on a fresh connection (:class:`RawConnection`) and yields each answer, judged with
the rules of :mod:`loadtests.probe_check`, as soon as it has it — so a shape stuck waiting
for an answer that never comes has already reported what it saw before.  The shapes are
those of ``docs/probe-contract.md`` that need control over the bytes: pipelining, HTTP/1.0
with and without keep-alive, a body left partly unread, ``Expect: 100-continue`` whose body
is never asked for, an iterable whose ``close()`` raises, a client that leaves in the middle
of a response, a ``write()`` kept past the response's end, a ``GreenletExit`` out of the
app, a shared header list, threadpool tasks.
:class:`~loadtests.locustfile.RawProbeUser` runs them all, one after the other, and reports
each outcome to locust as a request.
"""

from __future__ import annotations

import secrets
import socket
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from .probe_check import OTHER_VALUE, Problem, check_error_status, check_probe_body
from .procs import Response, ResponseReader

__all__ = ["SHAPES", "Outcome", "RawConnection"]

TIMEOUT = 5.0
"""Seconds a raw probe waits for an answer (a missing answer is a counted failure)."""


@dataclass
class Outcome:
    """One judged answer: the name locust counts it under, its token and its problems."""

    name: str
    token: str
    problems: list[Problem] = field(default_factory=list)
    started: float = field(default_factory=time.perf_counter)
    length: int = 0


class RawConnection:
    """One client socket and the responses read off it, strictly parsed."""

    def __init__(self, host: str, port: int) -> None:
        self.sock = socket.create_connection((host, port), timeout=TIMEOUT)
        self.reader = ResponseReader()
        #: Every byte received, parsed or not (what a late write slipped in shows here).
        self.received = bytearray()
        #: A response said ``Connection: close`` (a draining worker does): a client must not
        #: send on, and what was pipelined behind it may go unanswered (RFC 9112 9.3.2).
        self.told_close = False

    def send(self, data: bytes) -> None:
        if not self.told_close:  # else: not sent, and judge() says why there is no answer
            self.sock.sendall(data)

    def response(self) -> Response | None:
        """The next response; None when the server closed (or sent garbage) first."""
        reader = self.reader
        while not reader.responses:
            if reader.error is not None:
                return None
            try:
                data = self.sock.recv(65536)
            except OSError:
                return None
            if not data:
                reader.finish()
                break
            self.received += data
            reader.feed(data)
        if not reader.responses:
            return None
        response = reader.responses.pop(0)
        self.told_close = self.told_close or response.closes
        return response

    def close(self) -> None:
        self.sock.close()


def _token() -> str:
    return secrets.token_hex(16)


def request(path: str, token: str, *, version: str = "HTTP/1.1", headers: str = "",
            body: bytes = b"", method: str = "GET", length: int | None = None) -> bytes:
    """The bytes of one probe request carrying ``token`` in the headers too (``length``:
    a Content-Length other than the body's, for a body that is never sent)."""
    if length is None and (body or method == "POST"):
        length = len(body)
    framing = "" if length is None else f"Content-Length: {length}\r\n"
    return (f"{method} {path} {version}\r\nHost: probe\r\nX-Probe-Token: {token}\r\n"
            f"X-Request-ID: {token}\r\n{framing}{headers}\r\n").encode() + body


def judge(outcome: Outcome, response: Response | None, conn: RawConnection, *,
          expect: int = 200) -> Outcome:
    """Judge ``response`` as the probe answer for ``outcome.token`` (or as its 500).

    No answer after the server announced ``Connection: close`` is a broken connection-reuse
    check (what a reload's drain legitimately does), not a lost request."""
    if response is None:
        outcome.problems.append(
            Problem("connection", "an answer on this connection",
                    "none: an earlier answer said Connection: close", leak=False)
            if conn.told_close else
            Problem("response", "an answer", "none (closed or garbage)", leak=False))
        return outcome
    outcome.length = len(response.body)
    body = response.body.decode("utf-8", "replace")
    if expect == 200:
        outcome.problems += check_probe_body(outcome.token, response.status, body)
    else:
        outcome.problems += check_error_status(response.status)
        if response.status == 200:  # another request's answer, passed off as this one's
            outcome.problems += [p for p in check_probe_body(outcome.token, 200, body)
                                 if p.leak]
    ids = [value for name, value in response.headers if name.lower() == "x-request-id"]
    if ids != [outcome.token]:
        outcome.problems.append(Problem("headers.X-Request-ID", [outcome.token], ids,
                                        leak=True, context="x-request-id",
                                        kind=OTHER_VALUE))
    return outcome


def pipelined_after_exit(conn: RawConnection) -> Iterator[Outcome]:
    """A ``GreenletExit`` out of the app, with a probe pipelined behind it: a 500 for the
    first, the probe's own answer for the second."""
    first, second = Outcome("RAW pipelined: exit", _token()), Outcome("RAW pipelined: probe",
                                                                      _token())
    conn.send(request(f"/probe/{first.token}/exit", first.token)
              + request(f"/probe/{second.token}", second.token))
    yield judge(first, conn.response(), conn, expect=500)
    yield judge(second, conn.response(), conn)


def http10(conn: RawConnection) -> Iterator[Outcome]:
    """HTTP/1.0 with ``Connection: keep-alive`` twice, then plain HTTP/1.0 (closes)."""
    for headers in ("Connection: keep-alive\r\n", "Connection: keep-alive\r\n", ""):
        outcome = Outcome(f"RAW HTTP/1.0 {'keep-alive' if headers else 'plain'}", _token())
        conn.send(request(f"/probe/{outcome.token}", outcome.token, version="HTTP/1.0",
                          headers=headers))
        yield judge(outcome, conn.response(), conn)


def partial_body(conn: RawConnection) -> Iterator[Outcome]:
    """A body the app reads 10 bytes of; the next request on the connection must be clean."""
    first, second = Outcome("RAW partial body", _token()), Outcome("RAW after partial body",
                                                                   _token())
    conn.send(request(f"/probe/{first.token}/partial", first.token, method="POST",
                      body=first.token.encode() * 40))
    yield judge(first, conn.response(), conn)
    yield _then_probe(conn, second)


def continue_ignored(conn: RawConnection) -> Iterator[Outcome]:
    """``Expect: 100-continue`` to a view that never reads the body: answered without the
    body ever being sent; the server may then close (it cannot skip a body never sent)."""
    outcome = Outcome("RAW 100-continue ignored", _token())
    conn.send(request(f"/probe/{outcome.token}", outcome.token, length=400,
                      headers="Expect: 100-continue\r\n"))
    response = conn.response()
    if response is not None and response.status == 100:  # asked for after all: send it
        conn.send(b"x" * 400)
        response = conn.response()
    yield judge(outcome, response, conn)


def close_raises(conn: RawConnection) -> Iterator[Outcome]:
    """An iterable whose ``close()`` raises; then a probe on the same connection."""
    first, second = Outcome("RAW close() raises", _token()), Outcome("RAW after close() raised",
                                                                     _token())
    conn.send(request(f"/probe/{first.token}/close-raises", first.token))
    yield judge(first, conn.response(), conn)
    yield _then_probe(conn, second)


def late_write(conn: RawConnection) -> Iterator[Outcome]:
    """A child keeps ``write`` and uses it after the response ended, while the connection's
    next (slow) probe is in flight: nothing of it may show in that probe's answer."""
    first, second = Outcome("RAW late write()", _token()), Outcome("RAW after late write()",
                                                                   _token())
    conn.send(request(f"/probe/{first.token}/late-write", first.token))
    yield judge(first, conn.response(), conn)
    mark = len(conn.received)  # the first answer is complete: nothing of it comes later
    conn.send(request(f"/probe/{second.token}?yields=10", second.token))
    outcome = judge(second, conn.response(), conn)
    if first.token.encode() in conn.received[mark:]:
        outcome.problems.append(Problem("bytes after the response", "nothing of it",
                                        "its token", leak=True, context="late write",
                                        kind=OTHER_VALUE))
    yield outcome


def shared_headers(conn: RawConnection) -> Iterator[Outcome]:
    """The app passes one module-level header list to every ``start_response``."""
    for _ in range(2):
        outcome = Outcome("RAW shared header list", _token())
        conn.send(request(f"/probe/{outcome.token}/headers", outcome.token))
        yield judge(outcome, conn.response(), conn)


def threadpool(conn: RawConnection) -> Iterator[Outcome]:
    """Tasks on gevent's threadpool, back to back: each starts with fresh context."""
    for _ in range(3):
        outcome = Outcome("RAW threadpool task", _token())
        conn.send(request(f"/probe/{outcome.token}/threadpool", outcome.token))
        yield judge(outcome, conn.response(), conn)


def disconnect_mid_response(conn: RawConnection) -> Iterator[Outcome]:
    """Leave in the middle of a streamed probe (its context must still be released: the
    probes that follow on other connections, and /metrics after the run, tell)."""
    token = _token()
    conn.send(request(f"/probe/{token}/stream?yields=10", token))
    conn.sock.recv(64)  # the head has started to arrive: leave now
    yield from ()


def _then_probe(conn: RawConnection, outcome: Outcome) -> Outcome:
    conn.send(request(f"/probe/{outcome.token}", outcome.token))
    return judge(outcome, conn.response(), conn)


SHAPES: tuple[Callable[[RawConnection], Iterator[Outcome]], ...] = (
    pipelined_after_exit, http10, partial_body, continue_ignored, close_raises, late_write,
    shared_headers, threadpool, disconnect_mid_response)
"""Every raw shape, in the order a :class:`RawProbeUser` runs them (one connection each)."""
