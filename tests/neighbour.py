"""A well-behaved client in a thread, next to a fault: it keeps asking ``/pid`` and records
every request, so a test can say who served it, when, and whether anything failed."""

from __future__ import annotations

import contextlib
import http.client
import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass


@dataclass
class Reply:
    started: float
    ended: float
    pid: int | None  # None: the request failed
    error: str = ""
    closes: bool = False  # the response said Connection: close


class Neighbour:
    """``with Neighbour(port) as n: ...`` — GET /pid in a loop until the block ends.

    ``keep_alive``: one persistent connection (reopened after ``Connection: close`` or an
    error, as HTTP clients do); otherwise a new connection per request.
    """

    def __init__(self, port: int, *, keep_alive: bool = False, timeout: float = 10.0,
                 pause: float = 0.02, path: str = "/pid") -> None:
        self.port = port
        self.keep_alive = keep_alive
        self.timeout = timeout
        self.pause = pause
        self.path = path
        self.replies: list[Reply] = []
        self._running = threading.Event()
        self._go = threading.Event()
        self._go.set()
        self._busy = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Neighbour:
        self._running.set()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        self._running.clear()
        self._go.set()
        self._thread.join(self.timeout + 5)

    @contextlib.contextmanager
    def paused(self) -> Iterator[None]:
        """No request starts inside the block (the one running finishes first).

        For the moment a fault begins: a worker that accepts the neighbour's connection in
        the same turn of its loop as the request that then blocks it takes that connection
        down with it — true, but a race of microseconds that would make the test flaky.
        """
        self._go.clear()
        while self._busy.is_set():
            time.sleep(0.005)
        try:
            yield
        finally:
            self._go.set()

    def _run(self) -> None:
        conn = None
        while self._running.is_set():
            self._go.wait()
            self._busy.set()
            started = time.monotonic()
            if conn is None:
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=self.timeout)
            headers = {} if self.keep_alive else {"Connection": "close"}
            try:
                conn.request("GET", self.path, headers=headers)
                resp = conn.getresponse()
                body = resp.read()
                closes = (resp.getheader("Connection") or "").lower() == "close"
                pid = json.loads(body)["pid"]
                self.replies.append(Reply(started, time.monotonic(), pid, closes=closes))
                if closes or not self.keep_alive:
                    conn.close()
                    conn = None
            except (OSError, http.client.HTTPException, ValueError) as exc:
                self.replies.append(Reply(started, time.monotonic(), None, repr(exc)))
                conn.close()
                conn = None
            self._busy.clear()
            time.sleep(self.pause)
        if conn is not None:
            conn.close()

    # -- what happened ----------------------------------------------------------------------
    @property
    def failures(self) -> list[Reply]:
        return [r for r in self.replies if r.pid is None]

    def pids(self) -> set[int]:
        return {r.pid for r in self.replies if r.pid is not None}

    def first_from(self, pids: set[int], after: float = 0.0) -> Reply | None:
        """The first reply, ending after ``after``, served by none of ``pids``."""
        return next((r for r in self.replies
                     if r.pid is not None and r.pid not in pids and r.ended >= after), None)

    def wait_for_new_pid(self, known: set[int], deadline: float) -> Reply | None:
        while time.monotonic() < deadline:
            found = self.first_from(known)
            if found is not None:
                return found
            time.sleep(0.02)
        return self.first_from(known)
