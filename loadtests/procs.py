"""Driving a server process from the outside: ports, health, stopping, /proc, raw responses.

The benchmarks (``bench/``), the load-test runner (``loadtests/``) and the tests (``tests/``)
each start servers on 127.0.0.1, wait for them, read what they send and stop them again; they
used to carry two to four copies of each of these helpers. This is the one copy. It uses the
standard library only, because it ships in the image with ``loadtests/`` (whose runner needs
it) and runs where nothing but the runtime requirements is installed.

Whether a probe answer is correct is not decided here: that is ``loadtests.probe_check``.
"""

from __future__ import annotations

import contextlib
import os
import platform
import re
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "NotHealthy",
    "Response",
    "ResponseReader",
    "children_of",
    "cpu_model",
    "fetch",
    "free_port",
    "read_response",
    "stop_process_group",
    "wait_for_zero",
    "wait_healthy",
]

LOCALHOST = "127.0.0.1"


# --------------------------------------------------------------------------- ports, HTTP


def free_port() -> int:
    """A port of 127.0.0.1 that nobody listens on right now (the kernel picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOCALHOST, 0))
        return sock.getsockname()[1]


_DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))
"""127.0.0.1 is asked directly, whatever ``http_proxy`` says."""


def fetch(url: str, *, headers: dict[str, str] | None = None,
          timeout: float = 5.0) -> tuple[int, bytes]:
    """``(status, body)`` of one GET, error statuses included; OSError if nothing answered."""
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with _DIRECT.open(request, timeout=timeout) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:  # a 4xx/5xx is an answer, not a failure to ask
        with exc:
            return exc.code, exc.read()


class NotHealthy(RuntimeError):
    """The server did not become healthy: it exited, or did not answer in time."""


def wait_healthy(url: str, proc: subprocess.Popen[bytes] | None = None, *,
                 timeout: float = 30.0, accept: Callable[[bytes], bool] | None = None,
                 interval: float = 0.05) -> None:
    """Poll ``url`` (a ``/healthz``) until it answers 200 and ``accept(body)`` holds.

    Raises :class:`NotHealthy` as soon as ``proc`` has exited, or after ``timeout`` seconds.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise NotHealthy(f"server exited with {proc.returncode} before it was healthy")
        with contextlib.suppress(OSError, ValueError):  # refused, reset, timeout, half-up
            status, body = fetch(url, timeout=min(2.0, timeout))
            if status == 200 and (accept is None or accept(body)):
                return
        time.sleep(interval)
    raise NotHealthy(f"{url} not healthy after {timeout:g} s")


def wait_for_zero(read: Callable[[], float], *, timeout: float = 5.0,
                  interval: float = 0.1) -> float:
    """Poll ``read()`` until it returns 0 or ``timeout`` passes; its last value.

    For gauges that reach zero a moment after the load stops (live ctxlocal entries in
    ``/metrics``: the last requests finish and the gauge is refreshed on the next scrape).
    """
    deadline = time.monotonic() + timeout
    value = read()
    while value and time.monotonic() < deadline:
        time.sleep(interval)
        value = read()
    return value


# --------------------------------------------------------------------------- processes


