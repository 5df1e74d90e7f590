"""The socket side of one connection: receive with deadlines, send, sendfile, lingering close.

:class:`Transport` is the only code of the HTTP layer that touches the socket; the
protocol above it (:mod:`server.http.connection`, :mod:`server.http.response`) sees bytes
in, bytes out and ``ClientDisconnected``. A transport that wraps the socket differently
(TLS, a PROXY protocol header read before the first request) replaces this class's
socket calls and nothing else. :class:`IdleTimer` keeps the keep-alive deadlines of many
transports with one timer.
"""

from __future__ import annotations

import contextlib
import os
import socket
from time import monotonic
from typing import Any

from gevent import get_hub
from gevent.socket import wait as wait_on_watcher
from gevent.socket import wait_write

from .errors import ClientDisconnected
from .limits import RECV_SIZE, Limits

__all__ = ["LINGER_BYTES", "LINGER_SECONDS", "IdleTimer", "Transport"]

#: Lingering close: how long and how much we keep reading after our last response so the
#: kernel does not answer unread client bytes with a RST that destroys that response.
LINGER_SECONDS = 2.0
LINGER_BYTES = 256 * 1024


class IdleTimer:
    """Ends the keep-alive waits of many connections with one periodic timer.

    A gevent ``Timeout`` per wait -- what a socket timeout costs -- is a Python object
    and a libev timer, started and cancelled in Python for every request of a keep-alive
    connection and held by every idle one (bench/results/server.md measures both costs:
    throughput, and RSS per idle keep-alive connection). Instead a waiting connection
    enters its deadline here (a dict store), and a timer that ticks every ``interval``
    seconds, only while someone waits, cancels the waits whose deadline passed with a
    ``TimeoutError`` -- which the connection treats as any timeout: it re-checks its
    deadlines. A wait thus ends at most ``interval`` late.
    """

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self._deadlines: dict[Transport, float] = {}
        self._timer: Any = None

    @classmethod
    def for_limits(cls, limits: Limits) -> IdleTimer:
        """A timer at most a quarter of the shortest timeout (and 0.25 s) late."""
        timeouts = [t for t in (limits.keep_alive, limits.header_timeout) if t > 0]
        return cls(max(0.005, min([0.25] + [t / 4 for t in timeouts])))

    def watch(self, transport: Transport, deadline: float) -> None:
        self._deadlines[transport] = deadline
        if self._timer is None:
            timer = get_hub().loop.timer(self.interval, self.interval, ref=False)
            timer.start(self._tick)
            self._timer = timer

    def unwatch(self, transport: Transport) -> None:
        self._deadlines.pop(transport, None)

    def _tick(self) -> None:
        deadlines = self._deadlines
        if not deadlines:  # nobody waits: stop ticking until someone does
            self._timer.stop()
            self._timer.close()
            self._timer = None
            return
        now = monotonic()
        for transport in [t for t, deadline in deadlines.items() if deadline <= now]:
            del deadlines[transport]
            watcher = getattr(transport.sock, "_read_event", None)
            if watcher is not None:
                # Throws into the wait if it is still on (a callback of the hub's); if the
                # connection has moved on to another wait by then, that one re-checks its
                # own deadline and goes on waiting.
                get_hub().cancel_wait(watcher, TimeoutError("timed out"))


class Transport:
    """The accepted socket of one connection, and what its owner may do with it.

    ``eof`` is True once a receive found the peer's end of the stream (or a reset);
    ``closed`` once :meth:`close` ran.
    """

    __slots__ = ("_sock_timeout", "closed", "eof", "idle_timer", "limits", "sock", "tls")

    def __init__(
        self, sock: socket.socket, limits: Limits, idle_timer: IdleTimer | None = None
    ) -> None:
        self.sock = sock
        self.limits = limits
        #: Ends keep-alive waits without a Timeout per wait (a server passes one shared
        #: by its connections); without it each wait has a timeout of its own.
        self.idle_timer = idle_timer
        #: The timeout last set on the socket by _settimeout (None: not known).
        self._sock_timeout: float | None = None
        self.eof = False
        self.closed = False
        #: A TLS socket (gevent's SSLSocket): the kernel's sendfile would bypass the
        #: encryption. Its idle waits on the raw socket are sound: one recv of RECV_SIZE
        #: takes a whole TLS record (at most 16 KiB), and OpenSSL reads no further ahead,
        #: so no decrypted byte is left waiting while the socket looks idle.
        self.tls = hasattr(sock, "pending")
        if sock.family in (socket.AF_INET, socket.AF_INET6):
            # Without it Nagle + delayed ACK hold back each small response of a keep-alive
            # connection until the client's delayed-ACK timer fires.
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    # -- receiving

    def recv(self, timeout: float, *, idle: bool = False) -> bytes:
        """One recv of at most RECV_SIZE bytes; ``b""`` on EOF or reset. Raises TimeoutError.

        A fresh bytes object per recv rather than a per-connection buffer: an idle
        keep-alive connection then holds no receive memory at all.

        ``idle``: waiting for the next request of a keep-alive connection. Its client has
        nearly always not sent it yet (it needed our response first), so we wait for the
        socket to become readable before the recv instead of after a recv that failed
        with EAGAIN: one syscall and one raised exception less per request. The socket's
        own read watcher is used, so :meth:`wake`'s shutdown cancels this wait as it
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
        except OSError:  # reset, or shut down by wake()
            data = b""
        if not data:
            self.eof = True
        return data

    # -- sending

    def _settimeout(self, timeout: float) -> None:
        """``sock.settimeout`` unless it is set already (gevent's is Python code).

        Every timeout change of the socket while requests are served must come through
        here, or the cached value lies (only ``_linger``, at close, sets it directly).
        """
        if timeout != self._sock_timeout:
            self.sock.settimeout(timeout)
            self._sock_timeout = timeout

    def sendall(self, data: bytes) -> None:
        """Send all of ``data`` within ``send_timeout``; ClientDisconnected if we cannot."""
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

    def wake(self) -> None:
        """End a receive that is waiting (both directions are shut down)."""
        if not self.closed:
            with contextlib.suppress(OSError):
                self.sock.shutdown(socket.SHUT_RDWR)

    def close(self, *, linger: bool = True) -> None:
        """Close the socket, lingering briefly so our last response is not reset.

        Closing a socket with unread input makes the kernel send RST, which can destroy
        the response still in flight (e.g. a 413 while the client keeps uploading). So
        we half-close, then read and drop input until the client closes too, within
        ``LINGER_SECONDS``/``LINGER_BYTES``. Not after EOF (the peer sent all it will),
        nor with ``linger=False``.
        """
        if self.closed:
            return
        self.closed = True
        sock = self.sock
        try:
            if linger and not self.eof:
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
