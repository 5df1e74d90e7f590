"""The response writer: PEP 3333 ``start_response``, the body's framing, head and body on the wire.

:class:`HTTPResponse` answers one :class:`~server.http.request.HTTPRequest` through its
connection's transport; what the head says about the application's headers is
:mod:`server.http.headers`' business.
"""

from __future__ import annotations

import logging
import os
import stat
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any, BinaryIO

from .errors import error_body
from .framing import (
    CHUNKED,
    CLOSE_DELIMITED,
    CONTENT_LENGTH,
    NO_BODY,
    body_framing,
    close_reason,
    status_has_content,
)
from .headers import HopByHopWarnings, date_line, encode_headers, parse_status, status_phrase
from .request import HTTPRequest, refused_after_end

if TYPE_CHECKING:
    from .connection import HTTPConnection

__all__ = ["COALESCE_LIMIT", "RESPONSE_HEADERS", "FileWrapper", "HTTPResponse"]

#: The environ key holding the response headers the app passed to ``start_response``
#: (read by the access log's ``%({name}o)s``).
RESPONSE_HEADERS = "ctxserver.response_headers"

#: First-chunk size up to which headers and body go out in one sendall (a copy is cheaper
#: than a second syscall and a second packet); larger bodies are sent after the head.
COALESCE_LIMIT = 65536

#: Where close_after() says why a connection is not kept alive (at debug level).
log = logging.getLogger("server.http")
#: Hop-by-hop headers an application sent: one warning per route and header.
warn_hop_by_hop = HopByHopWarnings(log)


class FileWrapper:
    """``wsgi.file_wrapper`` (PEP 3333): lets the server ``sendfile`` a real file."""

    def __init__(self, filelike: BinaryIO, blksize: int = 8192) -> None:
        self.filelike = filelike
        self.blksize = blksize

    def __iter__(self) -> Iterator[bytes]:
        read, blksize = self.filelike.read, self.blksize
        while data := read(blksize):
            yield data

    def close(self) -> None:
        close = getattr(self.filelike, "close", None)
        if close is not None:
            close()


