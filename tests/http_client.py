"""The client side of raw HTTP/1.x for tests: an incremental response parser.

Tests that speak raw bytes to the server (protocol tests, reliability cases, same-socket
context tests) read responses with this one parser instead of one each.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["Response", "ResponseReader"]


@dataclass
class Response:
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
    """Incremental parser of the HTTP/1.x responses on one connection (client side)."""

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
        buf = self.buffer
        end = buf.find(b"\r\n\r\n")
        if end < 0:
            return False
        head = bytes(buf[:end])
        lines = head.split(b"\r\n")
        match = re.fullmatch(rb"HTTP/1\.[01] (\d{3})(?: (.*))?", lines[0])
        if match is None:
            self.error = f"bad status line {lines[0][:80]!r}"
            return False
        status = int(match[1])
        headers = []
        for line in lines[1:]:
            name, sep, value = line.partition(b":")
            if not sep or not name or name.strip() != name:
                self.error = f"bad header line {line[:80]!r}"
                return False
            headers.append((name.decode("latin-1"), value.strip().decode("latin-1")))
        resp = Response(status, (match[2] or b"").decode("latin-1"), headers, b"", head)
        start = end + 4
        if 100 <= status < 200 or status in (204, 304) or self.bodiless:
            if status >= 200 and self.bodiless:
                self.bodiless -= 1
            del buf[:start]
            self.responses.append(resp)
            return True
        length = resp.header("Content-Length")
        if length is not None:
            if not length.isdigit():
                self.error = f"bad Content-Length {length!r}"
                return False
            stop = start + int(length)
            if len(buf) < stop:
                return False
            resp.body = bytes(buf[start:stop])
            del buf[:stop]
        elif (resp.header("Transfer-Encoding") or "").lower() == "chunked":
            body, consumed = _dechunk(bytes(buf[start:]))
            if consumed is None:
                return False
            resp.body = body
            del buf[: start + consumed]
        else:  # close-delimited
            if not eof:
                return False
            resp.body = bytes(buf[start:])
            del buf[:]
        self.responses.append(resp)
        return True


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
