"""Reliability cases: hostile HTTP, slow clients, fuzzing, faults — one source of truth.

Every case runs against a real ``python -m server`` on 127.0.0.1 and is defined exactly once,
here. ``tests/test_reliability.py`` parametrizes pytest over :data:`CASES`;
``python -m tests.reliability_report`` (``make reliability``) runs the same cases and prints
the case / expected / got table (the README's Reliability section holds one such run).

Shape of a case: a function ``run(session) -> str`` registered with :func:`case`. It returns
what it observed ("got") when the server behaved as ``expected``, and raises
:class:`Mismatch` carrying what it observed otherwise. Cases of one *group* share one server
(the group's options) and, for most groups, a :class:`GoodClient`: well-behaved background
threads sending leak probes (``docs/probe-contract.md``) on a kept-alive connection and on
fresh connections the whole time. :func:`run_case` wraps every case of such a group: the
good client must have kept being served during the case with no failure and no leak, a new
connection must be served afterwards, and the worker must be the same process (no crash).
Groups with ``server=None`` (the faults) start and stop their own servers.

Everything is bounded: every socket has a timeout, every loop a count or a deadline, and
every process started here is stopped (``tests.support.running_server`` and the
``LocustRun`` context manager).
"""

from __future__ import annotations

import contextlib
import csv
import json
import os
import re
import secrets
import select
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from loadtests.probe_check import check_probe_body, failure_message
from loadtests.procs import Response, ResponseReader
from loadtests.summary import parse_summary
from tests.support import (
    ROOT,
    ServerProcess,
    free_port,
    metric_values,
    run_cli,
    running_server,
    wait_for_workers,
    worker_pids,
)

HOST = "127.0.0.1"


class Mismatch(AssertionError):
    """The server did not behave as the case expects; the message is what it did instead."""


def expect(condition: Any, got: str) -> None:
    if not condition:
        raise Mismatch(got)


# =========================================================================== wire helpers


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


# =========================================================================== good client


@dataclass
class Record:
    """One request of the good client."""

    token: str
    started: float
    ended: float
    ok: bool
    pid: int | None
    error: str | None
    conn: int  # serial number of the connection it went out on
    conn_pid: int | None  # the worker that answered the previous request on that connection
    received: int  # response bytes received (for a failure: 0 = nothing came back)
    leak: bool = False


class GoodClient:
    """Well-behaved clients in background threads, checking every answer as a leak probe.

    ``keepalive`` threads reuse one connection (reconnecting when the server closes it);
    ``fresh`` threads open a new connection per request. Every request carries a fresh token
    and its answer is judged by ``loadtests.probe_check``; everything is recorded.
    """

    MAX_RECORDS = 200_000

    def __init__(self, port: int, *, keepalive: int = 1, fresh: int = 1, pause: float = 0.01,
                 yields: int = 1, timeout: float = 10.0) -> None:
        self.port = port
        self.pause = pause
        self.yields = yields
        self.timeout = timeout
        self.records: list[Record] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._running = threading.Event()
        self._running.set()
        self._busy = 0
        self._serial = 0
        self._threads = [threading.Thread(target=self._loop, args=(True,), daemon=True)
                         for _ in range(keepalive)]
        self._threads += [threading.Thread(target=self._loop, args=(False,), daemon=True)
                          for _ in range(fresh)]

    def __enter__(self) -> GoodClient:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(self.timeout + 5)

    def _next_serial(self) -> int:
        with self._lock:
            self._serial += 1
            return self._serial

    def _record(self, record: Record) -> None:
        with self._lock:
            if len(self.records) < self.MAX_RECORDS:
                self.records.append(record)

    def _loop(self, keepalive: bool) -> None:
        with self._lock:
            self._busy += 1
        try:
            self._serve(keepalive)
        finally:
            with self._lock:
                self._busy -= 1

    @contextlib.contextmanager
    def paused(self, timeout: float = 10.0) -> Iterator[None]:
        """No request of ours is in flight inside the block (connections may stay open)."""
        self._running.clear()
        try:
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                with self._lock:
                    if self._busy == 0:
                        break
                time.sleep(0.01)
            yield
        finally:
            self._running.set()

    def _serve(self, keepalive: bool) -> None:
        sock: socket.socket | None = None
        serial, conn_pid = 0, None
        while not self._stop.is_set():
            if not self._running.is_set():
                with self._lock:
                    self._busy -= 1
                self._running.wait(self.timeout)
                with self._lock:
                    self._busy += 1
                continue
            if sock is None:
                serial, conn_pid = self._next_serial(), None
                try:
                    sock = connect(self.port, self.timeout)
                except OSError as exc:
                    now = time.monotonic()
                    self._record(Record("-", now, now, False, None, f"connect: {exc!r}",
                                        serial, None, 0))
                    self._stop.wait(0.05)
                    continue
            token = new_token()
            started = time.monotonic()
            try:
                sock.sendall(probe_request(token, close=not keepalive, yields=self.yields))
                reply = read_reply(sock, timeout=self.timeout, responses=1)
            except OSError as exc:
                reply = Reply(b"", [], True, True, 0.0, f"send: {exc!r}", b"")
            record = Record(token, started, time.monotonic(), False, None, None, serial,
                            conn_pid, len(reply.raw))
            if reply.responses:
                resp = reply.responses[0]
                problem = probe_problems(token, resp)
                if problem is None:
                    record.ok = True
                    record.pid = conn_pid = json.loads(resp.body)["pid"]
                else:
                    record.error = problem
                    record.leak = problem.startswith("LEAK")
            else:
                record.error = f"no response ({reply.describe()})"
            self._record(record)
            keep = keepalive and reply.responses and not reply.responses[0].closes \
                and not reply.closed
            if not keep:
                with contextlib.suppress(OSError):
                    sock.close()
                sock = None
            self._stop.wait(self.pause)
        if sock is not None:
            sock.close()

    # -- views
    def mark(self) -> int:
        with self._lock:
            return len(self.records)

    def since(self, mark: int) -> list[Record]:
        with self._lock:
            return self.records[mark:]

    def wait_served(self, mark: int, count: int, timeout: float = 10.0) -> int:
        """Wait until ``count`` requests after ``mark`` succeeded; returns how many did."""
        deadline = time.monotonic() + timeout
        ok = 0
        while time.monotonic() < deadline:
            ok = sum(r.ok for r in self.since(mark))
            if ok >= count:
                break
            time.sleep(0.01)
        return ok


def summarize_failures(records: list[Record], limit: int = 3) -> str:
    bad = [r for r in records if not r.ok]
    return "; ".join(sorted({(r.error or "?")[:120] for r in bad})[:limit])


# =========================================================================== groups, cases


@dataclass(frozen=True)
class Group:
    """One server configuration shared by the cases of the group (``server=None``: none)."""

    name: str
    title: str
    server: tuple[str, ...] | None
    workers: int = 1
    good_client: bool = True


GROUPS: dict[str, Group] = {}


def group(name: str, title: str, server: tuple[str, ...] | None, **kw: Any) -> Group:
    GROUPS[name] = g = Group(name, title, server, **kw)
    return g


@dataclass(frozen=True)
class Case:
    group: str
    name: str
    expected: str
    run: Callable[[Session], str]
    #: Set when an existing test already covers exactly this (pytest then does not run it
    #: again; the report still shows it).
    covered_by: str | None = None

    @property
    def id(self) -> str:
        return re.sub(r"[^a-z0-9]+", "-", self.name.lower()).strip("-")


CASES: list[Case] = []


def case(group_name: str, name: str, expected: str, *, covered_by: str | None = None
         ) -> Callable[[Callable[[Session], str]], Callable[[Session], str]]:
    def register(func: Callable[[Session], str]) -> Callable[[Session], str]:
        CASES.append(Case(group_name, name, expected, func, covered_by))
        return func
    return register


def cases_of(group_name: str, *, include_covered: bool = True) -> list[Case]:
    return [c for c in CASES if c.group == group_name
            and (include_covered or c.covered_by is None)]


@dataclass
class Session:
    """What a case gets: the group's server (if any), its good client, a scratch dir."""

    group: Group
    tmp: Path
    server: ServerProcess | None = None
    good: GoodClient | None = None
    worker_pid: int | None = None

    @property
    def port(self) -> int:
        assert self.server is not None
        return self.server.port


@contextlib.contextmanager
def session(group_: Group | str, tmp: Path) -> Iterator[Session]:
    """Start the group's server and good client; stop both, always."""
    grp = GROUPS[group_] if isinstance(group_, str) else group_
    sess = Session(grp, tmp)
    if grp.server is None:
        yield sess
        return
    with running_server(*grp.server, tmp_path=tmp, workers=grp.workers) as srv:
        sess.server = srv
        if grp.workers == 1:
            sess.worker_pid = fresh_probe(srv.port)["pid"]
        if not grp.good_client:
            yield sess
            return
        with GoodClient(srv.port) as good:
            sess.good = good
            expect(good.wait_served(0, 3), "good client never served")
            yield sess


