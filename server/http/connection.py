"""One client connection: requests read off its transport through the parser, in order.

:class:`HTTPConnection` owns the connection's protocol state -- the parser, the request
being served, the deadlines of the next head, whether it is closing -- and leaves the
socket to its :class:`~server.http.transport.Transport`. The keep-alive loop that ties
it to an application is :mod:`server.handler`; the response writer is
:mod:`server.http.response`.
"""

from __future__ import annotations

import socket
from collections.abc import Iterable
from time import monotonic
from typing import Any

from .environ import base_environ, build_environ
from .errors import ClientDisconnected, HTTPError, error_response
from .forwarded import TrustedPeers, resolve_client, resolve_scheme
from .headers import server_line
from .limits import Limits
from .parser import RequestParser
from .request import HTTPRequest
from .transport import IdleTimer, Transport

__all__ = ["DISCARD_LIMIT", "HTTPConnection"]

#: Unread request body we are willing to read and throw away to keep a connection alive.
DISCARD_LIMIT = 65536


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
        server_name: str = "localhost",
        server_port: str = "80",
        server_software: str | None = "ctxserver",
        idle_timer: IdleTimer | None = None,
        url_scheme: str = "http",
        root_path: str = "",
        forwarders: TrustedPeers | None = None,
    ) -> None:
        # Per-connection state
        self.address = address
        self.limits = limits = limits or Limits()
        #: The socket side: every byte in and out goes through it.
        self.transport = Transport(sock, limits, idle_timer)
        if isinstance(address, tuple) and len(address) >= 2:
            self.remote_addr, self.remote_port = str(address[0]), str(address[1])
        else:  # unix socket: the peer has no address
            self.remote_addr, self.remote_port = "", ""
        self.server_line = server_line(server_software)
        self.keep_alive_allowed = limits.keep_alive > 0
        self._environ_base = base_environ(server_name, str(server_port), url_scheme, root_path)
        #: Set when the peer is a trusted proxy (``--forwarded-allow-ips``): then its
        #: forwarded headers say who the client is, walking the chain through these.
        self._forwarders = forwarders
        self._parser = RequestParser(limits, self._make_environ)
        self._accepted_at = monotonic()
        self._served = 0
        # Per-request state
        #: The request handed out last; its unread body is skipped before the next one.
        self._current: HTTPRequest | None = None
        #: Waiting for the first byte of a new request (see the class docstring).
        self.idle = False
        # Closing
        self.closing = False
        #: While closing, an idle connection still waits for a request until then
        #: (monotonic; the handler's drain deadline).
        self._drain_deadline = 0.0
        #: Closing because the connection sat idle: no response of ours can be in flight
        #: and no client bytes are unread, so close() need not linger (which would hold
        #: the --worker-connections slot up to LINGER_SECONDS longer for nothing).
        self._idle_expired = False

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
            if parser.stopped or self.transport.eof:
                return False
            if parser.in_message:
                if head_deadline is None:
                    head_deadline = monotonic() + limits.header_timeout
                timeout = head_deadline - monotonic()
                if timeout <= 0:
                    raise HTTPError(408, "request head not received in time")
            else:
                timeout = idle_deadline - monotonic()
                if self.closing:  # draining: wait no longer than the drain deadline
                    timeout = min(timeout, self._drain_deadline - monotonic())
                if timeout <= 0:
                    self._idle_expired = True
                    return False
                self.idle = True
            try:
                self._receive(timeout, idle=self.idle and self._served > 0)
            except TimeoutError:
                continue  # the deadlines above decide what it means
            finally:
                self.idle = False
        return True

    def _receive(self, timeout: float, idle: bool = False) -> int:
        """One recv fed to the parser; 0 on EOF. Raises TimeoutError (see Transport.recv)."""
        data = self.transport.recv(timeout, idle=idle)
        if data:
            self._parser.feed(data)
        return len(data)

    def receive_body(self, req: HTTPRequest) -> None:
        """Receive more body bytes for ``req`` (called by RequestBody when it runs dry)."""
        if req.expect_continue and not req.continue_sent and not req.response_started:
            req.continue_sent = True
            self.transport.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")
        parser = self._parser
        if parser.error is not None:
            raise parser.error
        if self.transport.eof or parser.stopped:
            raise ClientDisconnected("client disconnected before sending the whole body")
        try:
            n = self._receive(self.limits.header_timeout)
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
                n = self._receive(timeout)
            except TimeoutError:
                return False
            if not n:
                return False
            budget -= n
        req.body_buffer.clear()
        return True

    def _make_environ(self, req: HTTPRequest, url: bytes, headers: dict[str, str]) -> None:
        """The parser's callback for a complete head: give the request its environ."""
        environ = build_environ(
            self._environ_base, self.remote_addr, self.remote_port, req, url, headers, self
        )
        if self._forwarders is not None:
            self._apply_forwarded(environ, headers, self._forwarders)
        req.environ = environ

    @staticmethod
    def _apply_forwarded(environ: dict[str, Any], headers: dict[str, str],
                         trusted: TrustedPeers) -> None:
        """A trusted proxy's word on the client: into this request's environ only (the
        connection's own address is never changed, so nothing carries to the next)."""
        scheme = resolve_scheme(headers)
        if scheme is not None:
            environ["wsgi.url_scheme"] = scheme
        client = resolve_client(headers, trusted)
        if client is not None:
            environ["REMOTE_ADDR"] = client[0]
            environ["REMOTE_PORT"] = client[1] or "0"

    # -- writing

    def send_error(self, status: int, reason: str | None = None,
                   headers: Iterable[tuple[str, str]] = ()) -> int:
        """Answer with a short text/plain ``status`` and ``Connection: close``.

        For protocol errors and the caller's 500. Returns the body bytes sent (0 when the
        client is already gone); never raises for a dead socket.
        """
        self.closing = True
        extra = b"".join(b"%s: %s\r\n" % (name.encode("latin-1"), value.encode("latin-1"))
                         for name, value in headers)
        head, body = error_response(status, reason, self.server_line, extra)
        current = self._current
        if current is not None and current.method == "HEAD":
            body = b""
        try:
            self.transport.sendall(head + body)
        except ClientDisconnected:
            return 0
        return len(body)

    # -- closing

    def close_when_idle(self, until: float = 0.0) -> None:
        """Mark the connection closing; if it is waiting for a next request, end it now.

        With ``until`` (a ``time.monotonic()`` deadline in the future) it may wait until
        then: a request arriving meanwhile (a busy keep-alive client's next one is usually
        on its way already) is still served, with ``Connection: close``, instead of being
        cut off unanswered. A read already waiting is not woken at the deadline: call
        again without one.
        """
        self.closing = True
        self._drain_deadline = until
        if until <= monotonic() and self.idle:
            self.transport.wake()

    def close(self) -> None:
        """Close the connection (the transport lingers unless it sat idle: see there)."""
        self.transport.close(linger=not self._idle_expired)
