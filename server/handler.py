"""The keep-alive loop of a connection: read a request, run the app in a fresh greenlet, repeat.

The fresh greenlet per request is the point of this module. Greenlet-keyed context
(a ``threading.local`` under monkey-patching, ``gevent.local.local``, our
``ctxlocal.Local``) lives and dies with the greenlet; gevent.pywsgi and gunicorn run
every request of a keep-alive connection in the connection's greenlet, so whatever
one request left in such a "local" is visible to the next request of that client.
Here the connection greenlet only does I/O bookkeeping and waits; each request's
code runs in a greenlet that nobody else ever uses.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from time import monotonic, perf_counter
from types import MappingProxyType
from typing import Any

import gevent
from greenlet import GreenletExit
from greenlet import greenlet as RawGreenlet

from server.http import (
    ClientDisconnected,
    HTTPConnection,
    HTTPError,
    HTTPRequest,
    HTTPResponse,
    IdleTimer,
    Limits,
)
from server.http.forwarded import TrustedPeers
from server.http.proxy_protocol import ProxyHeaderError, read_header
from server.http.tls import TLSHandshakeError, handshake

__all__ = ["ConnectionHandler"]

WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]
OnResponse = Callable[[dict[str, Any], int, int, float], None]

#: How long a killed connection waits for its request greenlet to unwind (run the
#: iterable's close() and finally blocks) before giving up on it.
KILL_TIMEOUT = 5.0

#: The environ of a request that has ended (``HTTPRequest.environ`` is dropped then).
_DONE: Any = MappingProxyType({})


class RequestAbandoned(GreenletExit):
    """Thrown into a request greenlet when the server stops it (its connection greenlet was
    killed: a fast shutdown, a drain's deadline, a timeout).

    A ``GreenletExit`` to the app, as any kill is; to :meth:`ConnectionHandler._handle` the
    one exception out of the app that is not the app's own and must not be answered with a
    500 but let through: the server's shutdown is under way.
    """


class ConnectionHandler:
    """``handler(sock, address)``: serves one connection; usable as a StreamServer handle.

    ``on_response(environ, status_code, body_bytes, duration_seconds)`` is called once
    per request after it ended, also for requests rejected by the protocol layer (then
    ``environ`` is a minimal one with ``REQUEST_METHOD`` ``"-"`` and the error text in
    ``ctxserver.protocol_error``). ``drain()`` makes the server stop keeping connections
    alive: in-flight requests are answered with ``Connection: close`` and idle
    connections are closed at once.

    Errors: a protocol error (bad request, body too large or stalled, client gone) is
    answered with its status and closes the connection. An application exception -- any
    ``BaseException``: ``SystemExit``, ``KeyboardInterrupt`` and ``GreenletExit`` too, which
    would otherwise take the worker down or pass for a normal return -- is logged with the
    request id and answered with a generic 500 that keeps the connection alive when the
    request allows it; if the response had already started, the connection is closed
    instead, since the client can only notice the truncation that way. Only the server's
    own stop (:class:`RequestAbandoned`) goes through.
    """

    def __init__(
        self,
        app: WSGIApp,
        limits: Limits,
        *,
        server_name: str,
        server_port: str,
        server_software: str | None = "ctxserver",
        on_response: OnResponse | None = None,
        logger: logging.Logger | None = None,
        tls: Any = None,
        proxy_protocol: tuple[int, ...] = (),
        proxy_allow: TrustedPeers | None = None,
        forwarded_allow: TrustedPeers | None = None,
        root_path: str = "",
    ) -> None:
        # Per-server state (one listener's)
        self.app = app
        self.limits = limits
        self.server_name = server_name
        self.server_port = str(server_port)
        self.server_software = server_software
        self.on_response = on_response
        self.logger = logger or logging.getLogger(__name__)
        # Before HTTP: who may say what about the client (README "Behind a proxy", "TLS")
        #: The listener's SSL context (--certfile...), None for plain HTTP.
        self.tls = tls
        #: PROXY protocol versions a trusted peer may send (--proxy-protocol), and who.
        self.proxy_protocol = proxy_protocol
        self.proxy_allow = proxy_allow or TrustedPeers()
        #: Peers whose X-Forwarded-* / Forwarded headers are believed (None: nobody's).
        self.forwarded_allow = forwarded_allow
        self.root_path = root_path
        self.url_scheme = "https" if tls is not None else "http"
        #: Keeps the keep-alive deadlines of all our connections (one timer, not one per wait).
        self._idle_timer = IdleTimer.for_limits(limits)
        self._connections: set[HTTPConnection] = set()
        #: Requests whose application greenlet is running.
        self.active_requests = 0
        # Drain state
        #: Set by drain(): no connection is kept alive any more.
        self.closing = False
        #: Until then (monotonic) an idle connection may still deliver one more request.
        self._drain_deadline = 0.0

    @property
    def open_connections(self) -> int:
        """Connections currently being served (idle keep-alive ones included)."""
        return len(self._connections)

    def drain(self, idle_grace: float = 0.0) -> None:
        """Stop keep-alive: close idle connections now, the others after their response.

        With ``idle_grace`` idle (and newly accepted) connections get that many seconds
        for one more request, answered with ``Connection: close``, before they are closed:
        a client that sent its next request as the drain began is answered, not cut off.
        """
        self.closing = True
        self._drain_deadline = monotonic() + idle_grace
        for conn in list(self._connections):
            conn.close_when_idle(self._drain_deadline)
        if idle_grace > 0:
            gevent.spawn_later(idle_grace, self._close_idle)

    def _close_idle(self) -> None:
        for conn in list(self._connections):
            conn.close_when_idle()

    def __call__(self, sock: Any, address: Any) -> None:
        peer = str(address[0]) if isinstance(address, tuple) and address else ""
        opened = self._open(sock, address, peer)
        if opened is None:
            return
        sock, address = opened
        forwarded = self.forwarded_allow
        conn = HTTPConnection(
            sock,
            address,
            self.limits,
            server_name=self.server_name,
            server_port=self.server_port,
            server_software=self.server_software,
            idle_timer=self._idle_timer,
            url_scheme=self.url_scheme,
            root_path=self.root_path,
            # trust is the socket peer's (as gunicorn's), whatever a PROXY header said
            forwarders=forwarded if forwarded is not None and peer in forwarded else None,
        )
        if self.closing:
            conn.close_when_idle(self._drain_deadline)
        self._connections.add(conn)
        try:
            self._serve(conn)
        except Exception:  # a bug of ours; StreamServer would print it without context
            self.logger.exception("internal error serving %s", conn.remote_addr)
        finally:
            self._connections.discard(conn)
            conn.close()

    def _open(self, sock: Any, address: Any, peer: str) -> tuple[Any, Any] | None:
        """What comes before HTTP: the PROXY header (trusted peers only), then the TLS
        handshake, each within --read-timeout. Returns the socket and the client address
        to serve, or None when the connection was closed instead (a client's failure,
        logged; the worker serves on)."""
        timeout = self.limits.header_timeout
        if self.proxy_protocol and peer in self.proxy_allow:
            try:
                header = read_header(sock, self.proxy_protocol, timeout)
            except ProxyHeaderError as exc:
                self.logger.warning("closing connection from %s: %s", peer or "unix", exc)
                sock.close()
                return None
            if header is not None and header.client is not None:
                address = header.client
        if self.tls is not None:
            try:
                sock = handshake(sock, self.tls, timeout)
            except TLSHandshakeError as exc:
                self.logger.debug("closing connection from %s: %s", peer or "unix", exc)
                sock.close()
                return None
        return sock, address

    def _serve(self, conn: HTTPConnection) -> None:
        """The keep-alive loop of one connection."""
        while True:
            started = perf_counter()
            try:
                request = conn.read_request()
            except ClientDisconnected:
                return
            except HTTPError as exc:
                self._reject(conn, exc, started)
                return
            if request is None:
                return
            response = HTTPResponse(conn, request)
            # A brand-new greenlet for this request alone, a child of this one: switching
            # to it runs the request at once (no round trip through the hub's callback
            # queue, as gevent.spawn + join would take), and when it ends -- after every
            # switch to the hub its I/O needed -- control comes straight back here.
            request_greenlet = RawGreenlet(self._handle)
            try:
                request_greenlet.switch(request, response)
            except BaseException:  # GreenletExit (server stop), Timeout: orphan nothing
                # Also reached when an exception escaped _handle -- only a bug of ours can:
                # it catches whatever the app raises. The greenlet is dead then.
                self._abandon(request_greenlet)
                raise
            if conn.closing:  # a drain began after the head said keep-alive
                response.close_after("the server is draining")
            keep_alive = response.keep_alive
            # The request is over: what an idle keep-alive connection holds on to while it
            # waits for the next one should not include the last request's environ.
            request.environ = _DONE
            del request_greenlet, request, response
            if not keep_alive:
                return

    def _abandon(self, request_greenlet: RawGreenlet) -> None:
        """This connection greenlet was interrupted while ``request_greenlet`` ran: kill it
        (its ``finally`` blocks and the iterable's close() run), waiting up to KILL_TIMEOUT.

        A request greenlet that outlives that is handed to the hub as its parent: it must
        never end into this greenlet, which by then is waiting for something else.
        """
        if request_greenlet.dead:
            return
        timer = gevent.Timeout.start_new(KILL_TIMEOUT)
        try:
            request_greenlet.throw(RequestAbandoned)  # returns here once it has ended
        except gevent.Timeout as exc:
            if exc is not timer:
                raise
        except Exception:
            self.logger.exception("error while killing a request")
        finally:
            timer.close()
            if not request_greenlet.dead:
                request_greenlet.parent = gevent.get_hub()

    def _reject(self, conn: HTTPConnection, exc: HTTPError, started: float) -> None:
        """Answer a request the protocol layer refused; the connection then closes."""
        self.logger.debug("rejecting request from %s: %s", conn.remote_addr, exc)
        sent = conn.send_error(exc.status, exc.reason)
        environ = {
            "REQUEST_METHOD": "-",
            "SCRIPT_NAME": "",
            "PATH_INFO": "",
            "QUERY_STRING": "",
            "SERVER_PROTOCOL": "HTTP/1.1",
            "REMOTE_ADDR": conn.remote_addr,
            "REMOTE_PORT": conn.remote_port,
            "ctxserver.protocol_error": str(exc),
        }
        self._report(environ, exc.status, sent, perf_counter() - started)

    def _handle(self, request: HTTPRequest, response: HTTPResponse) -> None:
        """Run the application for one request; the body of the request greenlet."""
        environ = request.environ
        started = perf_counter()
        self.active_requests += 1
        app_iter = None
        try:
            app_iter = self.app(environ, response.start_response)
            response.send_iterable(app_iter)
        except ClientDisconnected as exc:
            response.close_after(f"client went away: {exc}")
        except HTTPError as exc:  # raised out of wsgi.input: 413, 408, bad chunk...
            self._fail(response, exc, environ.get("ctxserver.request_id"))
        except RequestAbandoned:  # the server stops this request: not the app's failure
            raise
        except BaseException:  # the app's, whatever it is: this request alone fails
            self.logger.exception(
                "error in application for %s %s (request_id=%s)",
                environ["REQUEST_METHOD"],
                environ["PATH_INFO"],
                environ.get("ctxserver.request_id"),
            )
            self._app_failed(response, environ.get("ctxserver.request_id"))
        finally:
            # The request is over: nothing it still holds (write, wsgi.input) may touch the
            # connection, which is about to carry the next request; close() included.
            request.ended = True
            request.request_id = environ.get("ctxserver.request_id")
            self._close_iterable(app_iter, environ)
            self.active_requests -= 1
            duration = perf_counter() - started
            self._report(environ, response.status_code, response.bytes_sent, duration)

    def _app_failed(self, response: HTTPResponse, request_id: str | None) -> None:
        """The app raised: a generic 500, or a cut-off connection if it already answered.

        The 500 keeps the connection alive when the request allows it: the failure was
        the application's, the HTTP stream is intact. (Keep-alive after an error is also
        the case where per-connection "request context" leaks in other servers.)
        """
        if response.headers_sent:
            # The client got a truncated response; only our closing can tell it so.
            response.close_after("the application failed after its response had started")
            return
        try:
            response.send_error(500, close=False,
                                headers=() if request_id is None else
                                (("X-Request-ID", request_id),))
        except ClientDisconnected as exc:
            response.close_after(f"client went away: {exc}")

    def _fail(self, response: HTTPResponse, exc: HTTPError, request_id: str | None) -> None:
        """Protocol error met by the app in ``wsgi.input`` (413, 408, a bad chunk): answer
        it, with the request's id, if nothing was sent yet; the connection dies."""
        if response.headers_sent:
            response.close_after(f"{exc.status} {exc.reason} after the response had started")
        else:
            response.send_error(exc.status, exc.reason,  # closes
                                headers=() if request_id is None else
                                (("X-Request-ID", request_id),))

    def _close_iterable(self, app_iter: Any, environ: dict[str, Any]) -> None:
        close = getattr(app_iter, "close", None)
        if close is None:
            return
        try:
            close()
        except RequestAbandoned:
            raise
        except BaseException:  # as from the app itself: it costs nothing but a log line
            self.logger.exception(
                "error closing the response of %s %s (request_id=%s)",
                environ["REQUEST_METHOD"],
                environ["PATH_INFO"],
                environ.get("ctxserver.request_id"),
            )

    def _report(self, environ: dict[str, Any], status: int, sent: int, duration: float) -> None:
        if self.on_response is None:
            return
        try:
            self.on_response(environ, status, sent, duration)
        except Exception:
            self.logger.exception("on_response callback failed")