class Sessions:
    """One lazily started :func:`session` per group, all stopped by ``close()`` (pytest)."""

    def __init__(self, make_tmp: Callable[[str], Path]) -> None:
        self._make_tmp = make_tmp
        self._stack = contextlib.ExitStack()
        self._sessions: dict[str, Session | BaseException] = {}

    def __enter__(self) -> Sessions:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def get(self, name: str) -> Session:
        if name not in self._sessions:
            try:
                self._sessions[name] = self._stack.enter_context(
                    session(name, self._make_tmp(name)))
            except Exception as exc:  # the server did not start: every case of it fails
                self._sessions[name] = exc
        found = self._sessions[name]
        if isinstance(found, BaseException):
            raise Mismatch(f"group {name!r} did not start: {found}")
        return found

    def close(self) -> None:
        self._stack.close()


@dataclass
class Outcome:
    case: Case
    passed: bool
    got: str
    seconds: float


def run_case(sess: Session, c: Case) -> Outcome:
    """Run one case plus the group's invariants; never raises (see ``Outcome.passed``)."""
    started = time.monotonic()
    mark = sess.good.mark() if sess.good else 0
    try:
        got = c.run(sess)
        got += _check_invariants(sess, mark)
        passed = True
    except Mismatch as exc:
        got, passed = str(exc), False
    except Exception as exc:  # a broken case is a failed case, with the reason shown
        got, passed = f"error: {type(exc).__name__}: {exc}", False
    return Outcome(c, passed, got, time.monotonic() - started)


def _check_invariants(sess: Session, mark: int) -> str:
    """The good client was served throughout; the worker is alive and the same process."""
    if sess.server is None:
        return ""
    srv = sess.server
    expect(srv.proc.poll() is None, f"server exited with {srv.proc.returncode}")
    suffix = ""
    if sess.good is not None:
        served = sess.good.wait_served(mark, 3)
        records = sess.good.since(mark)
        bad = [r for r in records if not r.ok]
        expect(not bad, f"good client failed {len(bad)}/{len(records)}: "
               f"{summarize_failures(records)}")
        expect(served >= 3, f"good client starved: {served} served after the case")
        suffix = f"; good client {len(records)}/{len(records)} ok"
    payload = fresh_probe(srv.port)
    if sess.worker_pid is not None:
        expect(payload["pid"] == sess.worker_pid,
               f"worker replaced: pid {sess.worker_pid} -> {payload['pid']} (crash?)")
    return suffix


def live_entries(srv: ServerProcess) -> float:
    """Sum of ctxlocal live entries over all Locals and workers (0 = nothing leaked)."""
    text = srv.metrics()
    return sum(metric_values(text, "ctxserver_ctxlocal_live_entries").values())


def wait_no_live_entries(srv: ServerProcess, timeout: float = 5.0) -> float:
    deadline = time.monotonic() + timeout
    value = live_entries(srv)
    while value and time.monotonic() < deadline:
        time.sleep(0.1)
        value = live_entries(srv)
    return value


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


# =========================================================================== 1. hostile HTTP

MAX_BODY = 100_000
group(
    "hostile", "Hostile HTTP (a good client is served throughout every case)",
    ("tests.apps.hostile:app", "--max-request-line", "1024", "--max-header-size", "4096",
     "--max-header-count", "20", "--max-body-size", str(MAX_BODY), "--timeout", "2",
     "--keep-alive", "2"))

# name -> (raw request, accepted statuses). Each must be answered and closed; it is sent in
# one write and again in 40 small ones (the parser must not depend on how bytes arrive).
_REJECTS: dict[str, tuple[bytes, tuple[int, ...]]] = {
    "malformed request line (no spaces)": (b"GET/HTTP/1.1\r\nHost: x\r\n\r\n", (400,)),
    "malformed request line (extra token)": (b"GET / HTTP/1.1 x\r\nHost: x\r\n\r\n", (400,)),
    "malformed request line (lower-case method)": (b"get / HTTP/1.1\r\nHost: x\r\n\r\n",
                                                   (400,)),
    "request line of LF only": (b"GET / HTTP/1.1\nHost: x\n\n", (400,)),
    "TLS ClientHello on the plain port": (b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03"
                                          + bytes(32), (400,)),
    "unknown HTTP version 1.2": (b"GET / HTTP/1.2\r\nHost: x\r\n\r\n", (400, 505)),
    "unknown HTTP version 3.0": (b"GET / HTTP/3.0\r\nHost: x\r\n\r\n", (400, 505)),
    "HTTP/2.0 request line": (b"GET / HTTP/2.0\r\nHost: x\r\n\r\n", (505,)),
    "HTTP/2 prior-knowledge preface": (b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
                                       b"\x00\x00\x12\x04\x00\x00\x00\x00\x00", (505,)),
    "header name with a space": (b"GET / HTTP/1.1\r\nHost: x\r\nBad Name: v\r\n\r\n", (400,)),
    "header name with a NUL": (b"GET / HTTP/1.1\r\nHost: x\r\nBad\x00: v\r\n\r\n", (400,)),
    "header name with ()": (b"GET / HTTP/1.1\r\nHost: x\r\nX-(): v\r\n\r\n", (400,)),
    "empty header name": (b"GET / HTTP/1.1\r\nHost: x\r\n: v\r\n\r\n", (400,)),
    "space before the colon": (b"GET / HTTP/1.1\r\nHost: x\r\nX-A : v\r\n\r\n", (400,)),
    "obs-fold continuation line": (b"GET / HTTP/1.1\r\nHost: x\r\nX-A: a\r\n b\r\n\r\n",
                                   (400,)),
    "CTL in a header value": (b"GET / HTTP/1.1\r\nHost: x\r\nX-A: a\x01b\r\n\r\n", (400,)),
    "two Host headers": (b"GET / HTTP/1.1\r\nHost: x\r\nHost: y\r\n\r\n", (400,)),
    "two different Content-Length": (b"POST /hostile/echo HTTP/1.1\r\nHost: x\r\n"
                                     b"Content-Length: 5\r\nContent-Length: 6\r\n\r\nhello!",
                                     (400,)),
    "two equal Content-Length": (b"POST /hostile/echo HTTP/1.1\r\nHost: x\r\n"
                                 b"Content-Length: 5\r\nContent-Length: 5\r\n\r\nhello", (400,)),
    "Content-Length list": (b"POST /hostile/echo HTTP/1.1\r\nHost: x\r\n"
                            b"Content-Length: 5, 5\r\n\r\nhello", (400,)),
    "negative Content-Length": (b"POST /hostile/echo HTTP/1.1\r\nHost: x\r\n"
                                b"Content-Length: -1\r\n\r\n", (400,)),
    "non-numeric Content-Length": (b"POST /hostile/echo HTTP/1.1\r\nHost: x\r\n"
                                   b"Content-Length: 12abc\r\n\r\n", (400,)),
    "signed Content-Length": (b"POST /hostile/echo HTTP/1.1\r\nHost: x\r\n"
                              b"Content-Length: +5\r\n\r\nhello", (400,)),
    "overflowing Content-Length": (b"POST /hostile/echo HTTP/1.1\r\nHost: x\r\n"
                                   b"Content-Length: 99999999999999999999999\r\n\r\n", (400,)),
    "Content-Length 2^64-1": (b"POST /hostile/echo HTTP/1.1\r\nHost: x\r\n"
                              b"Content-Length: 18446744073709551615\r\n\r\n", (400, 413)),
    "chunk size not hex": (b"POST /hostile/echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: "
                           b"chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n", (400,)),
    "negative chunk size": (b"POST /hostile/echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: "
                            b"chunked\r\n\r\n-5\r\nhello\r\n0\r\n\r\n", (400,)),
    "overflowing chunk size": (b"POST /hostile/echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: "
                               b"chunked\r\n\r\nfffffffffffffffffff\r\nhello\r\n0\r\n\r\n",
                               (400,)),
    "chunk data longer than its size": (b"POST /hostile/echo HTTP/1.1\r\nHost: x\r\n"
                                        b"Transfer-Encoding: chunked\r\n\r\n5\r\nhelloXX\r\n"
                                        b"0\r\n\r\n", (400,)),
    "chunk extension with a NUL": (b"POST /hostile/echo HTTP/1.1\r\nHost: x\r\n"
                                   b"Transfer-Encoding: chunked\r\n\r\n5;\x00\r\nhello\r\n"
                                   b"0\r\n\r\n", (400,)),
    "chunk size line of LF only": (b"POST /hostile/echo HTTP/1.1\r\nHost: x\r\n"
                                   b"Transfer-Encoding: chunked\r\n\r\n5\nhello\r\n0\r\n\r\n",
                                   (400,)),
    "Transfer-Encoding gzip": (b"POST /hostile/echo HTTP/1.1\r\nHost: x\r\n"
                               b"Transfer-Encoding: gzip\r\n\r\n", (501,)),
    "Transfer-Encoding gzip, chunked": (b"POST /hostile/echo HTTP/1.1\r\nHost: x\r\n"
                                        b"Transfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n",
                                        (501,)),
    "Transfer-Encoding identity": (b"POST /hostile/echo HTTP/1.1\r\nHost: x\r\n"
                                   b"Transfer-Encoding: identity\r\n\r\n", (501,)),
    "Transfer-Encoding chunked, gzip (chunked not last)": (
        b"POST /hostile/echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, gzip\r\n\r\n"
        b"0\r\n\r\n", (400, 501)),
    "raw 8-bit byte in the path": (b"GET /caf\xe9 HTTP/1.1\r\nHost: x\r\n\r\n", (400,)),
    "URI over --max-request-line": (b"GET /" + b"a" * 1100 + b" HTTP/1.1\r\nHost: x\r\n\r\n",
                                    (414,)),
    "too many header fields": (b"GET / HTTP/1.1\r\nHost: x\r\n"
                               + b"".join(b"X-H%d: v\r\n" % i for i in range(25)) + b"\r\n",
                               (431,)),
    "one header over --max-header-size": (b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: "
                                          + b"v" * 5000 + b"\r\n\r\n", (431,)),
    "header block over the limit, many small fields": (
        b"GET / HTTP/1.1\r\nHost: x\r\n" + b"".join(b"X-%d: %s\r\n" % (i, b"v" * 300)
                                                    for i in range(15)) + b"\r\n", (431,)),
    "body over --max-body-size (Content-Length)": (
        b"POST /hostile/echo HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n"
        % (MAX_BODY + 1), (413,)),
}


