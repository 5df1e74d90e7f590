"""One worker process: accept on the inherited listeners, serve, drain on TERM.

Structure (after gunicorn's workers): the master forks, the child builds a
:class:`Worker` and calls :meth:`Worker.run`, which never returns — it ends the process
with ``os._exit`` so that nothing of the master's ``atexit`` or ``finally`` blocks runs twice.

Signals in a worker: TERM/INT → graceful drain (stop accepting, close idle keep-alive
connections, let in-flight requests finish with ``Connection: close``, at most
``--graceful-timeout`` seconds); QUIT → exit at once; HUP is ignored (the master handles
reloads by replacing workers).  A worker whose master disappeared drains and exits.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import sys
from collections.abc import Callable, Iterable
from time import monotonic
from typing import Any, NoReturn

import gevent
from gevent.event import Event
from gevent.pool import Pool
from gevent.server import StreamServer

from .config import Config
from .context import ContextMiddleware
from .handler import ConnectionHandler
from .http import Limits
from .logs import AccessLog
from .metrics import Metrics

__all__ = ["Worker", "build_wsgi_stack", "limits_from_config"]

log = logging.getLogger("server.worker")

HEARTBEAT_SECONDS = 1.0
#: On a drain, seconds an idle keep-alive (or just accepted) connection may still deliver
#: one more request, answered with ``Connection: close``; then idle ones are closed.
DRAIN_IDLE_GRACE = 1.0

WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


def limits_from_config(config: Config) -> Limits:
    return Limits(max_request_line=config.max_request_line,
                  max_header_size=config.max_header_size,
                  max_header_count=config.max_header_count,
                  max_body_size=config.max_body_size,
                  header_timeout=config.read_timeout,
                  keep_alive=config.keep_alive)


def _health_app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    body = b'{"status":"ok"}'
    start_response("200 OK", [("Content-Type", "application/json"),
                              ("Content-Length", str(len(body))),
                              ("Cache-Control", "no-store")])
    return [body]


def build_wsgi_stack(app: WSGIApp, config: Config,
                     metrics_app: WSGIApp | None = None) -> WSGIApp:
    """The app as the connection handler sees it: the server's own endpoints first, then
    the user's app inside a fresh request context."""
    with_context = ContextMiddleware(app)
    routes: dict[str, WSGIApp] = {}
    if config.health_path != "off":
        routes[config.health_path] = _health_app
    if config.metrics_path != "off" and metrics_app is not None:
        routes[config.metrics_path] = metrics_app
    if not routes:
        return with_context

    def server_app(environ: dict[str, Any], start_response: Callable[..., Any]
                   ) -> Iterable[bytes]:
        own = routes.get(environ["PATH_INFO"])
        if own is not None:
            return own(environ, start_response)
        return with_context(environ, start_response)

    return server_app


def _describe(listener: socket.socket) -> tuple[str, str]:
    """SERVER_NAME and SERVER_PORT for a listening socket."""
    address = listener.getsockname()
    if isinstance(address, tuple):
        return str(address[0]), str(address[1])
    return str(address or "unix"), ""


class Worker:
    """Serves requests on the listeners it inherited from the master, until told to stop."""

    def __init__(self, listeners: list[socket.socket], app: WSGIApp, config: Config,
                 access_log: AccessLog, master_pid: int) -> None:
        self.listeners = listeners
        self.app = app
        self.config = config
        self.access_log = access_log
        self.master_pid = master_pid
        self.pool = Pool(config.worker_connections)
        self.handlers: list[ConnectionHandler] = []
        self.servers: list[StreamServer] = []
        self.metrics = Metrics()
        self._stop = Event()
        self._fast_exit = False

    # -- per request ------------------------------------------------------------------------
    def _on_response(self, environ: dict[str, Any], status: int, size: int,
                     duration: float) -> None:
        self.metrics.observe(status, duration)
        if self.access_log.enabled:
            self.access_log(environ, status, size, duration)

    def _sample(self) -> None:
        self.metrics.sample(sum(h.active_requests for h in self.handlers),
                            sum(h.open_connections for h in self.handlers))

    # -- lifecycle --------------------------------------------------------------------------
    def run(self) -> NoReturn:
        code = 0
        try:
            self._install_signals()
            self._start()
            self._sample()  # visible in /metrics from the first scrape on
            log.info("worker %d ready", os.getpid())
            heartbeat = gevent.spawn(self._heartbeat)
            self._stop.wait()
            heartbeat.kill()
            if not self._fast_exit:
                self._drain()
        except BaseException:
            log.exception("worker %d crashed", os.getpid())
            code = 1
        finally:
            with contextlib.suppress(Exception):
                self.metrics.flush()  # requests answered in the last turn of the loop
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)

    def _install_signals(self) -> None:
        signal.signal(signal.SIGHUP, signal.SIG_IGN)
        gevent.signal_handler(signal.SIGTERM, self.stop)
        gevent.signal_handler(signal.SIGINT, self.stop)
        gevent.signal_handler(signal.SIGQUIT, self.stop_now)

    def stop(self) -> None:
        """Begin a graceful drain (TERM/INT)."""
        self._stop.set()

    def stop_now(self) -> None:
        """Exit without draining (QUIT)."""
        self._fast_exit = True
        self._stop.set()

    def _start(self) -> None:
        limits = limits_from_config(self.config)
        wsgi = build_wsgi_stack(self.app, self.config, self.metrics.wsgi_endpoint(self._sample))
        # Without an access log the hook is the metrics' own method: one call less per request.
        on_response = (self._on_response if self.access_log.enabled
                       else self.metrics.observe_response)
        for listener in self.listeners:
            name, port = _describe(listener)
            handler = ConnectionHandler(wsgi, limits, server_name=name, server_port=port,
                                        on_response=on_response,
                                        logger=logging.getLogger("server.http"))
            server = StreamServer(listener, handler, spawn=self.pool)
            server.start()
            self.handlers.append(handler)
            self.servers.append(server)

    def _heartbeat(self) -> None:
        """Once a second: refresh gauges; drain if the master is gone."""
        while True:
            gevent.sleep(HEARTBEAT_SECONDS)
            if os.getppid() != self.master_pid:
                log.warning("master %d is gone; worker %d drains and exits",
                            self.master_pid, os.getpid())
                self._stop.set()
                return
            try:
                self._sample()
            except Exception:  # metrics must never take the worker down
                log.exception("sampling metrics failed")

    def _drain(self) -> None:
        deadline = monotonic() + self.config.graceful_timeout
        for server in self.servers:
            server.close()  # stop accepting; the master still holds the listening socket
        for handler in self.handlers:
            handler.drain(idle_grace=min(DRAIN_IDLE_GRACE, self.config.graceful_timeout))
        remaining = max(0.0, deadline - monotonic())
        if not self.pool.join(timeout=remaining):
            log.warning("worker %d: %d connection(s) still busy after the graceful timeout; "
                        "closing them", os.getpid(), len(self.pool))
            self.pool.kill(timeout=1.0)
        log.info("worker %d stopped", os.getpid())
