"""One request as the parser delivers it: the facts of its head, and its body (``wsgi.input``).

The body arrives on demand: :class:`RequestBody` asks its :class:`BodySource` (the
connection) for more bytes only when the application reads past what the parser has
delivered, so memory is bounded by one receive buffer plus what the app has not read.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any, Protocol

from .errors import ResponseEnded

__all__ = ["EMPTY_BODY", "BodySource", "EmptyBody", "HTTPRequest", "RequestBody",
           "refused_after_end"]

#: Where a use of a request's write() or wsgi.input after its end is reported.
log = logging.getLogger("server.http")

class HTTPRequest:
    """One parsed request head, plus the state of its body as the parser delivers it."""

    __slots__ = (
        "body_buffer",
        "body_received",
        "chunked",
        "content_length",
        "continue_sent",
        "ended",
        "environ",
        "expect_continue",
        "http_version",
        "keep_alive",
        "message_complete",
        "method",
        "request_id",
        "response_started",
        "upgrade",
    )

    environ: dict[str, Any]

    def __init__(
        self,
        method: str,
        http_version: str,
        keep_alive: bool,
        content_length: int | None,
        chunked: bool,
        expect_continue: bool,
    ) -> None:
        self.method = method
        #: "HTTP/1.1" or "HTTP/1.0".
        self.http_version = http_version
        #: The client's ``Connection`` header and version allow another request after this
        #: one (llhttp's should_keep_alive); server/http/framing.py decides whether it comes.
        self.keep_alive = keep_alive
        self.content_length = content_length
        self.chunked = chunked
        #: Client sent ``Expect: 100-continue`` (HTTP/1.1 with a body only).
        self.expect_continue = expect_continue
        #: An Upgrade or CONNECT request (answered in HTTP/1.1: we switch no protocol).
        self.upgrade = False
        #: Set by HTTPResponse once the response head is on the wire.
        self.response_started = False
        #: ``100 Continue`` went out (HTTPConnection sends it on the first body read).
        self.continue_sent = False
        #: Body bytes the parser delivered and the application has not read yet.
        self.body_buffer = bytearray()
        #: Body bytes the parser delivered in all (checked against max_body_size).
        self.body_received = 0
        #: The parser has seen the end of this request's body (not necessarily read).
        self.message_complete = not chunked and not content_length
        # End of the request
        #: The request is over (its response finished, or the handler gave up on it): its
        #: write() and wsgi.input refuse to be used (see :func:`refused_after_end`).
        self.ended = False
        #: Its X-Request-ID, kept for that refusal's log line once the environ is gone.
        self.request_id: str | None = None


def refused_after_end(req: HTTPRequest, what: str) -> ResponseEnded:
    """Log that ``what`` was attempted after ``req`` ended and return the error to raise.

    The one rule behind hole 1 of issue 10: nothing a request does after its end reaches
    the connection, which by then carries the next request (late bytes would be read as
    part of *its* response; a late read would eat *its* body).  An error, not a silent
    drop: the app has a bug (a child that kept ``write``), and it should hear about it.
    """
    rid = req.request_id or req.environ.get("ctxserver.request_id")
    log.error("%s after the end of its request (%s, request_id=%s): refused", what,
              req.method, rid)
    return ResponseEnded(f"{what} after the end of its request (request_id={rid})")


class BodySource(Protocol):
    """Where a :class:`RequestBody` gets more bytes: the connection the request came on."""

    def receive_body(self, request: HTTPRequest) -> None:
        """Deliver more of ``request``'s body into its ``body_buffer``, or raise
        ``HTTPError`` (408, 413, a framing error) or ``ClientDisconnected``."""


class RequestBody:
    """``wsgi.input``: reads the body of one request off the connection on demand.

    Honours Content-Length and chunked framing (trailers are accepted and ignored) and
    returns ``b""`` at the end (``wsgi.input_terminated``). The first read that needs
    bytes from the network answers ``Expect: 100-continue``. Raises ``HTTPError(413)``
    past ``max_body_size``, ``HTTPError(408)`` when the client stalls longer than
    ``header_timeout``, and :class:`ClientDisconnected` (an ``HTTPError(400)`` *and* a
    ``ConnectionError``) when the client goes away mid-body.
    """

    __slots__ = ("_conn", "_req")

    def __init__(self, conn: BodySource, request: HTTPRequest) -> None:
        self._conn = conn
        self._req = request

    def read(self, size: int | None = -1) -> bytes:
        req = self._req
        if req.ended:
            raise refused_after_end(req, "wsgi.input read")
        buf = req.body_buffer
        if size is None or size < 0:
            while not req.message_complete:
                self._conn.receive_body(req)
            data = bytes(buf)
            buf.clear()
            return data
        while len(buf) < size and not req.message_complete:
            self._conn.receive_body(req)
        data = bytes(buf[:size])
        del buf[:size]
        return data

    def readline(self, size: int | None = -1) -> bytes:
        req = self._req
        if req.ended:
            raise refused_after_end(req, "wsgi.input read")
        buf = req.body_buffer
        limit = -1 if size is None else size
        start = 0
        while True:
            end = buf.find(b"\n", start)
            if end >= 0:
                end += 1
                break
            if req.message_complete or 0 <= limit <= len(buf):
                end = len(buf)
                break
            start = len(buf)
            self._conn.receive_body(req)
        if 0 <= limit < end:
            end = limit
        data = bytes(buf[:end])
        del buf[:end]
        return data

    def readlines(self, hint: int | None = -1) -> list[bytes]:
        lines = []
        total = 0
        while line := self.readline():
            lines.append(line)
            total += len(line)
            if hint is not None and 0 < hint <= total:
                break
        return lines

    def __iter__(self) -> Iterator[bytes]:
        while line := self.readline():
            yield line


class EmptyBody:
    """``wsgi.input`` of a request without a body; stateless, so one instance serves all."""

    __slots__ = ()

    def read(self, size: int | None = -1) -> bytes:
        return b""

    def readline(self, size: int | None = -1) -> bytes:
        return b""

    def readlines(self, hint: int | None = -1) -> list[bytes]:
        return []

    def __iter__(self) -> Iterator[bytes]:
        return iter(())


EMPTY_BODY = EmptyBody()