def _reject_case(name: str, raw: bytes, statuses: tuple[int, ...]) -> None:
    want = "/".join(map(str, statuses))

    def run(sess: Session) -> str:
        whole = exchange(sess.port, raw)
        got = expect_reject(whole, statuses)
        split = exchange(sess.port, raw, pieces=40)
        expect(split.statuses == whole.statuses and split.closed,
               f"{got}; in 40 small writes: {split.describe()}")
        return got + " (also in 40 small writes)"

    case("hostile", name, f"{want}, closed")(run)


for _name, (_raw, _statuses) in _REJECTS.items():
    _reject_case(_name, _raw, _statuses)


@case("hostile", "limits are exact: URI, header count at the limit are served",
      "200, 200")
def _limits_exact(sess: Session) -> str:
    # "GET " + target + " HTTP/1.1" == 1024 bytes
    target = "/hostile/path/" + "a" * (1024 - len("GET  HTTP/1.1") - len("/hostile/path/"))
    one = exchange(sess.port, get(target, close=True), responses=1)
    headers = [f"X-H{i}: v" for i in range(18)]  # + Host + Connection = 20 fields
    two = exchange(sess.port, get("/", *headers, close=True), responses=1)
    got = f"{one.describe()}; {two.describe()}"
    expect(one.statuses == [200] and two.statuses == [200], got)
    return f"{one.statuses[0]}, {two.statuses[0]}"


# -- request smuggling: the request hidden in the body must never run

_SMUGGLE_TAIL = b"GET /hostile/mark/{tag} HTTP/1.1\r\nHost: x\r\n\r\n"
_SMUGGLES: dict[str, tuple[bytes, tuple[int, ...]]] = {
    "smuggling CL.TE (Content-Length first)": (
        b"POST /hostile/echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n", (400,)),
    "smuggling TE.CL (Transfer-Encoding first)": (
        b"POST /hostile/echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
        b"Content-Length: 3\r\n\r\n0\r\n\r\n", (400,)),
    "smuggling TE with space before colon + CL": (
        b"POST /hostile/echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n"
        b"Transfer-Encoding : chunked\r\n\r\n0\r\n\r\n", (400,)),
    "smuggling obfuscated TE (xchunked) + CL": (
        b"POST /hostile/echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n"
        b"Transfer-Encoding: xchunked\r\n\r\n0\r\n\r\n", (400, 501)),
    "smuggling two Transfer-Encoding headers": (
        b"POST /hostile/echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
        b"Transfer-Encoding: identity\r\n\r\n0\r\n\r\n", (400, 501)),
    "smuggling CL.CL (0 then body length)": (
        b"POST /hostile/echo HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n"
        b"Content-Length: 47\r\n\r\n", (400,)),
    "smuggling Content_Length (underscore) as framing": (
        b"POST /hostile/echo HTTP/1.1\r\nHost: x\r\nContent_Length: 47\r\n"
        b"Connection: close\r\n\r\n", (200,)),
}


def _smuggle_case(name: str, prefix: bytes, statuses: tuple[int, ...]) -> None:
    want = "/".join(map(str, statuses))

    def run(sess: Session) -> str:
        tag = new_token()
        raw = prefix + _SMUGGLE_TAIL.replace(b"{tag}", tag.encode())
        reply = exchange(sess.port, raw)
        got = reply.describe()
        if statuses == (200,):  # framed by the real headers: the "body" is a 2nd request
            expect(reply.statuses[:1] == [200] and reply.closed, got)
        else:
            expect_reject(reply, statuses)
        count = hits(sess.port, tag)
        expect(count == 0, f"{got}; SMUGGLED REQUEST RAN ({count}x)")
        return f"{got}; smuggled request ran 0x"

    case("hostile", name, f"{want}, closed, smuggled request not run")(run)


for _name, (_raw, _statuses) in _SMUGGLES.items():
    _smuggle_case(_name, _raw, _statuses)


@case("hostile", "bad chunk to an app that ignores the body",
      "200 for the valid head, then closed; the bytes after it never run")
def _bad_chunk_unread(sess: Session) -> str:
    tag = new_token()
    raw = (b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n"
           + _SMUGGLE_TAIL.replace(b"{tag}", tag.encode()))
    reply = exchange(sess.port, raw)
    expect(reply.statuses == [200] and reply.closed and not reply.leftover, reply.describe())
    expect(hits(sess.port, tag) == 0, f"{reply.describe()}; SMUGGLED REQUEST RAN")
    return f"{reply.describe()}; smuggled request ran 0x"


@case("hostile", "valid chunk extensions and trailers", "200, body intact, connection reused")
def _chunk_ext_trailers(sess: Session) -> str:
    tag = new_token()
    raw = (b"POST /hostile/echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
           b"5;name=value\r\nhello\r\n6;q=\"a b\";flag\r\n world\r\n0\r\nX-Trailer: t\r\n"
           b"X-Other: u\r\n\r\n") + get(f"/hostile/mark/{tag}", close=True)
    reply = exchange(sess.port, raw, responses=2)
    got = reply.describe()
    expect(reply.statuses == [200, 200], got)
    expect(reply.responses[0].body == b"hello world", f"{got}; body {reply.responses[0].body!r}")
    expect(hits(sess.port, tag) == 1, f"{got}; request after the trailers did not run")
    return f"{got}; body {reply.responses[0].body!r}"


@case("hostile", "chunked body with upper-case CHUNKED and HTTP/1.0 chunked",
      "200 each; HTTP/1.0 one closed")
def _chunked_variants(sess: Session) -> str:
    one = exchange(sess.port, b"POST /hostile/echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: "
                   b"CHUNKED\r\nConnection: close\r\n\r\n5\r\nhello\r\n0\r\n\r\n")
    two = exchange(sess.port, b"POST /hostile/echo HTTP/1.0\r\nTransfer-Encoding: chunked\r\n"
                   b"Connection: keep-alive\r\n\r\n5\r\nhello\r\n0\r\n\r\n")
    got = f"{one.describe()}; {two.describe()}"
    expect(one.statuses == [200] and one.responses[0].body == b"hello", got)
    expect(two.statuses == [200] and two.responses[0].body == b"hello" and two.closed, got)
    return got


def _send_until_answered(sock: socket.socket, pieces: Iterator[bytes], pause: float
                         ) -> tuple[int, bool]:
    """Send pieces until the server has something to say; (bytes sent, finished)."""
    sent = 0
    for piece in pieces:
        readable, _, _ = select.select([sock], [], [], 0)
        if readable:
            return sent, False
        try:
            sock.sendall(piece)
        except OSError:
            return sent, False
        sent += len(piece)
        time.sleep(pause)
    return sent, True


