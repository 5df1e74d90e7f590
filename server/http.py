"""HTTP/1.1 server protocol on gevent sockets, parsed by httptools (llhttp).

This module knows the wire protocol and PEP 3333, nothing about applications,
routing or logging configuration. :class:`HTTPConnection` turns the bytes of one
accepted socket into :class:`HTTPRequest` objects (with a complete WSGI environ)
and :class:`HTTPResponse` turns a WSGI ``start_response`` + iterable back into
bytes. The per-connection loop that ties them to an application lives in
``server.connection``.

Parsing model: one ``httptools.HttpRequestParser`` per connection. Bytes are fed
only when someone needs more (the next request head, or more body), so memory is
bounded by one receive buffer plus what the application has not read yet. A
request is queued as soon as its head is complete (the application can start
before the body arrived); requests pipelined behind it are queued in order.

A parse error is *sticky*: it is recorded and raised to whoever next needs bytes
the parser could not produce -- the body reader of the request it belongs to, or
the next :meth:`HTTPConnection.read_request`. Requests that were completely
parsed before the bad bytes are still answered first, in order.

What llhttp (strict mode, the default) rejects by itself, all answered 400:
malformed request lines and methods, HTTP versions other than 0.9/1.0/1.1/2.0,
invalid header-name characters, CTLs in header values, obs-fold, bare CR/LF,
Content-Length together with Transfer-Encoding, duplicate/negative/non-numeric/
overflowing Content-Length, bad or overflowing chunk sizes, ``chunked`` not last
in Transfer-Encoding, raw 8-bit bytes in the request target, and the HTTP/2
preface (which we map to 505). What this module checks on top: URI length (414),
header block size and count (431), body size (413), Transfer-Encoding codings
other than ``chunked`` (501), HTTP/0.9 and HTTP/2.0 request lines (505), timeouts
(408), more than one Host header (400), and header names containing ``_`` (dropped;
see ``env_key``). Deliberately lenient: a missing Host header is accepted.
"""

from __future__ import annotations

import contextlib
import os
import re
import socket
import stat
import sys
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from email.utils import formatdate
from http import HTTPStatus
from time import monotonic, time
from typing import Any, BinaryIO
from urllib.parse import unquote_to_bytes

import httptools
from gevent import get_hub
from gevent.socket import wait as wait_on_watcher
from gevent.socket import wait_write
from httptools import (
    HttpParserCallbackError,
    HttpParserError,
    HttpParserUpgrade,
)

__all__ = [
    "ClientDisconnected",
    "FileWrapper",
    "HTTPConnection",
    "HTTPError",
    "HTTPRequest",
    "HTTPResponse",
    "Limits",
    "RequestBody",
]

#: Bytes asked of the kernel per recv; also the slack allowed past the header limits,
#: because one recv may carry that much before the parser can complain.
RECV_SIZE = 65536
#: Unread request body we are willing to read and throw away to keep a connection alive.
DISCARD_LIMIT = 65536
#: Lingering close: how long and how much we keep reading after our last response so the
#: kernel does not answer unread client bytes with a RST that destroys that response.
LINGER_SECONDS = 2.0
LINGER_BYTES = 256 * 1024
#: First-chunk size up to which headers and body go out in one sendall (a copy is cheaper
#: than a second syscall and a second packet); larger bodies are sent after the head.
COALESCE_LIMIT = 65536


@dataclass(frozen=True)
class Limits:
    """Protocol limits of one server; every one of them defends against a hostile client."""

    #: Bytes of the request line (method, target, version); a longer target gets 414.
    max_request_line: int = 8190
    #: Total bytes of the header block (names, values and separators); over it gets 431.
    max_header_size: int = 65536
    #: Number of header fields; more gets 431.
    max_header_count: int = 100
    #: Bytes of request body; 0 means unlimited. Over it gets 413, before the body is read
    #: when Content-Length announces it, else as soon as a chunked body exceeds it.
    max_body_size: int = 100 * 1024 * 1024
    #: Seconds for a whole request head to arrive (a total, not per recv: defeats
    #: slowloris) and for each body read to make progress.
    header_timeout: float = 30.0
    #: Seconds a connection may sit idle between requests; 0 disables keep-alive.
    keep_alive: float = 5.0
    #: Seconds one send may wait for a client that does not read (defeats slow readers).
    send_timeout: float = 60.0


class HTTPError(Exception):
    """A protocol violation, answered with ``status`` and the connection closed."""

    def __init__(self, status: int, reason: str = "") -> None:
        super().__init__(status, reason)
        self.status = status
        self.reason = reason

    def __str__(self) -> str:
        return f"{self.status} {self.reason}" if self.reason else str(self.status)


class ClientDisconnected(HTTPError, ConnectionError):
    """The peer went away (or stopped reading/sending) in the middle of a request.

    It is both an ``HTTPError(400)`` -- so an application catching protocol errors from
    ``wsgi.input`` sees a client error -- and a ``ConnectionError`` (an ``OSError``) -- so
    generic "client went away" handling works. There is nobody left to answer.
    """

    def __init__(self, reason: str = "client disconnected") -> None:
        super().__init__(400, reason)


# --------------------------------------------------------------------------- helpers