class HTTPResponse:
    """The response to one :class:`HTTPRequest`: PEP 3333 ``start_response`` and friends.

    Framing (:func:`~server.http.framing.body_framing`): the application's Content-Length
    when given (never more bytes than it: the excess is dropped and the connection
    closed); else a length computed from a list/tuple body or an empty body; else chunked
    for HTTP/1.1; else close-delimited. HEAD, 1xx, 204 and 304 responses carry no body.
    The head is delayed until the first non-empty body chunk and sent with it in one
    ``sendall``. Whether the connection serves another request afterwards is
    ``keep_alive``: decided once when the head goes out
    (:func:`~server.http.framing.close_reason`), and only ever turned off by
    :meth:`close_after`.
    """

    __slots__ = (
        "_app_close",
        "_conn",
        "_framing",
        "_has_date",
        "_has_server",
        "_header_block",
        "_length",
        "_length_hint",
        "_request",
        "_status_line",
        "bytes_sent",
        "headers_sent",
        "keep_alive",
        "status_code",
    )

    def __init__(self, conn: HTTPConnection, request: HTTPRequest) -> None:
        self._conn = conn
        self._request = request
        # Set by start_response() (or send_error())
        #: Status of the response (0 until start_response or send_error).
        self.status_code = 0
        self._status_line: bytes | None = None
        self._header_block = b""
        #: The body length the application announced, then the one the head announced.
        self._length: int | None = None
        self._app_close = self._has_date = self._has_server = False
        # Set when the head goes out
        self.headers_sent = False
        self._framing = NO_BODY
        #: Whether the connection may serve another request after this one: True until
        #: the decision at the head or a close_after() says otherwise.
        self.keep_alive = True
        # Progress of the body
        #: Length of a body known whole before it is sent (a list, a file), else None.
        self._length_hint: int | None = None
        #: Body bytes written to the socket (excluding head and chunk framing).
        self.bytes_sent = 0

    def start_response(
        self, status: str, headers: list[tuple[str, str]], exc_info: Any = None
    ) -> Callable[[bytes], None]:
        """PEP 3333 ``start_response``. Raises ValueError/TypeError on invalid input."""
        if exc_info is not None:
            try:
                if self.headers_sent:
                    raise exc_info[1].with_traceback(exc_info[2])
            finally:
                exc_info = None  # break the frame <-> traceback cycle
        elif self._status_line is not None:
            raise RuntimeError("start_response() called twice without exc_info")
        code, line = parse_status(status)
        block, length, close, has_date, has_server, dropped = encode_headers(headers)
        if dropped:
            environ = self._request.environ
            warn_hop_by_hop(environ.get("SCRIPT_NAME", "") + environ.get("PATH_INFO", ""),
                            dropped)
        self.status_code = code
        self._status_line = line
        self._header_block = block
        # for the access log's %({name}o)s (the list as the app passed it; one dict store)
        self._request.environ[RESPONSE_HEADERS] = headers
        self._length = length
        self._app_close = close
        self._has_date = has_date
        self._has_server = has_server
        return self.write

    def write(self, data: bytes) -> None:
        """PEP 3333 ``write`` callable; also used for every chunk of the app iterable.

        Raises :class:`~server.http.errors.ResponseEnded` once the response has finished:
        whoever kept the callable (a child greenlet, a callback) would otherwise write into
        the connection's next response.
        """
        if self._request.ended:
            raise refused_after_end(self._request, "write()")
        if type(data) is not bytes:
            if isinstance(data, str):
                raise TypeError("response body must be bytes, not str")
            data = bytes(data)
        if not self.headers_sent:
            self._send_head(data, final=False)
            return
        if not data:
            return
        framing = self._framing
        if framing == CHUNKED:
            self._conn.transport.sendall(b"%x\r\n%b\r\n" % (len(data), data))
        elif framing == CONTENT_LENGTH:
            data = self._clip(data)
            if data:
                self._conn.transport.sendall(data)
        elif framing == CLOSE_DELIMITED:
            self._conn.transport.sendall(data)
        else:
            return
        self.bytes_sent += len(data)

    def send_iterable(self, app_iter: Iterable[bytes]) -> None:
        """Write every chunk of a WSGI response iterable, then :meth:`finish`.

        Does not close the iterable: that is the caller's job, in a ``finally``.
        """
        if type(app_iter) is FileWrapper and not self.headers_sent and self._sendfile(app_iter):
            self.finish()
            return
        if type(app_iter) in (list, tuple) and not self.headers_sent:
            try:
                self._length_hint = sum(map(len, app_iter))  # type: ignore[arg-type]
            except TypeError:
                self._length_hint = None
        write = self.write
        for data in app_iter:
            if data:
                write(data)
        self.finish()

    def finish(self) -> None:
        """End the body: send the head if nothing was written, the last chunk if chunked.

        From here on the request has ended: its ``write()`` and ``wsgi.input`` refuse.
        """
        self._request.ended = True
        if not self.headers_sent:
            self._send_head(b"", final=True)
        elif self._framing == CHUNKED:
            self._conn.transport.sendall(b"0\r\n\r\n")
        if self._framing == CONTENT_LENGTH and self.bytes_sent < (self._length or 0):
            # The client would wait for the rest; only our closing tells it there is none.
            self.close_after("the body ended short of its Content-Length")

    def close_after(self, reason: str) -> None:
        """Close the connection after this response, for ``reason`` (logged at debug level).

        The only way keep-alive is turned off; the first reason is the one logged.
        """
        if self.keep_alive:
            self.keep_alive = False
            conn = self._conn
            log.debug("%s:%s: closing after this response: %s",
                      conn.remote_addr, conn.remote_port, reason)

    def send_error(self, status: int, reason: str | None = None, *, close: bool = True,
                   headers: Iterable[tuple[str, str]] = ()) -> None:
        """Answer with a short text/plain error instead (only before the head was sent).

        ``close=True`` (protocol errors: the stream may be out of sync) goes through
        :meth:`HTTPConnection.send_error` and ends the connection. ``close=False`` is for
        an application that failed cleanly before responding: the request was framed
        correctly, so the connection may be kept alive under the usual rules -- which is
        also what lets a keep-alive client prove the next request sees nothing of the
        failed one. ``headers`` are added, as the server's ``X-Request-ID`` on its own 500
        or on a 413/408 met in ``wsgi.input``: the id a client quotes when it reports it.
        """
        if self.headers_sent:
            raise RuntimeError("response already started")
        if close:
            self.headers_sent = True
            self._request.response_started = True
            self.status_code = status
            self.close_after(f"error response {status} {reason or ''}".rstrip())
            self.bytes_sent = self._conn.send_error(status, reason, headers)
            return
        self.status_code = status
        self._request.environ[RESPONSE_HEADERS] = [
            ("Content-Type", "text/plain; charset=utf-8"), *headers]
        phrase = status_phrase(status).encode("latin-1")
        self._status_line = b"HTTP/1.1 %d %s\r\n" % (status, phrase)
        self._header_block = b"Content-Type: text/plain; charset=utf-8\r\n" + b"".join(
            b"%s: %s\r\n" % (name.encode("latin-1"), value.encode("latin-1"))
            for name, value in headers)
        self._length = self._length_hint = None
        self._app_close = self._has_date = self._has_server = False
        self._send_head(error_body(status, reason), final=True)
        self.finish()

    # -- internals

    def _clip(self, data: bytes) -> bytes:
        """Never send more than the announced Content-Length; close if the app tried."""
        remaining = (self._length or 0) - self.bytes_sent
        if len(data) > remaining:
            self.close_after("the application sent more than its Content-Length")
            return data[:remaining]
        return data

    def _send_head(self, data: bytes, *, final: bool) -> None:
        """Decide the framing and the connection's reuse, then send the head together
        with the first chunk (``final``: ``data`` is the whole body)."""
        if self._status_line is None:
            raise RuntimeError("start_response() was not called before the body")
        req = self._request
        conn = self._conn
        code = self.status_code
        length = self._length
        added_length = None
        if length is None and status_has_content(code):
            added_length = length = len(data) if final else self._length_hint
        framing = body_framing(req.method, code, length, req.http_version)
        self._framing = framing
        self._length = length
        reason = close_reason(
            req,
            code,
            framing,
            app_close=self._app_close,
            server_allows=conn.keep_alive_allowed,
            server_closing=conn.closing,
        )
        if reason is not None:
            self.close_after(reason)
        parts = self._head(added_length)
        if data and framing != NO_BODY:
            if framing == CONTENT_LENGTH:
                data = self._clip(data)
            if framing == CHUNKED:
                parts.append(b"%x\r\n%b\r\n" % (len(data), data))
            else:
                parts.append(data)
        else:
            data = b""
        self.headers_sent = True
        req.response_started = True
        if len(data) > COALESCE_LIMIT and framing != CHUNKED:
            body = parts.pop()
            conn.transport.sendall(b"".join(parts))
            conn.transport.sendall(body)
        else:
            conn.transport.sendall(b"".join(parts))
        self.bytes_sent += len(data)

    def _head(self, added_length: int | None) -> list[bytes]:
        """The head's lines, as decided: the app's, then the framing's and ours."""
        parts = [self._status_line or b"", self._header_block]
        if added_length is not None:
            parts.append(b"Content-Length: %d\r\n" % added_length)
        if self._framing == CHUNKED:
            parts.append(b"Transfer-Encoding: chunked\r\n")
        if not self._has_date:
            parts.append(date_line())
        if not self._has_server:
            parts.append(self._conn.server_line)
        if not self.keep_alive:
            parts.append(b"Connection: close\r\n")
        elif self._request.http_version == "HTTP/1.0":
            parts.append(b"Connection: keep-alive\r\n")
        parts.append(b"\r\n")
        return parts

    def _sendfile(self, wrapper: FileWrapper) -> bool:
        """Send a regular file with os.sendfile; False to fall back to iterating it."""
        if self._conn.transport.tls:
            return False  # the kernel would send the file unencrypted
        filelike = wrapper.filelike
        try:
            fd = filelike.fileno()
            st = os.fstat(fd)
            offset = filelike.tell()
        except (AttributeError, OSError, ValueError):
            return False
        if not stat.S_ISREG(st.st_mode) or self._status_line is None:
            return False
        size = max(st.st_size - offset, 0)
        self._length_hint = size
        self._send_head(b"", final=False)
        if self._framing != CONTENT_LENGTH:
            return True  # HEAD / no-body status: the head was all there was to send
        count = min(size, self._length or 0)
        sent = 0
        try:
            sent = self._conn.transport.sendfile(fd, offset, count)
        finally:
            self.bytes_sent += sent
            filelike.seek(offset + sent)
        return True