@case("hostile", "body over the limit (Content-Length 8 MB): 413 before the upload ends",
      "413 while the client is still sending, closed")
def _body_limit_early(sess: Session) -> str:
    total, piece = 8 * 1024 * 1024, 64 * 1024
    with connect(sess.port, 10) as sock:
        sock.sendall(b"POST /hostile/echo HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n"
                     % total)
        sent, finished = _send_until_answered(sock, (b"x" * piece for _ in range(total // piece)),
                                              0.005)
        reply = read_reply(sock, timeout=5)
    got = f"{reply.describe()} after {sent // 1024} KiB of {total // 1024} KiB sent"
    expect(reply.statuses == [413] and reply.closed and not finished and sent < total // 2,
           got)
    return got


@case("hostile", "chunked body over the limit: 413 as soon as it exceeds it",
      "413 while the client is still sending, closed")
def _chunked_limit_early(sess: Session) -> str:
    total, piece = 4 * 1024 * 1024, 16 * 1024
    chunk = b"%x\r\n%s\r\n" % (piece, b"y" * piece)
    with connect(sess.port, 10) as sock:
        sock.sendall(b"POST /hostile/echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked"
                     b"\r\n\r\n")
        sent, finished = _send_until_answered(sock, (chunk for _ in range(total // piece)),
                                              0.002)
        reply = read_reply(sock, timeout=5)
    got = f"{reply.describe()} after {sent // 1024} KiB of {total // 1024} KiB sent"
    expect(reply.statuses == [413] and reply.closed and not finished and sent < total // 2,
           got)
    return got


@case("hostile", "Expect: 100-continue within the limit",
      "100 Continue, then 200 with the body")
def _expect_accepted(sess: Session) -> str:
    body = b"hello world"
    with connect(sess.port) as sock:
        sock.sendall(b"POST /hostile/echo HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n"
                     b"Content-Length: %d\r\n\r\n" % len(body))
        reader = ResponseReader()
        first = read_reply(sock, timeout=3, responses=1, reader=reader)
        expect(first.statuses == [100], f"before the body: {first.describe()}")
        sock.sendall(body)
        final = read_reply(sock, timeout=3, responses=2, reader=reader)
    got = final.describe()
    expect(final.statuses == [100, 200] and final.responses[1].body == body, got)
    return got


@case("hostile", "Expect: 100-continue over the limit",
      "413 before any body byte, no 100, closed")
def _expect_refused(sess: Session) -> str:
    with connect(sess.port) as sock:
        sock.sendall(b"POST /hostile/echo HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n"
                     b"Content-Length: %d\r\n\r\n" % (MAX_BODY * 10))
        reply = read_reply(sock, timeout=3)
    got = f"{reply.describe()} in {reply.elapsed * 1000:.0f} ms, no body sent"
    expect(reply.statuses == [413] and reply.closed, got)
    return got


@case("hostile", "Expect: 100-continue to an app that ignores the body",
      "final answer without 100, Connection: close")
def _expect_ignored(sess: Session) -> str:
    token = new_token()
    raw = probe_request(token)[:-2] + b"Expect: 100-continue\r\nContent-Length: 1000\r\n\r\n"
    with connect(sess.port) as sock:
        sock.sendall(raw)
        reply = read_reply(sock, timeout=3)
    got = reply.describe()
    expect(reply.statuses == [200] and reply.responses[0].closes and reply.closed, got)
    expect(probe_problems(token, reply.responses[0]) is None, f"{got}: wrong probe answer")
    return got


@case("hostile", "8 pipelined probes in one write", "8 answers in order, each its own token")
def _pipelined(sess: Session) -> str:
    tokens = [new_token() for _ in range(8)]
    raw = b"".join(probe_request(t, close=i == 7, yields=2) for i, t in enumerate(tokens))
    reply = exchange(sess.port, raw, responses=8)
    got = reply.describe()
    expect(len(reply.responses) == 8, got)
    for token, resp in zip(tokens, reply.responses, strict=True):
        problem = probe_problems(token, resp)
        expect(problem is None, f"{got}: {problem}")
    return "8 answers in order, tokens match, no stale context"


@case("hostile", "pipelined good requests before a bad one",
      "the good ones answered in order, then 400, closed")
def _pipelined_then_bad(sess: Session) -> str:
    tokens = [new_token() for _ in range(3)]
    raw = b"".join(probe_request(t) for t in tokens) + b"BAD REQUEST\r\n\r\n"
    reply = exchange(sess.port, raw)
    got = reply.describe()
    expect(reply.statuses == [200, 200, 200, 400] and reply.closed, got)
    for token, resp in zip(tokens, reply.responses, strict=False):
        expect(probe_problems(token, resp) is None, f"{got}: wrong probe answer")
    return got


@case("hostile", "bytes after a Connection: close request",
      "one answer, closed, the trailing request never runs")
def _after_close(sess: Session) -> str:
    first, second = new_token(), new_token()
    raw = get(f"/hostile/mark/{first}", close=True) + get(f"/hostile/mark/{second}") + \
        b"\x00garbage\r\n\r\n"
    reply = exchange(sess.port, raw)
    got = reply.describe()
    expect(reply.statuses == [200] and reply.closed and not reply.leftover, got)
    expect((hits(sess.port, first), hits(sess.port, second)) == (1, 0),
           f"{got}; the request after Connection: close ran")
    return f"{got}; trailing request ran 0x"


@case("hostile", "non-UTF-8 and percent-encoded path",
      "200; PATH_INFO carries the exact decoded bytes")
def _odd_paths(sess: Session) -> str:
    reply = exchange(sess.port, get("/hostile/path/%C3%A9%FF%00%2F%zz%?q=%FF", close=True),
                     responses=1)
    expect(reply.statuses == [200], reply.describe())
    seen = bytes.fromhex(json.loads(reply.responses[0].body)["path_hex"])
    want = b"/hostile/path/\xc3\xa9\xff\x00/%zz%"
    expect(seen == want, f"PATH_INFO bytes {seen!r}, expected {want!r}")
    probe = exchange(sess.port, get("/probe/%FF%FE%00", close=True), responses=1)
    expect(probe.statuses and probe.statuses[0] < 500, f"reference app: {probe.describe()}")
    return f"200, PATH_INFO {seen!r}; reference app {probe.statuses[0]}"


def _bad_header_case(kind: str) -> None:
    def run(sess: Session) -> str:
        tag = new_token()
        raw = get(f"/hostile/bad-header/{kind}") + get(f"/hostile/mark/{tag}", close=True)
        reply = exchange(sess.port, raw)
        got = reply.describe()
        expect(reply.statuses[:1] == [500], got)
        expect(b"injected" not in reply.raw and b"never be sent" not in reply.raw,
               f"{got}: INJECTED BYTES ON THE WIRE")
        expect(not reply.leftover and reply.parse_error is None, f"{got}: split response")
        if len(reply.responses) == 2:  # connection kept: the next request is served
            expect(reply.statuses == [500, 200] and hits(sess.port, tag) == 1, got)
        else:
            expect(reply.closed and len(reply.responses) == 1, got)
        return got

    case("hostile", f"app puts {kind.replace('-', ' in ')} into its response",
         "500, nothing injected, never a split response")(run)


for _kind in ("crlf-value", "lf-value", "cr-value", "nul-value", "crlf-name", "colon-name",
              "crlf-status", "crlf-location"):
    _bad_header_case(_kind)


_REQUEST_IDS: dict[str, tuple[bytes, bool]] = {
    # name -> (raw header value, echoed as is?)
    "plain": (b"req-1.2:3_x", True),
    "128 chars": (b"r" * 128, True),
    "129 chars": (b"r" * 129, False),
    "3000 chars": (b"r" * 3000, False),
    "space and markup": (b"<script>alert(1)</script> x", False),
    "latin-1 bytes": (b"caf\xe9", False),
    "percent-encoded CRLF": (b"a%0d%0aSet-Cookie:%20x", False),
    "two headers": (b"a\r\nX-Request-ID: b", False),
}


@case("hostile", "odd X-Request-ID values",
      "echoed only when plain (<=128 of A-Za-z0-9._:-), else a fresh 16-hex id")
def _request_ids(sess: Session) -> str:
    seen = []
    for name, (value, echoed) in _REQUEST_IDS.items():
        raw = b"GET /hostile/request-id HTTP/1.1\r\nHost: x\r\nX-Request-ID: " + value + \
            b"\r\nConnection: close\r\n\r\n"
        reply = exchange(sess.port, raw, responses=1)
        expect(reply.statuses == [200], f"{name}: {reply.describe()}")
        resp = reply.responses[0]
        header = resp.header("X-Request-ID") or ""
        body = json.loads(resp.body)["request_id"]
        expect(header == body, f"{name}: header {header!r} vs app {body!r}")
        if echoed:
            expect(header == value.decode(), f"{name}: not echoed ({header!r})")
        else:
            expect(re.fullmatch(r"[0-9a-f]{16}", header), f"{name}: kept as {header[:40]!r}")
        seen.append(name)
    return f"{len(seen)} variants: plain ones echoed, the rest replaced by generated ids"


@case("hostile", "neighbours disconnect mid-request and mid-response",
      "good client unaffected (no failure, no leak)")
def _neighbours_disconnect(sess: Session) -> str:
    assert sess.server is not None
    for i in range(20):
        with connect(sess.port) as sock:
            token = new_token()
            if i % 3 == 0:  # leave during a streamed answer
                sock.sendall(get(f"/probe/{token}/stream?yields=20", f"X-Probe-Token: {token}"))
                sock.recv(100)
            elif i % 3 == 1:  # leave while the app is busy
                sock.sendall(get("/hostile/sleep/0.3"))
                time.sleep(0.01)
            else:  # leave half-way through the body
                sock.sendall(b"POST /hostile/echo HTTP/1.1\r\nHost: x\r\n"
                             b"Content-Length: 1000\r\n\r\n" + b"z" * 10)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    time.sleep(0.5)  # the abandoned sleeps end
    return "20 abandoned requests"


def _no_live_context_case(group_name: str) -> None:
    def run(sess: Session) -> str:
        assert sess.server is not None
        total = len(sess.good.records) if sess.good else 0
        with sess.good.paused() if sess.good else contextlib.nullcontext():
            left = wait_no_live_entries(sess.server)
        expect(left == 0, f"{left:g} live ctxlocal entries with no request running (LEAK)")
        return f"0 live entries; {total} good-client probes so far, none saw foreign data"

    case(group_name, "no request context outlives its request",
         "/metrics: 0 live ctxlocal entries once idle")(run)


# =========================================================================== 2. slow clients

group(
    "slow", "Slow and idle clients (--timeout 1 --keep-alive 1 --worker-connections 20)",
    ("tests.apps.hostile:app", "--timeout", "1", "--keep-alive", "1",
     "--worker-connections", "20"))


@case("slow", "slowloris head (1 byte / 0.1 s)", "408 once --timeout (1 s) has passed, closed")
def _slowloris(sess: Session) -> str:
    raw = b"GET / HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 100
    with connect(sess.port) as sock:
        started = time.monotonic()
        for byte in raw:
            if not server_quiet(sock, 0.1):
                break
            try:
                sock.send(bytes([byte]))
            except OSError:
                break
        reply = read_reply(sock, timeout=3, started=started)
    got = f"{reply.describe()} after {reply.elapsed:.2f} s"
    expect(reply.statuses == [408] and reply.closed and 0.9 <= reply.elapsed <= 2.0, got)
    return got


@case("slow", "10 slowloris clients at once", "each cut at ~1 s, good client served throughout")
def _many_slowloris(sess: Session) -> str:
    socks = [connect(sess.port) for _ in range(10)]
    started = time.monotonic()
    try:
        for sock in socks:
            sock.sendall(b"GET / HTTP/1.1\r\n")
        deadline = started + 3
        while time.monotonic() < deadline and any(server_quiet(s) for s in socks):
            for sock in socks:
                with contextlib.suppress(OSError):
                    sock.send(b"X")
            time.sleep(0.1)
        open_after = sum(server_quiet(s) for s in socks)
    finally:
        for sock in socks:
            sock.close()
    elapsed = time.monotonic() - started
    got = f"{10 - open_after}/10 cut within {elapsed:.2f} s"
    expect(open_after == 0 and elapsed <= 2.5, got)
    return got


@case("slow", "body stalls half-way", "408 after --timeout without progress, closed")
def _slow_body(sess: Session) -> str:
    with connect(sess.port) as sock:
        sock.sendall(b"POST /hostile/echo HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n"
                     + b"b" * 10)
        reply = read_reply(sock, timeout=4)
    got = f"{reply.describe()} after {reply.elapsed:.2f} s"
    expect(reply.statuses == [408] and reply.closed and 0.9 <= reply.elapsed <= 2.0, got)
    return got


@case("slow", "body trickles (1 byte / 0.4 s, 2.4 s in all)",
      "read: the timeout is per read without progress (documented), 200")
def _trickle_body(sess: Session) -> str:
    body = b"abcdef"
    with connect(sess.port) as sock:
        sock.sendall(b"POST /hostile/echo HTTP/1.1\r\nHost: x\r\nContent-Length: 6\r\n"
                     b"Connection: close\r\n\r\n")
        for byte in body:
            time.sleep(0.4)
            sock.sendall(bytes([byte]))
        reply = read_reply(sock, timeout=3)
    got = reply.describe()
    expect(reply.statuses == [200] and reply.responses[0].body == body, got)
    return got


@case("slow", "idle keep-alive connection", "closed quietly after --keep-alive (1 s)")
def _idle_keepalive(sess: Session) -> str:
    with connect(sess.port) as sock:
        sock.sendall(get("/"))
        first = read_reply(sock, timeout=3, responses=1)
        expect(first.statuses == [200] and not first.responses[0].closes, first.describe())
        started = time.monotonic()
        rest = read_reply(sock, timeout=4, started=started)
    got = f"closed after {rest.elapsed:.2f} s idle, {len(rest.raw)} bytes"
    expect(rest.closed and not rest.raw and 0.9 <= rest.elapsed <= 2.0, got)
    return got


@case("slow", "connection that never sends", "closed quietly after --timeout (1 s)")
def _silent(sess: Session) -> str:
    with connect(sess.port) as sock:
        reply = read_reply(sock, timeout=4)
    got = f"closed after {reply.elapsed:.2f} s, {len(reply.raw)} bytes"
    expect(reply.closed and not reply.raw and 0.9 <= reply.elapsed <= 2.0, got)
    return got


@case("slow", "40 idle connections vs --worker-connections 20",
      "accepted connections keep being served; a new one queues in the backlog (not "
      "refused) and is served within 2 x --timeout; every idle one closed quietly")
def _connection_flood(sess: Session) -> str:
    assert sess.good is not None
    mark = sess.good.mark()
    socks = [connect(sess.port) for _ in range(40)]
    started = time.monotonic()
    try:
        # A new client arriving now waits behind the 40 in the listen backlog.
        token = new_token()
        with connect(sess.port, 10) as late:
            late.sendall(probe_request(token, close=True))
            reply = read_reply(late, timeout=8, responses=1)
        waited = time.monotonic() - started
        expect(reply.statuses == [200] and probe_problems(token, reply.responses[0]) is None,
               f"late client: {reply.describe()} after {waited:.2f} s")
        closed = 0
        deadline = time.monotonic() + 5
        for sock in socks:
            rest = read_reply(sock, timeout=max(0.0, deadline - time.monotonic()))
            closed += rest.closed and not rest.raw
        all_closed = time.monotonic() - started
    finally:
        for sock in socks:
            sock.close()
    during = [r for r in sess.good.since(mark) if r.ended <= started + waited]
    kept = [r for r in during if r.conn_pid is not None]  # on an already accepted connection
    got = (f"late client served after {waited:.2f} s; {closed}/40 idle closed quietly by "
           f"{all_closed:.2f} s; kept-alive good client {sum(r.ok for r in kept)}/{len(kept)} "
           f"ok meanwhile")
    expect(closed == 40 and 0.5 <= waited <= 2.8, got)
    expect(kept and all(r.ok for r in kept), got)
    return got


@case("slow", "neighbours time out (slowloris + stalled bodies) amid probes",
      "cut at the timeout; no probe sees another request's data")
def _neighbours_timeout(sess: Session) -> str:
    assert sess.server is not None and sess.good is not None
    socks = []
    for i in range(10):
        sock = connect(sess.port)
        token = new_token()
        if i % 2:
            sock.sendall(get(f"/probe/{token}")[:-2])  # head never finished
        else:
            sock.sendall(b"POST /hostile/echo HTTP/1.1\r\nHost: x\r\nContent-Length: 50\r\n"
                         b"X-Request-ID: " + token.encode() + b"\r\n\r\npartial")
        socks.append(sock)
    try:
        for sock in socks:
            read_reply(sock, timeout=3)
    finally:
        for sock in socks:
            sock.close()
    return "10 neighbours cut at the timeout"


_no_live_context_case("hostile")
_no_live_context_case("slow")

# =========================================================================== 3. fuzzing

group("fuzz", "Fuzzing (hypothesis; the worker must never crash)",
             ("tests.apps.hostile:app", "--timeout", "2", "--keep-alive", "1",
              "--max-body-size", "100000"))

FUZZ_EXAMPLES = int(os.environ.get("RELIABILITY_FUZZ_EXAMPLES", "200"))
_ALLOWED_5XX = {501, 505}
_FUZZ_PATH_OK_500 = ("/hostile/bad-header/",)  # 500 by design there


def _fuzz_exchange(port: int, raw: bytes, allow_500: bool,
                   tally: dict[str, int] | None = None) -> str | None:
    """Send one fuzz input; the failure text, or None when the server behaved."""
    reply = exchange(port, raw, timeout=6, half_close=True,
                     bodiless=int(raw[:5].upper() == b"HEAD "))
    if tally is not None:
        for status in reply.statuses or [0]:
            kind = ("no answer" if not status else str(status) if status >= 500
                    else f"{status // 100}xx")
            tally[kind] = tally.get(kind, 0) + 1
    if not reply.closed:
        return f"connection still open 6 s after EOF ({reply.describe()})"
    if reply.parse_error:
        return f"unparsable response: {reply.parse_error}"
    for status in reply.statuses:
        if status >= 500 and status not in _ALLOWED_5XX and not (allow_500 and status == 500):
            return f"status {status} for {raw[:120]!r}"
    return None


def _fuzz_followup(sess: Session) -> None:
    payload = fresh_probe(sess.port)
    expect(payload["pid"] == sess.worker_pid, f"worker pid changed to {payload['pid']}")


def _run_hypothesis(sess: Session, strategy: Any, name: str,
                    build: Callable[[Any], tuple[bytes, bool]]) -> str:
    from hypothesis import HealthCheck, given, settings

    failures: list[str] = []
    count = [0]
    tally: dict[str, int] = {}

    @settings(max_examples=FUZZ_EXAMPLES, deadline=None, database=None,
              suppress_health_check=list(HealthCheck), print_blob=True)
    @given(strategy)
    def check(example: Any) -> None:
        count[0] += 1
        raw, allow_500 = build(example)
        problem = _fuzz_exchange(sess.port, raw, allow_500, tally)
        if problem is not None:
            failures.append(problem)
            raise AssertionError(problem)
        _fuzz_followup(sess)

    try:
        check()
    except AssertionError as exc:
        raise Mismatch(f"{name}: {failures[-1] if failures else exc}") from None
    assert sess.server is not None
    log = sess.server.log()
    for marker in ("internal error serving", "crashed", "died"):
        expect(marker not in log, f"server log has {marker!r} after {name}")
    answers = ", ".join(f"{n} {kind}" for kind, n in sorted(tally.items()))
    return (f"{count[0]} inputs ({answers}), none else; worker pid unchanged, new connection "
            f"served after each")


def _fuzz_strategies() -> dict[str, Any]:
    """Requests that are mostly well-formed (so they get past the parser into the app)
    with every part sometimes replaced by junk; and raw bytes."""
    from hypothesis import strategies as st

    def mostly(common: Any, *rare: Any) -> Any:  # ~3 in 4 draws from ``common``
        odd = st.one_of(*rare)
        return st.tuples(st.booleans(), st.booleans()).flatmap(
            lambda coins: odd if all(coins) else common)

    token = st.text("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.!~*'",
                    min_size=1, max_size=12)
    printable = st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=40)
    any_text = st.text(st.characters(min_codepoint=0, max_codepoint=255), max_size=40)
    method = mostly(st.sampled_from(["GET", "GET", "POST", "PUT", "HEAD", "DELETE", "OPTIONS",
                                     "PATCH"]),
                    st.sampled_from(["TRACE", "CONNECT", "PRI", "get", "G ET"]), token)
    target = mostly(
        st.sampled_from(["/", "/healthz", "/metrics", "/probe/abc", "/probe/abc/stream",
                         "/probe/abc/fanout?children=3", "/probe/abc?yields=2",
                         "/hostile/echo", "/hostile/path/x", "/hostile/mark/fuzz",
                         "/hostile/request-id", "/hostile/sleep/0.01", "/nope"]),
        st.builds(lambda p, q: f"/{p}?{q}", token, printable),
        st.builds(lambda b: "/hostile/path/" + "".join(f"%{x:02X}" for x in b),
                  st.binary(max_size=12)),
        st.sampled_from(["*", "http://h/hostile/echo", "example.com:443", ""]), any_text)
    version = mostly(st.sampled_from(["HTTP/1.1", "HTTP/1.1", "HTTP/1.0"]),
                     st.sampled_from(["HTTP/2.0", "HTTP/0.9", "HTTP/9.9", "http/1.1", ""]),
                     token)
    header_name = mostly(
        st.sampled_from(["Content-Length", "Transfer-Encoding", "Connection", "Expect",
                         "X-Request-ID", "X-Probe-Token", "Content-Type", "Accept",
                         "Cookie", "User-Agent"]),
        st.sampled_from(["Host", "Upgrade", "Content_Length", "Transfer-encoding"]),
        token, any_text)
    header_value = mostly(
        st.one_of(st.sampled_from(["chunked", "close", "keep-alive", "100-continue", "0", "5",
                                   "text/plain", "a=b; c=d"]),
                  st.integers(0, 400).map(str), printable),
        st.sampled_from(["-1", "99999999999999999999", "gzip, chunked", "h2c", "a" * 300]),
        any_text)
    headers = st.lists(st.tuples(header_name, header_value), max_size=6)
    body = st.one_of(st.just(b""), st.binary(max_size=300),
                     st.sampled_from([b"0\r\n\r\n", b"5\r\nhello\r\n0\r\n\r\n", b"zz\r\n",
                                      b"5\r\nhel", b"GET / HTTP/1.1\r\n\r\n"]))
    sep = mostly(st.just("\r\n"), st.just("\n"))
    structured = st.tuples(method, target, version, headers, body, sep,
                           st.booleans(), st.booleans())
    valid_head = st.sampled_from([b"GET / HTTP/1.1\r\nHost: x\r\n",
                                  b"POST /hostile/echo HTTP/1.1\r\nHost: x\r\n",
                                  b"POST /hostile/echo HTTP/1.1\r\nTransfer-Encoding: chunked"
                                  b"\r\n\r\n"])
    raw_bytes = st.one_of(st.binary(min_size=1, max_size=2048),
                          st.tuples(valid_head, st.binary(max_size=512)).map(b"".join))
    return {"structured": structured, "bytes": raw_bytes}


def _build_structured(example: Any) -> tuple[bytes, bool]:
    method, target, version, headers, body, sep, with_host, with_length = example
    line = " ".join(p for p in (method, target, version) if p)
    fields = [f"{n}: {v}" for n, v in headers]
    if with_host:
        fields.insert(0, "Host: fuzz")
    if with_length and body and not any(n.lower() in ("content-length", "transfer-encoding")
                                        for n, _ in headers):
        fields.append(f"Content-Length: {len(body)}")
    raw = (sep.join([line, *fields]) + sep + sep).encode("latin-1") + body
    return raw, any(p in target for p in _FUZZ_PATH_OK_500)


@case("fuzz", "structured random requests (methods, targets, versions, headers, bodies)",
      "every one answered 2xx-4xx/501/505 or closed; worker never crashes")
def _fuzz_structured(sess: Session) -> str:
    return _run_hypothesis(sess, _fuzz_strategies()["structured"], "structured",
                           _build_structured)


@case("fuzz", "random bytes (raw, and after a valid request head)",
      "every one answered 2xx-4xx/501/505 or closed; worker never crashes")
def _fuzz_bytes(sess: Session) -> str:
    return _run_hypothesis(sess, _fuzz_strategies()["bytes"], "bytes",
                           lambda b: (b, b"/hostile/bad-header/" in b))


_no_live_context_case("fuzz")

# =========================================================================== 4+5. faults

group("faults", "Faults under load (locust + recording probe clients)", None)
group("startup", "Start-up errors (one line on stderr, exit 2)", None)

LOCUST_USERS = 50
LOAD_SECONDS = 7


class LocustRun:
    """``python -m loadtests.run --host URL`` in the background; always stopped."""

    def __init__(self, url: str, tmp: Path, name: str, seconds: int = LOAD_SECONDS,
                 users: int = LOCUST_USERS) -> None:
        self.out = tmp / f"{name}-locust.out"
        self.name = name
        self.tmp = tmp
        env = {k: v for k, v in os.environ.items() if not k.startswith(("LOCUST_", "SERVER_"))}
        with open(self.out, "wb") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "loadtests.run", "--host", url, "-u", str(users),
                 "-r", str(users), "-t", f"{seconds}s", "-p", "0", "--min-requests", "1",
                 "--reports", str(tmp), "--name", name],
                cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)

    def __enter__(self) -> LocustRun:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)  # the runner stops locust
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def wait(self, timeout: float = 60) -> dict[str, str]:
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.__exit__()
        output = self.out.read_text(errors="replace")
        summary = parse_summary(output)
        if not summary:
            raise Mismatch(f"locust gave no summary: {output[-500:]}")
        return summary

    def failures(self) -> list[tuple[int, str]]:
        """(occurrences, error message) rows of locust's failure table."""
        path = self.tmp / f"{self.name}_failures.csv"
        if not path.exists():
            return []
        with path.open(newline="") as f:
            return [(int(r["Occurrences"]), _locust_error(r["Error"]))
                    for r in csv.DictReader(f)]