_HTTP_VERSIONS = {"1.1": "HTTP/1.1", "1.0": "HTTP/1.0"}
_METHODS = {
    m.encode(): m
    for m in ("GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "CONNECT", "TRACE")
}
ENV_KEYS: dict[bytes, str | None] = {}
ENV_KEYS_MAX = 1024


def env_key(name: bytes) -> str | None:
    """Map a header name to its environ key, cached because names repeat on every request.

    Names containing ``_`` are dropped (like nginx and gunicorn do): CGI turns ``-`` into
    ``_``, so ``X_Forwarded_For`` would otherwise silently impersonate ``X-Forwarded-For``
    and ``Content_Length`` would become CONTENT_LENGTH without llhttp ever framing by it.
    """
    key = ENV_KEYS.get(name, "")
    if key != "":
        return key
    if b"_" in name:
        key = None
    else:
        key = name.decode("latin-1").upper().replace("-", "_")
        if key not in ("CONTENT_TYPE", "CONTENT_LENGTH"):
            key = "HTTP_" + key
    if len(ENV_KEYS) < ENV_KEYS_MAX:
        ENV_KEYS[name] = key
    return key


def split_target(raw: bytes) -> tuple[str, str]:
    """Return (PATH_INFO, QUERY_STRING) of a request target.

    PATH_INFO is percent-decoded and carried as latin-1 "bytes-as-str" (PEP 3333), so
    non-UTF-8 bytes survive and the application decides the real encoding.
    """
    if raw[:1] == b"/":
        path, _, query = raw.partition(b"?")
    elif raw[:1] == b"*" or b"://" not in raw:  # asterisk-form, authority-form (CONNECT)
        return raw.decode("latin-1"), ""
    else:  # absolute-form, as sent to proxies; we serve it as its path
        try:
            url = httptools.parse_url(raw)
        except HttpParserError:
            raise HTTPError(400, "invalid request target") from None
        path, query = url.path or b"/", url.query or b""
    if b"#" in query:
        query = query.partition(b"#")[0]
    elif b"#" in path:
        path = path.partition(b"#")[0]
    if b"%" in path:
        path = unquote_to_bytes(path)
    return path.decode("latin-1"), query.decode("latin-1")


_date_cache: list[Any] = [0, b""]


def date_line() -> bytes:
    """The ``Date`` header line, formatted once per second rather than per response."""
    now = int(time())
    if _date_cache[0] != now:
        _date_cache[1] = b"Date: " + formatdate(now, usegmt=True).encode("ascii") + b"\r\n"
        _date_cache[0] = now
    return _date_cache[1]


def status_phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Unknown"


def error_body(status: int, reason: str | None) -> bytes:
    """The text/plain body of an error response: status, phrase, and our reason if any."""
    phrase = status_phrase(status)
    text = f"{status} {phrase}: {reason}\n" if reason else f"{status} {phrase}\n"
    return text.encode("utf-8", "replace")


def _map_parser_error(exc: HttpParserError) -> HTTPError:
    """Translate an llhttp error into the status we answer with."""
    reason = str(exc) or "bad request"
    if "PRI/Upgrade" in reason:  # "PRI * HTTP/2.0": an HTTP/2 prior-knowledge client
        return HTTPError(505, "HTTP/2 is not supported on this port")
    return HTTPError(400, reason)


# --------------------------------------------------------------------------- request side


class HTTPRequest:
    """One parsed request head, plus the state of its body as the parser delivers it."""

    __slots__ = (
        "body_buffer",
        "body_received",
        "chunked",
        "content_length",
        "continue_sent",
        "environ",
        "expect_continue",
        "http_version",
        "keep_alive",
        "message_complete",
        "method",
        "response_started",
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
        #: Whether the client allows another request on this connection after this one.
        self.keep_alive = keep_alive
        self.content_length = content_length
        self.chunked = chunked
        #: Client sent ``Expect: 100-continue`` (HTTP/1.1 with a body only).
        self.expect_continue = expect_continue
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

    @property
    def body_complete(self) -> bool:
        """True once the parser has seen the whole body (not necessarily read by the app)."""
        return self.message_complete


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

    def __init__(self, conn: HTTPConnection, request: HTTPRequest) -> None:
        self._conn = conn
        self._req = request

    def read(self, size: int | None = -1) -> bytes:
        req = self._req
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


class RequestParser:
    """httptools callbacks: turns fed bytes into queued :class:`HTTPRequest` objects.

    Callbacks raise :class:`HTTPError` for the limits llhttp does not enforce; httptools
    then stops and re-raises it as the ``__context__`` of an ``HttpParserCallbackError``.
    """

    __slots__ = (
        "_chunked",
        "_content_length",
        "_count",
        "_headers",
        "_limits",
        "_make_environ",
        "_msg",
        "_resume",
        "_size",
        "_url",
        "error",
        "in_message",
        "last",
        "parser",
        "ready",
        "stall",
        "stopped",
    )

    def __init__(self, limits: Limits, make_environ: Callable[[HTTPRequest, bytes, dict], None]):
        self._limits = limits
        self._make_environ = make_environ
        self.parser = httptools.HttpRequestParser(self)
        # A list, not a deque: an empty deque is ~700 bytes, held by every idle keep-alive
        # connection; the queue is short (at most what one recv carried) and popped at 0.
        self.ready: list[HTTPRequest] = []
        #: Sticky error: raised to whoever next needs bytes the parser cannot produce.
        self.error: HTTPError | None = None
        #: No further requests can come out of this connection (error, EOF, upgrade).
        self.stopped = False
        #: A message has begun and is not complete yet.
        self.in_message = False
        #: Bytes fed since a callback last reported progress (bounds httptools' buffering).
        self.stall = 0
        self.last: HTTPRequest | None = None
        self._msg: HTTPRequest | None = None
        self._resume: HTTPRequest | None = None
        self._url = b""
        self._headers: dict[str, str] = {}
        self._count = 0
        self._size = 0
        self._content_length: int | None = None
        self._chunked = False

    def feed(self, data: bytes | memoryview) -> None:
        """Parse ``data``; never raises protocol errors, records them in ``self.error``."""
        try:
            self.parser.feed_data(data)
        except HttpParserCallbackError as exc:
            cause = exc.__context__
            if not isinstance(cause, HTTPError):
                raise  # a bug in a callback, not a client error: let it be loud
            self.fail(cause)
        except HttpParserUpgrade as exc:
            self._upgrade(memoryview(data)[int(exc.args[0]) :])
        except HttpParserError as exc:
            self.fail(_map_parser_error(exc))
        else:
            if self.in_message:
                self.stall += len(data)
                if self.stall > self._limits.max_header_size + RECV_SIZE:
                    self.fail(HTTPError(431, "header field too large"))

    def _upgrade(self, rest: bytes | memoryview) -> None:
        """Upgrade/CONNECT request: answer it in HTTP/1.1 (we switch no protocol), then close.

        httptools makes llhttp skip the body of such a request and hand everything after
        the head back as "another protocol". But a client asking for an upgrade it may not
        get still sends an HTTP/1.1 body (``curl --http2 -d ...``: ``Upgrade: h2c`` on a
        POST), so we resume: a fresh parser is primed with a synthetic head carrying the
        same framing, and its body callbacks feed the upgrade request.
        """
        req = self.last
        if req is None:
            self.stopped = True
            return
        req.keep_alive = False
        if not (req.chunked or req.content_length) or self.stopped:
            self.stopped = True  # whatever follows is not HTTP/1.1 we could parse
            return
        req.message_complete = False
        self._resume = req
        self.parser = httptools.HttpRequestParser(self)
        framing = (
            b"Transfer-Encoding: chunked"
            if req.chunked
            else b"Content-Length: %d" % (req.content_length or 0)
        )
        self.feed(b"POST / HTTP/1.1\r\n" + framing + b"\r\n\r\n")
        self.feed(rest)

    def fail(self, error: HTTPError) -> None:
        if self.error is None:
            self.error = error
        self.stopped = True

    # -- httptools callbacks

    def on_message_begin(self) -> None:
        self.in_message = True
        self.stall = 0
        self._msg = None
        self._url = b""
        self._headers = {}
        self._count = self._size = 0
        self._content_length = None
        self._chunked = False

    def on_url(self, url: bytes) -> None:
        if self._url:
            url = self._url + url
        self._url = url
        limit = self._limits.max_request_line
        # The request line is "METHOD SP target SP HTTP/1.1"; the method is known by now.
        if len(url) + 13 > limit and len(self.parser.get_method()) + len(url) + 10 > limit:
            raise HTTPError(414, "request line too long")

    def on_header(self, name: bytes, value: bytes) -> None:
        self.stall = 0
        limits = self._limits
        self._count += 1
        self._size += len(name) + len(value) + 4
        if self._count > limits.max_header_count:
            raise HTTPError(431, "too many header fields")
        if self._size > limits.max_header_size:
            raise HTTPError(431, "header block too large")
        if self._msg is not None:
            return  # a chunked trailer: counted against the limits, otherwise ignored
        key = ENV_KEYS.get(name) or env_key(name)
        if key is None:
            return
        text = value.rstrip(b" \t").decode("latin-1")
        if key == "CONTENT_LENGTH":
            if not text.isdigit():  # llhttp validated it; this only guards int() below
                raise HTTPError(400, "invalid Content-Length")
            self._content_length = int(text)
        elif key == "HTTP_TRANSFER_ENCODING":
            if text.lower() != "chunked":
                raise HTTPError(501, "only the chunked transfer coding is supported")
            self._chunked = True
        headers = self._headers
        old = headers.get(key)
        if old is None:
            headers[key] = text
        elif key == "HTTP_HOST":  # RFC 9112 3.2; front-ends disagree on which one wins
            raise HTTPError(400, "more than one Host header")
        else:  # RFC 9110 5.3: repeated fields join with ","; Cookie pairs with "; " (9113)
            headers[key] = old + ("; " if key == "HTTP_COOKIE" else ",") + text

    def on_headers_complete(self) -> None:
        self.stall = 0
        if self._resume is not None:  # the synthetic head of an upgrade request's body
            self._msg, self._resume = self._resume, None
            return
        parser = self.parser
        version = _HTTP_VERSIONS.get(parser.get_http_version())
        if version is None:
            raise HTTPError(505, "only HTTP/1.0 and HTTP/1.1 are supported")
        raw_method = parser.get_method()
        method = _METHODS.get(raw_method) or raw_method.decode("ascii")
        length = self._content_length
        limit = self._limits.max_body_size
        if limit and length is not None and length > limit:
            raise HTTPError(413, "request body too large")
        keep_alive = parser.should_keep_alive()
        chunked = self._chunked
        if chunked and version == "HTTP/1.0":
            keep_alive = False  # RFC 9112 6.1: faulty framing, close after responding
        headers = self._headers
        expect = (
            (chunked or bool(length))
            and version == "HTTP/1.1"
            and headers.get("HTTP_EXPECT", "").lower() == "100-continue"
        )
        req = HTTPRequest(method, version, keep_alive, length, chunked, expect)
        self._make_environ(req, self._url, headers)
        self._msg = self.last = req
        self.ready.append(req)

    def on_body(self, data: bytes) -> None:
        self.stall = 0
        req = self._msg
        assert req is not None
        req.body_received += len(data)
        limit = self._limits.max_body_size
        if limit and req.body_received > limit:
            raise HTTPError(413, "request body too large")
        req.body_buffer += data

    def on_message_complete(self) -> None:
        self.in_message = False
        if self._msg is not None:
            self._msg.message_complete = True
            self._msg = None


# --------------------------------------------------------------------------- connection

_BASE_ENVIRONS: dict[tuple[str, str, str], dict[str, Any]] = {}


def base_environ(server_name: str, server_port: str, url_scheme: str) -> dict[str, Any]:
    """The environ keys that are the same for every request to one listener.

    Shared by its connections (never handed out: each request gets a copy), so that an
    idle keep-alive connection does not hold a dict of its own.
    """
    key = (server_name, server_port, url_scheme)
    base = _BASE_ENVIRONS.get(key)
    if base is None:
        base = {
            "SCRIPT_NAME": "",
            "SERVER_NAME": server_name,
            "SERVER_PORT": server_port,
            "wsgi.version": (1, 0),
            "wsgi.url_scheme": url_scheme,
            "wsgi.multithread": False,
            "wsgi.multiprocess": True,
            "wsgi.run_once": False,
            "wsgi.input_terminated": True,
            "wsgi.file_wrapper": FileWrapper,
        }
        if len(_BASE_ENVIRONS) < 64:
            _BASE_ENVIRONS[key] = base
    return base


class IdleTimer:
    """Ends the keep-alive waits of many connections with one periodic timer.

    A gevent ``Timeout`` per wait -- what a socket timeout costs -- is a Python object,
    a libev timer and ~2 µs of Python to start and cancel, for every request of a
    keep-alive connection, and ~0.7 KiB held by every idle one. Instead a waiting
    connection enters its deadline here (a dict store), and a timer that ticks every
    ``interval`` seconds, only while someone waits, cancels the waits whose deadline
    passed with a ``TimeoutError`` -- which the connection treats as any timeout: it
    re-checks its deadlines. A wait thus ends at most ``interval`` late.
    """

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self._deadlines: dict[HTTPConnection, float] = {}
        self._timer: Any = None

    @classmethod
    def for_limits(cls, limits: Limits) -> IdleTimer:
        """A timer at most a quarter of the shortest timeout (and 0.25 s) late."""
        timeouts = [t for t in (limits.keep_alive, limits.header_timeout) if t > 0]
        return cls(max(0.005, min([0.25, *(t / 4 for t in timeouts)])))

    def __len__(self) -> int:
        return len(self._deadlines)

    def watch(self, conn: HTTPConnection, deadline: float) -> None:
        self._deadlines[conn] = deadline
        if self._timer is None:
            timer = get_hub().loop.timer(self.interval, self.interval, ref=False)
            timer.start(self._tick)
            self._timer = timer

    def unwatch(self, conn: HTTPConnection) -> None:
        self._deadlines.pop(conn, None)

    def _tick(self) -> None:
        deadlines = self._deadlines
        if not deadlines:  # nobody waits: stop ticking until someone does
            self._timer.stop()
            self._timer.close()
            self._timer = None
            return
        now = monotonic()
        for conn in [c for c, deadline in deadlines.items() if deadline <= now]:
            del deadlines[conn]
            watcher = getattr(conn.sock, "_read_event", None)
            if watcher is not None:
                # Throws into the wait if it is still on (a callback of the hub's); if the
                # connection has moved on to another wait by then, that one re-checks its
                # own deadline and goes on waiting.
                get_hub().cancel_wait(watcher, TimeoutError("timed out"))


class HTTPConnection:
    """One accepted client socket: reads requests off it and writes responses to it.

    ``closing`` may be set at any time (by a draining server): every later response
    carries ``Connection: close`` and ``read_request`` stops handing out requests.
    ``idle`` is True exactly while waiting for the first byte of a new request, the only
    moment a connection can be closed without cutting anybody off.
    """

    def __init__(
        self,
        sock: socket.socket,
        address: Any,
        limits: Limits | None = None,
        *,
        url_scheme: str = "http",
        server_name: str = "localhost",
        server_port: str = "80",
        server_software: str | None = "ctxserver",
        idle_timer: IdleTimer | None = None,
    ) -> None:
        self.sock = sock
        self.address = address
        self.limits = limits = limits or Limits()
        #: Ends keep-alive waits without a Timeout per wait (a server passes one shared
        #: by its connections); without it each wait has a timeout of its own.
        self.idle_timer = idle_timer
        #: The timeout last set on the socket by _settimeout (None: not known).
        self._sock_timeout: float | None = None
        self.closing = False
        self.idle = False
        if isinstance(address, tuple) and len(address) >= 2:
            self.remote_addr, self.remote_port = str(address[0]), str(address[1])
        else:  # unix socket: the peer has no address
            self.remote_addr, self.remote_port = "", ""
        if sock.family in (socket.AF_INET, socket.AF_INET6):
            # Without it Nagle + delayed ACK stall keep-alive clients ~40 ms per request.
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._url_scheme = url_scheme
        self._server_name = server_name
        self._server_port = str(server_port)
        self.server_line = (
            b"Server: " + server_software.encode("latin-1") + b"\r\n" if server_software else b""
        )
        self.keep_alive_allowed = limits.keep_alive > 0
        self._environ_base = base_environ(server_name, self._server_port, url_scheme)
        self._parser = RequestParser(limits, self._make_environ)
        self._current: HTTPRequest | None = None
        self._served = 0
        self._accepted_at = monotonic()
        self._eof = False
        self._closed = False
        #: Closing because the connection sat idle: no response of ours can be in flight
        #: and no client bytes are unread, so close() need not linger (which would hold
        #: the --worker-connections slot up to LINGER_SECONDS longer for nothing).
        self._idle_expired = False
        #: While closing, an idle connection still waits for a request until then.
        self._grace_until = 0.0

    # -- reading requests

    def read_request(self) -> HTTPRequest | None:
        """Return the next request, or None when the connection should just be closed.

        None means: the peer closed cleanly, the keep-alive idle time ran out, the server
        is draining, or the previous request's unread body was too large (or awaited a
        100-continue nobody sent) to skip. Raises :class:`HTTPError` on bad input or when
        the head does not arrive within ``header_timeout`` (408).
        """
        current = self._current
        if current is not None:
            self._current = None
            if not current.message_complete and not self._discard_body(current):
                return None
        ready = self._parser.ready
        if not ready and not self._await_head():
            return None
        request = ready.pop(0)
        self._current = request
        self._served += 1
        return request

    def _await_head(self) -> bool:
        """Receive until a request head is queued; False for a quiet close."""
        parser = self._parser
        limits = self.limits
        if self._served:
            idle_deadline = monotonic() + limits.keep_alive
            head_deadline = None
        else:  # first request: the whole head is due within header_timeout of accept
            idle_deadline = head_deadline = self._accepted_at + limits.header_timeout
        while not parser.ready:
            if parser.error is not None:
                raise parser.error
            if parser.stopped or self._eof:
                return False
            if parser.in_message:
                if head_deadline is None:
                    head_deadline = monotonic() + limits.header_timeout
                timeout = head_deadline - monotonic()
                if timeout <= 0:
                    raise HTTPError(408, "request head not received in time")
            else:
                timeout = idle_deadline - monotonic()
                if self.closing:  # draining: wait no longer than close_when_idle's grace
                    timeout = min(timeout, self._grace_until - monotonic())
                if timeout <= 0:
                    self._idle_expired = True
                    return False
                self.idle = True
            try:
                self._recv(timeout, idle=self.idle and self._served > 0)
            except TimeoutError:
                continue  # the deadlines above decide what it means
            finally:
                self.idle = False
        return True

    def _recv(self, timeout: float, idle: bool = False) -> int:
        """One recv fed to the parser; 0 on EOF. Raises TimeoutError.

        A fresh bytes object per recv rather than a per-connection buffer: an idle
        keep-alive connection then holds no receive memory at all.

        ``idle``: waiting for the next request of a keep-alive connection. Its client has
        nearly always not sent it yet (it needed our response first), so we wait for the
        socket to become readable before the recv instead of after a recv that failed
        with EAGAIN: one syscall and one raised exception less per request. The socket's
        own read watcher is used, so close_when_idle()'s shutdown cancels this wait as it
        cancels a recv; the wait's deadline is kept by ``idle_timer`` when there is one.
        """
        sock = self.sock
        watcher = getattr(sock, "_read_event", None) if idle else None  # gevent's socket
        idle_timer = self.idle_timer
        try:
            if watcher is not None and idle_timer is not None:
                # The idle timer keeps the deadline, for the wait and for the recv (which
                # waits on the same watcher if it ever meets EAGAIN); the socket's own
                # timeout is left as it is: no settimeout() per request.
                idle_timer.watch(self, monotonic() + timeout)
                try:
                    wait_on_watcher(watcher, None)
                    data = sock.recv(RECV_SIZE)
                finally:
                    idle_timer.unwatch(self)
            else:
                self._settimeout(timeout)
                if watcher is not None:
                    wait_on_watcher(watcher, timeout)
                data = sock.recv(RECV_SIZE)
        except TimeoutError:
            raise
        except OSError:  # reset, or shut down by close_when_idle()
            data = b""
        if data:
            self._parser.feed(data)
        else:
            self._eof = True
        return len(data)

    def receive_body(self, req: HTTPRequest) -> None:
        """Receive more body bytes for ``req`` (called by RequestBody when it runs dry)."""
        if req.expect_continue and not req.continue_sent and not req.response_started:
            req.continue_sent = True
            self.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")
        parser = self._parser
        if parser.error is not None:
            raise parser.error
        if self._eof or parser.stopped:
            raise ClientDisconnected("client disconnected before sending the whole body")
        try:
            n = self._recv(self.limits.header_timeout)
        except TimeoutError:
            raise HTTPError(408, "request body not received in time") from None
        if not n:
            raise ClientDisconnected("client disconnected before sending the whole body")

    def _discard_body(self, req: HTTPRequest) -> bool:
        """Skip the unread rest of ``req``'s body; False if not worth it (then close)."""
        if req.expect_continue and not req.continue_sent:
            return False  # the client waits for our go-ahead; the body will never come
        length = req.content_length
        if length is not None and length - req.body_received > DISCARD_LIMIT:
            return False
        budget = DISCARD_LIMIT
        timeout = self.limits.header_timeout
        parser = self._parser
        while not req.message_complete:
            req.body_buffer.clear()
            if parser.error is not None or parser.stopped or budget <= 0:
                return False
            try:
                n = self._recv(timeout)
            except TimeoutError:
                return False
            if not n:
                return False
            budget -= n
        req.body_buffer.clear()
        return True

    def _make_environ(self, req: HTTPRequest, url: bytes, headers: dict[str, str]) -> None:
        path, query = split_target(url)
        raw_uri = url.decode("latin-1")
        # A copy of the connection's constant part (a fast clone of a dict) and the
        # per-request keys on top: ~40 % cheaper than one dict display with all of them.
        environ = self._environ_base.copy()
        environ["REMOTE_ADDR"] = self.remote_addr
        environ["REMOTE_PORT"] = self.remote_port
        environ["REQUEST_METHOD"] = req.method
        environ["PATH_INFO"] = path
        environ["QUERY_STRING"] = query
        environ["RAW_URI"] = environ["REQUEST_URI"] = raw_uri
        environ["SERVER_PROTOCOL"] = req.http_version
        environ["wsgi.input"] = EMPTY_BODY if req.message_complete else RequestBody(self, req)
        environ["wsgi.errors"] = sys.stderr
        environ.update(headers)
        req.environ = environ

    # -- writing

    def _settimeout(self, timeout: float) -> None:
        """``sock.settimeout`` unless it is set already (gevent's is Python code).

        Every timeout change of the socket while requests are served must come through
        here, or the cached value lies (only ``_linger``, at close, sets it directly).
        """
        if timeout != self._sock_timeout:
            self.sock.settimeout(timeout)
            self._sock_timeout = timeout

    def sendall(self, data: bytes) -> None:
        sock = self.sock
        try:
            self._settimeout(self.limits.send_timeout)
            # One plain send() nearly always takes a whole response; gevent's sendall()
            # would first ask the kernel for SO_SNDBUF (a syscall) on every call.
            sent = sock.send(data)
            if sent < len(data):
                sock.sendall(memoryview(data)[sent:])
        except OSError as exc:  # includes TimeoutError: the client stopped reading
            raise ClientDisconnected(f"client disconnected: {exc}") from exc

    def send_error(self, status: int, reason: str | None = None) -> int:
        """Answer with a short text/plain ``status`` and ``Connection: close``.

        For protocol errors and the caller's 500. Returns the body bytes sent (0 when the
        client is already gone); never raises for a dead socket.
        """
        self.closing = True
        phrase = status_phrase(status)
        body = error_body(status, reason)
        head = b"".join(
            (
                b"HTTP/1.1 %d %s\r\n" % (status, phrase.encode("latin-1")),
                b"Content-Type: text/plain; charset=utf-8\r\n",
                b"Content-Length: %d\r\n" % len(body),
                b"Connection: close\r\n",
                date_line(),
                self.server_line,
                b"\r\n",
            )
        )
        current = self._current
        if current is not None and current.method == "HEAD":
            body = b""
        try:
            self.sendall(head + body)
        except ClientDisconnected:
            return 0
        return len(body)

    def sendfile(self, fd: int, offset: int, count: int) -> int:
        """os.sendfile on the non-blocking gevent socket, yielding to the hub on EAGAIN."""
        sockfd = self.sock.fileno()
        timeout = self.limits.send_timeout
        sent = 0
        try:
            while sent < count:
                try:
                    n = os.sendfile(sockfd, fd, offset + sent, count - sent)
                except BlockingIOError:
                    wait_write(sockfd, timeout=timeout)
                    continue
                if n == 0:  # the file shrank under us
                    break
                sent += n
        except OSError as exc:  # includes the timeout of a client that stopped reading
            raise ClientDisconnected(f"client disconnected: {exc}") from exc
        return sent

    # -- closing

    def close_when_idle(self, grace: float = 0.0) -> None:
        """Mark the connection closing; if it is waiting for a next request, end it now.

        With ``grace`` it may wait that many seconds more: a request arriving meanwhile
        (a busy keep-alive client's next one is usually on its way already) is still
        served, with ``Connection: close``, instead of being cut off unanswered. A read
        already waiting is not woken at the end of the grace: call again without one.
        """
        self.closing = True
        self._grace_until = monotonic() + grace
        if grace <= 0 and self.idle and not self._closed:
            with contextlib.suppress(OSError):
                self.sock.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        """Close the socket, lingering briefly so our last response is not reset.

        Closing a socket with unread input makes the kernel send RST, which can destroy
        the response still in flight (e.g. a 413 while the client keeps uploading). So
        we half-close, then read and drop input until the client closes too, within
        ``LINGER_SECONDS``/``LINGER_BYTES``.
        """
        if self._closed:
            return
        self._closed = True
        sock = self.sock
        try:
            if not self._eof and not self._idle_expired:
                sock.shutdown(socket.SHUT_WR)
                self._linger(sock)
        except OSError:
            pass
        finally:
            sock.close()

    def _linger(self, sock: socket.socket) -> None:
        deadline = monotonic() + min(LINGER_SECONDS, self.limits.header_timeout)
        budget = LINGER_BYTES
        while budget > 0:
            timeout = deadline - monotonic()
            if timeout <= 0:
                return
            sock.settimeout(timeout)
            try:
                data = sock.recv(RECV_SIZE)
            except OSError:  # timeout or reset
                return
            if not data:
                return
            budget -= len(data)


# --------------------------------------------------------------------------- response side

_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+").fullmatch
_STATUS = re.compile(r"([1-9][0-9][0-9])(?: ([^\x00\r\n]*))?").fullmatch

# Framing modes of a response body.
_NONE, _LENGTH, _CHUNKED, _CLOSE = range(4)


#: Status strings already validated, and what they parse to. Apps use a handful of them;
#: bounded all the same, since an app could build one per request.
_STATUS_CACHE: dict[str, tuple[int, bytes]] = {}
_STATUS_CACHE_MAX = 256


def _parse_status(status: str) -> tuple[int, bytes]:
    """Validate a WSGI status and return (code, status line bytes)."""
    if type(status) is not str:
        raise TypeError(f"status must be str, not {type(status).__name__}")
    cached = _STATUS_CACHE.get(status)
    if cached is not None:
        return cached
    match = _STATUS(status)
    if match is None:
        raise ValueError(f"invalid status {status!r}")
    code = int(match[1])
    text = f"{code} {status_phrase(code)}" if match[2] is None else status
    parsed = code, b"HTTP/1.1 " + text.encode("latin-1") + b"\r\n"
    if len(_STATUS_CACHE) < _STATUS_CACHE_MAX:
        _STATUS_CACHE[status] = parsed
    return parsed


# What a response header name means to the server; anything else is passed on as it is.
_PLAIN, _CONTENT_LENGTH, _CONNECTION, _TRANSFER_ENCODING, _DATE, _SERVER = range(6)
_SPECIAL_NAMES = {"content-length": _CONTENT_LENGTH, "connection": _CONNECTION,
                  "transfer-encoding": _TRANSFER_ENCODING, "date": _DATE, "server": _SERVER}
#: Header names already validated (a valid token), and their kind. Names repeat on every
#: response; bounded all the same.
_NAME_KINDS: dict[str, int] = {}
_NAME_KINDS_MAX = 512


def _name_kind(name: str) -> int:
    """Validate a header name (known to be a str) and classify it."""
    kind = _NAME_KINDS.get(name)
    if kind is not None:
        return kind
    if not _TOKEN(name):
        raise ValueError(f"invalid header name {name!r}")
    kind = _SPECIAL_NAMES.get(name.lower(), _PLAIN)
    if len(_NAME_KINDS) < _NAME_KINDS_MAX:
        _NAME_KINDS[name] = kind
    return kind


def _encode_headers(
    headers: Iterable[tuple[str, str]],
) -> tuple[bytes, int | None, bool, bool, bool]:
    """Validate application headers and encode them.

    Returns (header block, Content-Length or None, app asked to close, has Date, has
    Server). Hop-by-hop ``Connection`` and ``Transfer-Encoding`` headers are the
    server's business: ``Connection: close`` is honoured, ``Transfer-Encoding: chunked``
    is left to our own framing; both are dropped from the block.
    """
    lines = []
    length = None
    close = has_date = has_server = False
    for name, value in headers:
        if type(name) is not str or type(value) is not str:
            raise TypeError(f"header {name!r}: names and values must be str")
        kind = _NAME_KINDS.get(name)
        if kind is None:
            kind = _name_kind(name)
        if "\n" in value or "\r" in value or "\x00" in value:
            raise ValueError(f"invalid character in header {name!r}")
        if kind == _PLAIN:
            lines.append(f"{name}: {value}\r\n")
        elif kind == _CONTENT_LENGTH:
            if not value.isdigit() or not value.isascii():
                raise ValueError(f"invalid Content-Length {value!r}")
            if length is not None and int(value) != length:
                raise ValueError("conflicting Content-Length headers")
            length = int(value)
        elif kind == _CONNECTION:
            close = close or "close" in (t.strip() for t in value.lower().split(","))
        elif kind == _TRANSFER_ENCODING:
            if value.strip().lower() != "chunked":
                raise ValueError(f"unsupported Transfer-Encoding {value!r}")
        else:
            if kind == _DATE:
                has_date = True
            else:
                has_server = True
            lines.append(f"{name}: {value}\r\n")
    if length is not None:
        lines.append(f"Content-Length: {length}\r\n")
    return "".join(lines).encode("latin-1"), length, close, has_date, has_server


class HTTPResponse:
    """The response to one :class:`HTTPRequest`: PEP 3333 ``start_response`` and friends.

    Framing: the application's Content-Length when given (never more bytes than it:
    the excess is dropped and the connection closed); else a length computed from a
    list/tuple body or an empty body; else chunked for HTTP/1.1; else close-delimited.
    HEAD, 1xx, 204 and 304 responses carry no body. The head is delayed until the first
    non-empty body chunk and sent with it in one ``sendall``.
    """

    __slots__ = (
        "_app_close",
        "_conn",
        "_has_date",
        "_has_server",
        "_header_block",
        "_length",
        "_length_hint",
        "_mode",
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
        #: Status of the response (0 until start_response or send_error).
        self.status_code = 0
        #: Body bytes written to the socket (excluding head and chunk framing).
        self.bytes_sent = 0
        self.headers_sent = False
        #: Whether the connection may serve another request after this one.
        self.keep_alive = request.keep_alive
        self._status_line: bytes | None = None
        self._header_block = b""
        self._length: int | None = None
        self._length_hint: int | None = None
        self._app_close = self._has_date = self._has_server = False
        self._mode = _NONE

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
        code, line = _parse_status(status)
        block, length, close, has_date, has_server = _encode_headers(headers)
        self.status_code = code
        self._status_line = line
        self._header_block = block
        self._length = length
        self._app_close = close
        self._has_date = has_date
        self._has_server = has_server
        return self.write

    def write(self, data: bytes) -> None:
        """PEP 3333 ``write`` callable; also used for every chunk of the app iterable."""
        if type(data) is not bytes:
            if isinstance(data, str):
                raise TypeError("response body must be bytes, not str")
            data = bytes(data)
        if not self.headers_sent:
            self._send_head(data, final=False)
            return
        if not data:
            return
        mode = self._mode
        if mode == _CHUNKED:
            self._conn.sendall(b"%x\r\n%b\r\n" % (len(data), data))
        elif mode == _LENGTH:
            data = self._clip(data)
            if data:
                self._conn.sendall(data)
        elif mode == _CLOSE:
            self._conn.sendall(data)
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
        """End the body: send the head if nothing was written, the last chunk if chunked."""
        if not self.headers_sent:
            self._send_head(b"", final=True)
        elif self._mode == _CHUNKED:
            self._conn.sendall(b"0\r\n\r\n")
        mode = self._mode
        if mode == _CLOSE or (mode == _LENGTH and self.bytes_sent < (self._length or 0)):
            self.keep_alive = False  # the client can only find the end by our closing

    def send_error(self, status: int, reason: str | None = None, *, close: bool = True) -> None:
        """Answer with a short text/plain error instead (only before the head was sent).

        ``close=True`` (protocol errors: the stream may be out of sync) goes through
        :meth:`HTTPConnection.send_error` and ends the connection. ``close=False`` is for
        an application that failed cleanly before responding: the request was framed
        correctly, so the connection may be kept alive under the usual rules -- which is
        also what lets a keep-alive client prove the next request sees nothing of the
        failed one.
        """
        if self.headers_sent:
            raise RuntimeError("response already started")
        if close:
            self.headers_sent = True
            self._request.response_started = True
            self.status_code = status
            self.keep_alive = False
            self.bytes_sent = self._conn.send_error(status, reason)
            return
        self.status_code = status
        phrase = status_phrase(status).encode("latin-1")
        self._status_line = b"HTTP/1.1 %d %s\r\n" % (status, phrase)
        self._header_block = b"Content-Type: text/plain; charset=utf-8\r\n"
        self._length = self._length_hint = None
        self._app_close = self._has_date = self._has_server = False
        self._send_head(error_body(status, reason), final=True)
        self.finish()

    # -- internals

    def _clip(self, data: bytes) -> bytes:
        """Never send more than the announced Content-Length; close if the app tried."""
        remaining = (self._length or 0) - self.bytes_sent
        if len(data) > remaining:
            self.keep_alive = False
            return data[:remaining]
        return data

    def _send_head(self, data: bytes, *, final: bool) -> None:
        """Decide the framing, then send the head together with the first chunk."""
        if self._status_line is None:
            raise RuntimeError("start_response() was not called before the body")
        req = self._request
        conn = self._conn
        code = self.status_code
        keep_alive = (
            self.keep_alive
            and conn.keep_alive_allowed
            and not conn.closing
            and not self._app_close
            and not (req.expect_continue and not req.continue_sent and not req.message_complete)
        )
        length = self._length
        added_length = None
        if code < 200 or code in (204, 304):
            mode = _NONE
            keep_alive = keep_alive and code >= 200  # an app-sent 1xx breaks the exchange
        else:
            if length is None:
                added_length = length = len(data) if final else self._length_hint
            if req.method == "HEAD":
                mode = _NONE
            elif length is not None:
                mode = _LENGTH
            elif req.http_version == "HTTP/1.1":
                mode = _CHUNKED
            else:
                mode = _CLOSE
                keep_alive = False
        self._mode = mode
        self._length = length
        parts = [self._status_line, self._header_block]
        if added_length is not None:
            parts.append(b"Content-Length: %d\r\n" % added_length)
        if mode == _CHUNKED:
            parts.append(b"Transfer-Encoding: chunked\r\n")
        if not self._has_date:
            parts.append(date_line())
        if not self._has_server:
            parts.append(conn.server_line)
        if not keep_alive:
            parts.append(b"Connection: close\r\n")
        elif req.http_version == "HTTP/1.0":
            parts.append(b"Connection: keep-alive\r\n")
        parts.append(b"\r\n")
        if data and mode != _NONE:
            if mode == _LENGTH:
                data = self._clip(data)
                keep_alive = keep_alive and self.keep_alive
            if mode == _CHUNKED:
                parts.append(b"%x\r\n%b\r\n" % (len(data), data))
            else:
                parts.append(data)
        else:
            data = b""
        self.keep_alive = keep_alive
        self.headers_sent = True
        req.response_started = True
        if len(data) > COALESCE_LIMIT and mode != _CHUNKED:
            body = parts.pop()
            conn.sendall(b"".join(parts))
            conn.sendall(body)
        else:
            conn.sendall(b"".join(parts))
        self.bytes_sent += len(data)

    def _sendfile(self, wrapper: FileWrapper) -> bool:
        """Send a regular file with os.sendfile; False to fall back to iterating it."""
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
        if self._mode != _LENGTH:
            return True  # HEAD / no-body status: the head was all there was to send
        count = min(size, self._length or 0)
        sent = 0
        try:
            sent = self._conn.sendfile(fd, offset, count)
        finally:
            self.bytes_sent += sent
            filelike.seek(offset + sent)
        return True
