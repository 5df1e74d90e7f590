"""The request parser: bytes in, queued :class:`HTTPRequest` objects out, limits enforced.

One ``httptools.HttpRequestParser`` (llhttp) per connection. Bytes are fed only when
someone needs more (the next request head, or more body), so memory is bounded by one
receive buffer plus what the application has not read yet. A request is queued as soon
as its head is complete (the application can start before the body arrived); requests
pipelined behind it are queued in order.

A parse error is *sticky*: it is recorded and raised to whoever next needs bytes the
parser could not produce -- the body reader of the request it belongs to, or the next
:meth:`HTTPConnection.read_request`. Requests that were completely parsed before the bad
bytes are still answered first, in order.

What llhttp (strict mode, the default) rejects by itself, all answered 400: malformed
request lines and methods, HTTP versions other than 0.9/1.0/1.1/2.0, invalid header-name
characters, CTLs in header values, obs-fold, bare CR/LF, Content-Length together with
Transfer-Encoding, duplicate/negative/non-numeric/overflowing Content-Length, bad or
overflowing chunk sizes, ``chunked`` not last in Transfer-Encoding, raw 8-bit bytes in
the request target, and the HTTP/2 preface (which we map to 505). What this module checks
on top: URI length (414), header block size and count (431), body size (413),
Transfer-Encoding codings other than ``chunked`` (501), HTTP/0.9 and HTTP/2.0 request
lines (505), more than one Host header (400), the ``*`` target with any method but
OPTIONS (400, RFC 9112 3.2.4), and header names containing ``_`` (dropped; see
:func:`server.http.environ.env_key`). Timeouts (408) are the connection's. Deliberately
lenient: a missing Host header is accepted.

Where llhttp is stricter than RFC 9112, and what we do about it:

- **Methods.** llhttp knows a fixed list; RFC 9110 9.1 allows any token. A request whose
  method llhttp refused is retried (:meth:`RequestParser._retry_method`): if the method is
  a token by gunicorn's conventional rule (upper case, 3 to 20 characters, see
  :func:`conventional_method`), a fresh llhttp is fed the same bytes with ``GET`` in its
  place and the app gets the real method. This costs nothing on the path of known
  methods (it runs only after llhttp's error), and applies when the request begins a
  receive (what every non-pipelining client does); an unknown method pipelined behind
  another request in the same receive is still a 400.
- **Chunk extensions.** RFC 9112 7.1.1 allows BWS around ``;`` and ``=`` (``5 ; a = b``);
  llhttp refuses it, and its one leniency near it (``lenient_spaces_after_chunk_size``)
  would also admit ``0 \r\n`` -- whitespace with no extension, which gunicorn's corpus
  (``invalid/chunked_09``) and the RFC refuse -- because llhttp cannot tell the two apart.
  A strict chunk-size line is worth more than extensions nobody sends: 400 (corpus cases
  ``invalid/057``, ``invalid/058``).
"""

from __future__ import annotations

import re
from collections.abc import Callable

import httptools
from httptools import (
    HttpParserCallbackError,
    HttpParserError,
    HttpParserInvalidMethodError,
    HttpParserUpgrade,
)

from .environ import ENV_KEYS, env_key
from .errors import HTTPError
from .limits import RECV_SIZE, Limits
from .request import HTTPRequest

__all__ = ["RequestParser", "conventional_method"]