#: ErrorThenProbeUser's own check that its probe reused the connection of the 500. A
#: draining worker rightly answers with ``Connection: close``, so during a reload it fails
#: without any request failing; such rows are counted apart.
REUSE_CHECK = "BAD RESPONSE connection:"


def _locust_error(text: str) -> str:
    """The failure message inside locust's repr (``CatchResponseError('...')``)."""
    match = re.fullmatch(r"\w+\((['\"])(.*)\1\)", text.strip(), re.S)
    return match[2] if match else text


def _describe_failures(rows: list[tuple[int, str]]) -> str:
    return "; ".join(f"{n}x {error[:70]}" for n, error in rows[:3])


def requests_total(srv: ServerProcess) -> float:
    return sum(metric_values(srv.metrics(), "ctxserver_requests_total").values())


def wait_for_load(srv: ServerProcess, locust: LocustRun, extra: int = 300,
                  timeout: float = 20) -> None:
    """Wait until locust is really sending (its start-up takes a few seconds)."""
    base = requests_total(srv)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if locust.proc.poll() is not None:
            raise Mismatch(f"locust ended early: {locust.out.read_text()[-500:]}")
        if requests_total(srv) - base >= extra:
            return
        time.sleep(0.2)
    raise Mismatch("locust never produced load")


