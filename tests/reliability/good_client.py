"""The well-behaved client every case runs beside: background threads sending leak probes.

While a case throws its hostile input at the server, this client keeps sending probes
(``docs/probe-contract.md``) and records every answer, so that ``tests.reliability.session``
can require that nobody else was hurt: no failure, no leak, never starved.
"""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass

from tests.reliability.wire import (
    Reply,
    connect,
    new_token,
    probe_problems,
    probe_request,
    read_reply,
)


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
    #: Seconds the connection was idle before this request (None: a new connection).
    idle: float | None = None


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
        last_end: float | None = None  # end of the previous request on this connection
        while not self._stop.is_set():
            if not self._running.is_set():
                with self._lock:
                    self._busy -= 1
                self._running.wait(self.timeout)
                with self._lock:
                    self._busy += 1
                continue
            if sock is None:
                serial, conn_pid, last_end = self._next_serial(), None, None
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
                            conn_pid, len(reply.raw),
                            idle=None if last_end is None else started - last_end)
            last_end = record.ended
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
    """The distinct failures, each with where it happened: on a new connection, or on a
    kept-alive one after how long idle (a keep-alive race looks different from a bug)."""
    bad = [r for r in records if not r.ok]

    def where(r: Record) -> str:
        took = f"{r.ended - r.started:.3f} s"
        if r.idle is None:
            return f"new connection, after {took}"
        return f"keep-alive connection idle {r.idle:.3f} s, after {took}"

    return "; ".join(sorted({f"{(r.error or '?')[:120]} [{where(r)}]" for r in bad})[:limit])