_HTTP_VERSIONS = {"1.1": "HTTP/1.1", "1.0": "HTTP/1.0"}
_METHODS = {
    m.encode(): m
    for m in ("GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "CONNECT", "TRACE")
}


#: RFC 9110 5.6.2 tchar without lower case and "#", 3 to 20 of them: gunicorn's rule for a
#: method (what every IANA-registered method satisfies). Lower case is refused because
#: front-ends disagree on whether ``get`` is ``GET``.
_CONVENTIONAL_METHOD = re.compile(rb"[!$%&'*+\-.^_`|~0-9A-Z]{3,20}").fullmatch
#: The longest method there is: the conventional rule's 20 (llhttp's longest is 16).
_MAX_METHOD = 20
#: What llhttp is shown instead of a method it does not know: framing is the same for
#: every method but CONNECT, which llhttp treats as an upgrade.
_STAND_IN_METHOD = b"GET"


def conventional_method(method: bytes) -> bool:
    """Whether a method llhttp does not know is one we pass to the app (it may 405/501).

    ``PROXY`` is not: a PROXY protocol header where none is allowed is a bad request.
    """
    return _CONVENTIONAL_METHOD(method) is not None and method != b"PROXY"


def new_llhttp(protocol: object) -> httptools.HttpRequestParser:
    """An llhttp request parser in its strict mode (no leniency flag: see the docstring)."""
    return httptools.HttpRequestParser(protocol)


def _map_parser_error(exc: HttpParserError) -> HTTPError:
    """Translate an llhttp error into the status we answer with."""
    reason = str(exc) or "bad request"
    if "PRI/Upgrade" in reason:  # "PRI * HTTP/2.0": an HTTP/2 prior-knowledge client
        return HTTPError(505, "HTTP/2 is not supported on this port")
    return HTTPError(400, reason)


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
        "_method",
        "_msg",
        "_resume",
        "_size",
        "_url",
        "begun",
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
        self.parser = new_llhttp(self)
        # A list, not a deque: an empty deque already allocates a block of 64 slots, held
        # by every idle keep-alive connection (bench/results/server.md: RSS per idle one);
        # the queue is short (at most what one recv carried) and popped at 0.
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
        #: The real method of the current message, when llhttp was shown a stand-in.
        self._method: bytes | None = None
        #: Messages begun during the current feed (see _retry_method).
        self.begun = 0

    def feed(self, data: bytes | memoryview) -> None:
        """Parse ``data``; never raises protocol errors, records them in ``self.error``."""
        starts_message = not self.in_message
        self.begun = 0
        # The two paths that feed a fresh parser (retry, upgrade) run after the ``except``
        # block, never inside it: an exception raised while another is being handled gets
        # that one as its __context__, which would hide the HTTPError a callback of the
        # nested feed raised (a 414 on a retried method became "internal error").
        refused: HttpParserInvalidMethodError | None = None
        upgrade_at = -1
        try:
            self.parser.feed_data(data)
        except HttpParserInvalidMethodError as exc:
            refused = exc
        except HttpParserCallbackError as exc:
            cause = exc.__context__
            if not isinstance(cause, HTTPError):
                raise  # a bug in a callback, not a client error: let it be loud
            self.fail(cause)
        except HttpParserUpgrade as exc:
            upgrade_at = int(exc.args[0])
        except HttpParserError as exc:
            self.fail(_map_parser_error(exc))
        else:
            if self.in_message:
                self.stall += len(data)
                if self.stall > self._limits.max_header_size + RECV_SIZE:
                    self.fail(HTTPError(431, "header field too large"))
        if refused is not None:
            if not (starts_message and self.begun == 1 and self._retry_method(data)):
                self.fail(_map_parser_error(refused))
        elif upgrade_at >= 0:
            self._upgrade(memoryview(data)[upgrade_at:])

    def _retry_method(self, data: bytes | memoryview) -> bool:
        """llhttp refused the method of a request that began this feed: if it is one we
        accept, parse the same bytes again with a stand-in method. False: refuse it."""
        raw = bytes(data)
        start = len(raw) - len(raw.lstrip(b"\r\n"))  # llhttp skips empty lines first
        method, sep, _ = raw[start : start + 21].partition(b" ")
        if not sep or not conventional_method(method):
            return False
        self.parser = new_llhttp(self)  # the old one is stuck in its error state
        self.in_message = False
        self._method = method  # taken by on_headers_complete
        self.feed(raw[:start] + _STAND_IN_METHOD + raw[start + len(method) :])
        return True

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
        req.upgrade = True
        if not (req.chunked or req.content_length) or self.stopped:
            self.stopped = True  # whatever follows is not HTTP/1.1 we could parse
            return
        req.message_complete = False
        self._resume = req
        self.parser = new_llhttp(self)
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
        self.begun += 1
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
        # The request line is "METHOD SP target SP HTTP/1.1"; the method is known by now
        # (the real one, not the stand-in llhttp was shown: see _retry_method). Only a
        # target within a longest method of the limit needs the exact count.
        if len(url) + _MAX_METHOD + 10 > limit and \
                len(self._method or self.parser.get_method()) + len(url) + 10 > limit:
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
        raw_method = self._method
        if raw_method is None:
            raw_method = parser.get_method()
        else:
            self._method = None
        method = _METHODS.get(raw_method) or raw_method.decode("ascii")
        if self._url == b"*" and method != "OPTIONS":
            raise HTTPError(400, "the * target is for OPTIONS only (RFC 9112 3.2.4)")
        length = self._content_length
        limit = self._limits.max_body_size
        if limit and length is not None and length > limit:
            raise HTTPError(413, "request body too large")
        chunked = self._chunked
        headers = self._headers
        expect = (
            (chunked or bool(length))
            and version == "HTTP/1.1"
            and headers.get("HTTP_EXPECT", "").lower() == "100-continue"
        )
        req = HTTPRequest(method, version, parser.should_keep_alive(), length, chunked, expect)
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