def children_of(pid: int) -> set[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return set()
    return {int(p) for p in text.split()}


def _locust_verdict(summary: dict[str, str]) -> tuple[int, int, int]:
    return int(summary["requests"]), int(summary["leaks"]), int(summary["other_failures"])


@case("faults", "SIGKILL one of 2 workers under load",
      "replaced within 1 s; the other worker keeps serving; only requests on the killed "
      "worker's connections fail; no leak")
def _sigkill(sess: Session) -> str:
    with running_server("--workers", "2", tmp_path=sess.tmp, workers=2) as srv:
        pids = {int(p.split('"')[1]) for p in wait_for_workers(srv, 2)}
        master = srv.proc.pid
        with LocustRun(srv.url, sess.tmp, "sigkill") as locust, \
                GoodClient(srv.port, keepalive=4, fresh=1, pause=0.005) as good:
            wait_for_load(srv, locust)
            before = good.mark()
            victim = min(pids)
            survivor = max(pids)
            killed_at = time.monotonic()
            os.kill(victim, signal.SIGKILL)
            forked_at = served_at = None
            deadline = killed_at + 5
            while time.monotonic() < deadline and (forked_at is None or served_at is None):
                kids = children_of(master)
                if forked_at is None and kids - pids:
                    forked_at = time.monotonic()
                new = {r.pid for r in good.since(before) if r.ok} - pids
                if served_at is None and new:
                    served_at = min(r.ended for r in good.since(before)
                                    if r.ok and r.pid in new)
                time.sleep(0.005)
            summary = locust.wait()
            records = good.since(before)
        requests, leaks, other = _locust_verdict(summary)
    failed = [r for r in records if not r.ok]
    foreign = [r for r in failed if r.conn_pid not in (victim, None)
               or r.started > killed_at + 1.0]
    on_survivor = [r for r in records if r.pid == survivor]
    fork_ms = (forked_at - killed_at) * 1000 if forked_at else None
    serve_ms = (served_at - killed_at) * 1000 if served_at else None
    got = (f"fork after {fork_ms:.0f} ms, new worker serving after {serve_ms:.0f} ms; "
           if fork_ms is not None and serve_ms is not None else "no replacement seen; ")
    got += (f"probe clients: {len(failed)} failed of {len(records)} (all on the killed "
            f"worker's connections: {not foreign}), survivor served {len(on_survivor)}; "
            f"locust: {requests} requests, {other} failed, {leaks} leaks")
    expect(fork_ms is not None and fork_ms <= 1000 and serve_ms is not None, got)
    expect(not foreign and on_survivor and leaks == 0, got)
    expect(not any(r.leak for r in records), got + " (LEAK in a probe)")
    expect(other <= LOCUST_USERS, got + f" ({_describe_failures(locust.failures())})")
    return got


@case("faults", "SIGKILL of a young worker (crash-loop backoff)",
      "replaced after the first 0.1 s backoff step (fork within 0.4 s), then serving")
def _young_kill(sess: Session) -> str:
    with running_server(tmp_path=sess.tmp) as srv:
        master = srv.proc.pid
        victim = fresh_probe(srv.port)["pid"]
        killed_at = time.monotonic()
        os.kill(victim, signal.SIGKILL)
        forked_s = None
        while time.monotonic() < killed_at + 3:
            if children_of(master) - {victim}:
                forked_s = time.monotonic() - killed_at
                break
            time.sleep(0.002)
        deadline = time.monotonic() + 5
        new_pid = None
        while time.monotonic() < deadline and new_pid in (None, victim):
            with contextlib.suppress(Mismatch, OSError):
                new_pid = fresh_probe(srv.port)["pid"]
            time.sleep(0.02)
    got = (f"fork after {forked_s * 1000:.0f} ms, new worker {new_pid} serving"
           if forked_s is not None else "no replacement forked within 3 s")
    expect(forked_s is not None and forked_s <= 0.4 and new_pid not in (None, victim), got)
    return got


@case("faults", "SIGTERM under load (graceful shutdown)",
      "exit 0 within --graceful-timeout; every request the server accepted is answered "
      "(in-flight ones with Connection: close); refused ones never got a byte; no leak")
def _sigterm(sess: Session) -> str:
    access = sess.tmp / "sigterm-access.log"
    graceful = 5.0
    with running_server("tests.apps.hostile:app", "--graceful-timeout", str(graceful),
                        "--access-log", str(access), "--log-format", "json",
                        tmp_path=sess.tmp, workers=2) as srv:
        wait_for_workers(srv, 2)
        slow_results: list[Response | str] = []

        def slow_request() -> None:  # in flight when the signal arrives
            try:
                reply = exchange(srv.port, get("/hostile/sleep/1.5"), timeout=10, responses=1)
                slow_results.append(reply.responses[0] if reply.responses else reply.describe())
            except OSError as exc:
                slow_results.append(repr(exc))

        with LocustRun(srv.url, sess.tmp, "sigterm", seconds=6) as locust, \
                GoodClient(srv.port, keepalive=3, fresh=2, pause=0.002, yields=5) as good:
            wait_for_load(srv, locust)
            slow = [threading.Thread(target=slow_request) for _ in range(4)]
            for thread in slow:
                thread.start()
            time.sleep(0.3)
            term_at = time.monotonic()
            srv.signal(signal.SIGTERM)
            try:
                code = srv.wait(graceful + 5)
            except subprocess.TimeoutExpired:
                code = None
            exit_s = time.monotonic() - term_at
            for thread in slow:
                thread.join(10)
            good.stop()
            summary = locust.wait()
        log = srv.log()
    records = good.records
    logged = set()
    for line in access.read_text().splitlines():
        with contextlib.suppress(ValueError):
            logged.add(json.loads(line).get("request_id"))
    accepted = [r for r in records if r.token in logged]
    lost = [r for r in accepted if not r.ok]
    refused = [r for r in records if not r.ok and r.token not in logged]
    partial = [r for r in refused if r.received]
    cut = [r for r in records if not r.ok and r.conn_pid is not None]  # on a served connection
    connect_refused = sum(r.error is not None and r.error.startswith("connect") for r in refused)
    slow_ok = sum(isinstance(r, Response) and r.status == 200 and r.closes
                  for r in slow_results)
    requests, leaks, _other = _locust_verdict(summary)
    got = (f"exit {code} after {exit_s:.2f} s; probe clients: {len(accepted)} accepted, "
           f"{len(lost)} of them failed, {len(cut)} cut on kept-alive connections; "
           f"{len(refused)} new connections refused once listeners closed ({connect_refused} "
           f"at connect, {len(partial)} with partial bytes); 4 in-flight 1.5 s requests: "
           f"{slow_ok} answered 200 + Connection: close; locust {requests} requests, "
           f"{leaks} leaks")
    expect(code == 0 and exit_s <= graceful + 1, got)
    expect(not lost and not cut and not partial and slow_ok == 4 and leaks == 0,
           got + f" ({summarize_failures(lost + cut + partial)})")
    expect(not any(r.leak for r in records), got + " (LEAK in a probe)")
    expect("still busy after the graceful timeout" not in log, got + " (workers were killed)")
    return got


@case("faults", "request on an idle keep-alive connection just after SIGTERM",
      "answered with Connection: close (drain grace), not cut off; silent ones closed "
      "within ~1 s; exit 0")
def _drain_race(sess: Session) -> str:
    with running_server("--keep-alive", "30", tmp_path=sess.tmp) as srv:
        socks = [connect(srv.port) for _ in range(3)]
        try:
            for sock in socks:
                sock.sendall(probe_request(new_token()))
                first = read_reply(sock, timeout=5, responses=1)
                expect(first.statuses == [200], f"before the signal: {first.describe()}")
            term_at = time.monotonic()
            srv.signal(signal.SIGTERM)
            time.sleep(0.2)  # the drain has begun; two clients send their next request now
            tokens = [new_token(), new_token()]
            answers = []
            for sock, token in zip(socks, tokens, strict=False):
                with contextlib.suppress(OSError):
                    sock.sendall(probe_request(token))
            for sock, token in zip(socks, tokens, strict=False):
                reply = read_reply(sock, timeout=5)
                sock.close()  # as a client does on EOF (else the server lingers for it)
                ok = (reply.statuses == [200] and reply.responses[0].closes and reply.closed
                      and probe_problems(token, reply.responses[0]) is None)
                answers.append("answered+close" if ok else reply.describe())
            silent = read_reply(socks[2], timeout=5)
            silent_s = time.monotonic() - term_at
            socks[2].close()
            code = srv.wait(10)
            exit_s = time.monotonic() - term_at
        finally:
            for sock in socks:
                sock.close()
    got = (f"{', '.join(answers)}; silent one closed after {silent_s:.2f} s "
           f"({len(silent.raw)} bytes); exit {code} after {exit_s:.2f} s")
    expect(answers == ["answered+close"] * 2, got)
    expect(silent.closed and not silent.raw and silent_s <= 2.0, got)
    expect(code == 0 and exit_s <= 3.0, got)
    return got


@case("faults", "SIGHUP under load (graceful reload)",
      "all workers replaced; zero failed requests; no leak")
def _sighup(sess: Session) -> str:
    with running_server("--workers", "2", tmp_path=sess.tmp, workers=2) as srv:
        before = wait_for_workers(srv, 2)
        with LocustRun(srv.url, sess.tmp, "sighup") as locust, \
                GoodClient(srv.port, keepalive=3, fresh=1, pause=0.005) as good:
            wait_for_load(srv, locust)
            hup_at = time.monotonic()
            srv.signal(signal.SIGHUP)
            after = before
            deadline = hup_at + 10
            while time.monotonic() < deadline:
                after = worker_pids(srv)
                if len(after) == 2 and not after & before:
                    break
                time.sleep(0.1)
            replaced_s = time.monotonic() - hup_at
            summary = locust.wait()
            good.stop()
            records = good.records
            failures = locust.failures()
    requests, leaks, other = _locust_verdict(summary)
    reuse = sum(n for n, error in failures if error.startswith(REUSE_CHECK))
    failed = [r for r in records if not r.ok]
    got = (f"2 new workers after {replaced_s:.2f} s; probe clients {len(records) - len(failed)}"
           f"/{len(records)} ok; locust {requests} requests, {other - reuse} failed, "
           f"{leaks} leaks (+{reuse} connection-reuse checks a reload legitimately breaks)")
    expect(len(after) == 2 and not after & before, got)
    expect(not failed and other == reuse and leaks == 0,
           got + f" ({summarize_failures(records)} {_describe_failures(failures)})")
    return got


@case("faults", "access log on a full disk (--access-log /dev/full)",
      "requests still served; the failed log writes do not disturb serving")
def _disk_full(sess: Session) -> str:
    if not Path("/dev/full").exists():
        return "skipped: no /dev/full"
    with running_server("--access-log", "/dev/full", tmp_path=sess.tmp) as srv:
        ok = 0
        for _ in range(20):
            ok += "pid" in fresh_probe(srv.port)
        alive = srv.proc.poll() is None
        log = srv.log()
    got = f"{ok}/20 probes ok, server alive: {alive}"
    expect(ok == 20 and alive and "Traceback" not in log, got)
    return got


# -- start-up errors: one line on stderr, exit 2


def _one_line_exit_2(result: subprocess.CompletedProcess[str], must_contain: str) -> str:
    line = result.stderr.strip()
    got = f"exit {result.returncode}: {line[:150]!r}"
    expect(result.returncode == 2 and result.stderr.count("\n") == 1, got)
    expect(line.startswith("server: error: ") and must_contain in line, got)
    return got


@case("startup", "app raises at import", "one line, exit 2",
      covered_by="tests/test_server_lifecycle.py::test_app_that_fails_to_import_is_one_line_"
                 "and_exit_2")
def _import_error(sess: Session) -> str:
    result = run_cli("tests.apps.broken:app", "--bind", f"{HOST}:{free_port()}")
    return _one_line_exit_2(result, "RuntimeError: database unreachable")


@case("startup", "app raises at import with a multi-line message", "one line, exit 2")
def _import_error_multiline(sess: Session) -> str:
    result = run_cli("tests.apps.hostile_import_error:app", "--bind", f"{HOST}:{free_port()}")
    return _one_line_exit_2(result, "ValueError: first line")


@case("startup", "app factory raises with a multi-line message", "one line, exit 2")
def _factory_error_multiline(sess: Session) -> str:
    result = run_cli("tests.apps.hostile:broken_factory()", "--bind", f"{HOST}:{free_port()}")
    return _one_line_exit_2(result, "RuntimeError: first line")


@case("startup", "port in use (by a plain socket)", "one line, exit 2",
      covered_by="tests/test_server_lifecycle.py::test_port_in_use_is_a_clear_error")
def _port_in_use(sess: Session) -> str:
    with socket.socket() as taken:
        taken.bind((HOST, 0))
        taken.listen()
        result = run_cli("--bind", f"{HOST}:{taken.getsockname()[1]}")
    return _one_line_exit_2(result, "address already in use")


@case("startup", "port in use by a running server", "one line, exit 2; the first keeps serving")
def _port_in_use_by_server(sess: Session) -> str:
    with running_server(tmp_path=sess.tmp) as srv:
        result = run_cli("--bind", f"{HOST}:{srv.port}")
        got = _one_line_exit_2(result, "address already in use")
        expect("pid" in fresh_probe(srv.port), got + "; the first server stopped serving")
    return got + "; first server still serving"


@case("startup", "access log in a missing directory", "one line, exit 2",
      covered_by="tests/test_server_lifecycle.py::test_unwritable_access_log_is_a_clear_error")
def _log_missing_dir(sess: Session) -> str:
    result = run_cli("--access-log", str(sess.tmp / "missing-dir" / "access.log"))
    return _one_line_exit_2(result, "cannot open access log")


@case("startup", "access log path is a directory / read-only file system",
      "one line, exit 2 each")
def _log_unwritable(sess: Session) -> str:
    got = [_one_line_exit_2(run_cli("--access-log", str(sess.tmp)), "cannot open access log")]
    if Path("/proc/version").exists():  # read-only even for root
        got.append(_one_line_exit_2(run_cli("--access-log", "/proc/version"),
                                    "cannot open access log"))
    return "; ".join(got)


# =========================================================================== report helpers


def run_group(name: str, tmp: Path | None = None,
              on_outcome: Callable[[Outcome], None] | None = None) -> list[Outcome]:
    """Run every case of a group (for the report), in one session."""
    outcomes = []
    with contextlib.ExitStack() as stack:
        if tmp is None:
            tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="reliability-")))
        try:
            sess = stack.enter_context(session(name, tmp))
        except Exception as exc:  # the server did not even start
            failed = [Outcome(c, False, f"group did not start: {exc}"[:300], 0.0)
                      for c in cases_of(name)]
            for outcome in failed:
                if on_outcome:
                    on_outcome(outcome)
            return failed
        for c in cases_of(name):
            outcome = run_case(sess, c)
            outcomes.append(outcome)
            if on_outcome:
                on_outcome(outcome)
    return outcomes