def stop_process_group(proc: subprocess.Popen[bytes], grace: float, *,
                       whole_group: bool = False) -> int:
    """Stop ``proc`` and everything in its process group; its exit code.

    ``proc`` should lead a group of its own (``start_new_session=True``), so that the group
    is its workers and never the caller's. SIGTERM goes to ``proc`` (a master that stops its
    workers gracefully), or with ``whole_group`` to every process of the group (servers whose
    workers do not follow a master's TERM); after ``grace`` seconds SIGKILL goes to whatever
    is left of the group — workers may outlive their master. A ``proc`` that does not lead a
    group has no group to kill, and the KILL falls back to ``proc`` alone.
    """
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            if whole_group:
                os.killpg(proc.pid, signal.SIGTERM)
            else:
                proc.send_signal(signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(grace)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    if proc.poll() is None:
        proc.kill()
    return proc.wait()


def children_of(pid: int) -> set[int]:
    """The pids of ``pid``'s direct children (Linux ``/proc``); empty when it has none."""
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return set()
    return {int(p) for p in text.split()}


def cpu_model() -> str:
    """The CPU's model name, for results files (``/proc/cpuinfo``, else the platform's)."""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown CPU"


# --------------------------------------------------------------------------- raw responses


@dataclass
class Response:
    """One HTTP/1.x response as a client received it."""

    status: int
    reason: str
    headers: list[tuple[str, str]]
    body: bytes
    head: bytes

    def header(self, name: str) -> str | None:
        """The field's value; repeated fields joined with "," (as a recipient may)."""
        name = name.lower()
        values = [value for key, value in self.headers if key.lower() == name]
        return ",".join(values) if values else None

    @property
    def raw(self) -> bytes:
        """The response as it came over the wire (for a chunked one: decoded body)."""
        return self.head + b"\r\n\r\n" + self.body

    @property
    def closes(self) -> bool:
        return (self.header("Connection") or "").lower() == "close"


class ResponseReader:
    """Incremental parser of the HTTP/1.x responses on one connection (client side).

    Strict on purpose: whoever speaks raw bytes to the server (protocol tests, reliability
    cases, the benchmark's idle connections) must see a malformed or split response as an
    error, never have it smoothed over.
    """

    def __init__(self, bodiless: int = 0) -> None:
        #: Leading final responses without a body (answers to HEAD requests).
        self.bodiless = bodiless
        self.buffer = bytearray()
        self.responses: list[Response] = []
        self.error: str | None = None

    def feed(self, data: bytes) -> None:
        self.buffer += data
        while self.error is None and self._parse_one(eof=False):
            pass

    def finish(self) -> None:
        """EOF: a close-delimited body ends here."""
        while self.error is None and self._parse_one(eof=True):
            pass

    def _parse_one(self, *, eof: bool) -> bool:
        """Move one complete response from the buffer to ``responses``; False if there is
        none yet (or the bytes are malformed: then ``error`` says why)."""
        buf = self.buffer
        end = buf.find(b"\r\n\r\n")
        if end < 0:
            return False
        resp = _parse_head(bytes(buf[:end]))
        if isinstance(resp, str):
            self.error = resp
            return False
        start = end + 4
        if 100 <= resp.status < 200 or resp.status in (204, 304) or self.bodiless:
            if resp.status >= 200 and self.bodiless:
                self.bodiless -= 1
            consumed: int | None = 0
        else:
            resp.body, consumed = self._body(resp, bytes(buf[start:]), eof=eof)
        if consumed is None:
            return False
        del buf[: start + consumed]
        self.responses.append(resp)
        return True

    def _body(self, resp: Response, data: bytes, *, eof: bool) -> tuple[bytes, int | None]:
        """(body, bytes consumed) by the response's framing; consumed None: incomplete."""
        length = resp.header("Content-Length")
        if length is not None:
            if not length.isdigit():
                self.error = f"bad Content-Length {length!r}"
                return b"", None
            size = int(length)
            return (data[:size], size) if len(data) >= size else (b"", None)
        if (resp.header("Transfer-Encoding") or "").lower() == "chunked":
            return _dechunk(data)
        return (data, len(data)) if eof else (b"", None)  # close-delimited


def _parse_head(head: bytes) -> Response | str:
    """The status line and fields of one response head, or what is wrong with them."""
    lines = head.split(b"\r\n")
    match = re.fullmatch(rb"HTTP/1\.[01] (\d{3})(?: (.*))?", lines[0])
    if match is None:
        return f"bad status line {lines[0][:80]!r}"
    headers = []
    for line in lines[1:]:
        name, sep, value = line.partition(b":")
        if not sep or not name or name.strip() != name:
            return f"bad header line {line[:80]!r}"
        headers.append((name.decode("latin-1"), value.strip().decode("latin-1")))
    return Response(int(match[1]), (match[2] or b"").decode("latin-1"), headers, b"", head)


def _dechunk(data: bytes) -> tuple[bytes, int | None]:
    """(body, bytes consumed) of a complete chunked body, or (b"", None) if incomplete."""
    body = bytearray()
    pos = 0
    while True:
        eol = data.find(b"\r\n", pos)
        if eol < 0:
            return b"", None
        size = int(data[pos:eol].split(b";")[0], 16)
        pos = eol + 2
        if size == 0:
            end = data.find(b"\r\n\r\n", pos - 2)
            if end < 0:
                return b"", None
            return bytes(body), end + 4
        if len(data) < pos + size + 2:
            return b"", None
        body += data[pos:pos + size]
        pos += size + 2


def read_response(sock: socket.socket, reader: ResponseReader | None = None) -> Response:
    """The next complete response on a blocking socket (the socket's timeout applies).

    Raises ConnectionError when the server closes first or sends something unparsable.
    """
    reader = reader or ResponseReader()
    while not reader.responses:
        if reader.error is not None:
            raise ConnectionError(f"unparsable response: {reader.error}")
        data = sock.recv(65536)
        if not data:
            reader.finish()
            if reader.responses:
                break
            raise ConnectionError("closed before a complete response")
        reader.feed(data)
    return reader.responses.pop(0)
