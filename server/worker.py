"""One worker process: boot (import the app, unless preloaded), serve the inherited
listeners, prove to the master that the event loop is alive, drain on TERM.

After gunicorn's workers: the master builds a :class:`Worker` before the fork (so that
what it knows — ``age``, ``ppid``, ``cfg``, ``log`` — is there for issue 12's hooks), forks,
and the child calls :meth:`Worker.run`, which never returns: it ends the process with
``os._exit`` so that nothing of the master's ``atexit`` or ``finally`` blocks runs twice.

Booting: the app is imported here, after the fork, unless ``--preload`` imported it in the
master — so a database client opened at import belongs to one process, and HUP loads new
code.  A worker that cannot import it writes the one-line reason into its status page
(:mod:`server.liveness`) and exits with ``BOOT_ERROR``.  Then it reports ``SERVING``.

While serving, a greenlet stores a heartbeat every ``min(1, --timeout/4)`` seconds; a
blocked loop stops it and the master's watchdog kills the worker after ``--timeout``, with
the stack faulthandler writes and the request ids in flight, which every request records
in the status page while it runs.  After ``--max-requests`` (+ jitter) requests it reports
``RETIRING`` and serves on until the master, once a successor is ready, sends TERM.

Signals: TERM/INT → graceful drain (stop accepting, idle keep-alive connections get a short
grace for one more request, in-flight requests finish with ``Connection: close``, at most
``--graceful-timeout``); QUIT → exit at once; USR1 → reopen the access log; USR2 → every
thread's stack to the error log (see :mod:`server.watchdog`); HUP, WINCH, TTIN, TTOU and
:data:`server.signals.IGNORED` are ignored.  A worker whose master disappeared drains and
exits.
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
from typing import IO, Any, NoReturn

import gevent
from gevent.event import Event
from gevent.pool import Pool
from gevent.server import StreamServer

from . import accelerators
from .config import Config
from .context import ContextMiddleware
from .handler import ConnectionHandler
from .hooks import Hooks, with_request_hooks
from .http import Limits
from .http.forwarded import TrustedPeers
from .http.proxy_protocol import MODES as PROXY_MODES
from .http.tls import server_context
from .liveness import BOOT_ERROR, WorkerState, WorkerStatus
from .loader import AppLoadError, load_configured_app
from .logs import AccessLog, reopen_error_log
from .metrics import Metrics
from .signals import IGNORED, unblock_after_fork
from .threadpool import install as install_threadpool
from .watchdog import STACK_SIGNAL, install_stack_dumps, start_block_monitor, write_boot_stack

__all__ = ["Worker", "beat_interval", "build_wsgi_stack", "host_server_address",
           "limits_from_config"]

#: Seconds between two samples of the per-worker gauges (in-flight, connections, RSS...).
SAMPLE_SECONDS = 1.0
#: On a drain, seconds an idle keep-alive (or just accepted) connection may still deliver
#: one more request, answered with ``Connection: close``; then idle ones are closed.
DRAIN_IDLE_GRACE = 1.0
#: What SERVER_PORT is for a unix socket when the Host header names no port (PEP 3333
#: requires one; gunicorn takes the scheme's default as well).
DEFAULT_PORTS = {"http": "80", "https": "443"}

WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


def beat_interval(timeout: float) -> float:
    """Seconds between heartbeats: often enough that a healthy worker is never near the
    timeout, at most once a second (gunicorn's gevent worker: every second)."""
    return min(1.0, timeout / 4) if timeout > 0 else 1.0


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


def build_wsgi_stack(app: WSGIApp, config: Config, metrics_app: WSGIApp | None = None,
                     inner: WSGIApp | None = None) -> WSGIApp:
    """The app as the connection handler sees it: the server's own endpoints first, then
    the user's app inside a fresh request context.

    ``inner`` runs inside the context instead of ``app`` (which stays ``current_app``): the
    worker's wrapper that names each request in its status page once its id is known.
    """
    with_context = ContextMiddleware(inner or app, current_app=app)
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


def host_server_address(host: str, scheme: str) -> tuple[str, str] | None:
    """SERVER_NAME and SERVER_PORT from a Host header, for a request on a unix socket.

    A unix socket has no host or port of its own; like gunicorn we take the client's Host
    (``name:port``, ``[v6]:port``, or a name alone with the scheme's default port). None
    when there is nothing usable (then the listener's defaults stay).
    """
    if not host:
        return None
    name, sep, port = host.rpartition(":")
    if not sep or "]" in port:  # no port, or a bare IPv6 literal "[::1]"
        return host, DEFAULT_PORTS.get(scheme, "80")
    if not port.isdigit() or not name:
        return None
    return name, port


def _with_host_address(wsgi: WSGIApp) -> WSGIApp:
    def unix_app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        found = host_server_address(environ.get("HTTP_HOST", ""), environ["wsgi.url_scheme"])
        if found is not None:
            environ["SERVER_NAME"], environ["SERVER_PORT"] = found
        return wsgi(environ, start_response)

    return unix_app


def _describe(listener: socket.socket) -> tuple[str, str]:
    """SERVER_NAME and SERVER_PORT for a listening socket (never an empty port)."""
    address = listener.getsockname()
    if isinstance(address, tuple):
        return str(address[0]), str(address[1])
    return str(address or "unix"), DEFAULT_PORTS["http"]


class Worker:
    """One worker process: built in the master before the fork, run in the child."""

    def __init__(self, *, age: int, ppid: int, listeners: list[socket.socket],
                 app: WSGIApp | None, cfg: Config, access_log: AccessLog,
                 status: WorkerStatus, dump: IO[bytes], wake_fd: int,
                 max_requests: int, server: Any = None) -> None:
        # Known before the fork (the master keeps this object as its record of the worker).
        self.age = age
        self.ppid = ppid
        self.pid: int | None = None  # set by the master after the fork, and in the child
        self.listeners = listeners
        self.app = app  # None: imported in the child (no --preload)
        self.cfg = cfg
        self.log = logging.getLogger("server.worker")
        self.access_log = access_log
        self.status = status
        self.dump = dump
        self.wake_fd = wake_fd
        #: Requests after which this worker asks to be replaced (0: never).
        self.max_requests = max_requests
        self.server = server  # the Arbiter, as gunicorn's worker_exit hook receives it
        self.hooks = Hooks(cfg.hooks, self.log)  # logged as the worker's
        # Per process, from run() on.
        self.pool: Pool | None = None
        self.handlers: list[ConnectionHandler] = []
        self.servers: list[StreamServer] = []
        self.metrics: Metrics | None = None
        self.served = 0
        self._slots: dict[int, int] = {}  # id(environ) -> its slot in the status page
        self._stop: Event | None = None
        self._fast_exit = False

    def __repr__(self) -> str:
        return f"<Worker {self.pid or 'unborn'} age={self.age}>"

    # -- per request ------------------------------------------------------------------------
    def _tracking(self, app: WSGIApp) -> WSGIApp:
        """``app``, naming each request in the status page while it runs: the master reads
        the ids from there when the worker is stuck. A pop, a pack_into, a dict store."""
        started = self.status.request_started
        slots = self._slots

        def tracked(environ: dict[str, Any], start_response: Callable[..., Any]
                    ) -> Iterable[bytes]:
            slots[id(environ)] = started(environ["ctxserver.request_id"])
            return app(environ, start_response)

        return tracked

    def _on_response(self, environ: dict[str, Any], status: int, size: int,
                     duration: float) -> None:
        self.metrics.observe(status, duration)
        slot = self._slots.pop(id(environ), -1)
        if slot >= 0:
            self.status.request_finished(slot)
        if self.access_log.enabled:
            self.access_log(environ, status, size, duration)
        self.served += 1
        if self.served == self.max_requests:
            self._retire()

    def _sample(self) -> None:
        self.metrics.sample(sum(h.active_requests for h in self.handlers),
                            sum(h.open_connections for h in self.handlers))

    # -- lifecycle --------------------------------------------------------------------------
    def run(self) -> NoReturn:
        code = 0
        try:
            self._boot()
        except AppLoadError as exc:  # the user's mistake: one line, which the master prints
            self.status.fail_boot(str(exc))
            code = BOOT_ERROR
        except BaseException as exc:  # our bug: loud here, one line for the master
            self.log.exception("worker %d failed to boot", os.getpid())
            self.status.fail_boot(f"worker failed to boot: {type(exc).__name__}: {exc}")
            code = BOOT_ERROR
        else:
            code = self._serve()
        finally:
            with contextlib.suppress(Exception):
                if self.metrics is not None:
                    self.metrics.flush()  # requests answered since the last flush
            self.hooks("worker_exit", self.server, self)
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)

    def _boot(self) -> None:
        # First: the app's import and every request run on the accelerated allocator
        # (server.accelerators says why after the fork and not in the master).
        accelerators.install_in_worker()
        self.pid = os.getpid()
        self.access_log.pid = self.pid
        self._stop = Event()
        self._install_signals()
        self.status.beat()
        self._drop_privileges()
        install_threadpool()  # before the app's import can start using the hub's pool
        # gevent's hub re-raises SystemExit/KeyboardInterrupt/SystemError out of *any*
        # greenlet in the main one, which would end this worker and every request on it: an
        # app's child greenlet is then reported like any other error. (Ours stop through
        # the _stop event, never by raising.)
        gevent.get_hub().SYSTEM_ERROR = ()
        if self.app is None:
            watch = None
            if self.cfg.timeout:  # just before the watchdog is due: where is the import?
                watch = gevent.spawn_later(self.cfg.timeout - beat_interval(self.cfg.timeout),
                                           write_boot_stack, self.dump, gevent.getcurrent())
            try:
                self.app = load_configured_app(self.cfg.app, unsafe_probe=self.cfg.unsafe_probe)
            finally:
                if watch is not None:
                    watch.kill()
        self.pool = Pool(self.cfg.worker_connections)
        self.metrics = Metrics()
        self.metrics.set_accelerators(accelerators.active())
        self.hooks("post_worker_init", self)
        self._start()
        self._sample()  # visible in /metrics from the first scrape on
        if self.cfg.block_warning:
            start_block_monitor(self.cfg.block_warning, self.status.in_flight, self.log)
        self.log.info("worker %d ready", self.pid)
        self.status.set_state(WorkerState.SERVING)
        self._nudge_master()

    def _serve(self) -> int:
        try:
            heartbeat = gevent.spawn(self._heartbeat)
            self._stop.wait()
            if not self._fast_exit:
                self._drain()
            heartbeat.kill()
        except BaseException:
            self.log.exception("worker %d crashed", os.getpid())
            return 1
        return 0

    def _drop_privileges(self) -> None:
        """--group, then --user (gunicorn's order: after post_fork, before the app)."""
        if self.cfg.group is not None:
            os.setgroups([self.cfg.group])
            os.setgid(self.cfg.group)
        if self.cfg.user is not None:
            os.setuid(self.cfg.user)

    def _install_signals(self) -> None:
        for signum in (signal.SIGHUP, signal.SIGWINCH, signal.SIGTTIN, signal.SIGTTOU,
                       *IGNORED):
            if signum != STACK_SIGNAL:
                signal.signal(signum, signal.SIG_IGN)
        actions = {signal.SIGTERM: self.stop, signal.SIGINT: self.interrupted,
                   signal.SIGQUIT: self.stop_now, signal.SIGUSR1: self.reopen_logs}
        for signum, action in actions.items():
            gevent.signal_handler(signum, action)
        # The watchdog's STACK_SIGNAL, USR2, fatal signals; with a worker_abort hook, the
        # stack signal ends in Python (which runs once the blocking Python code yields a
        # bytecode boundary) rather than in the default action.
        install_stack_dumps(self.dump, self._aborted if "worker_abort" in self.hooks
                            else None)
        unblock_after_fork()  # the master blocked everything around the fork

    def stop(self) -> None:
        """Begin a graceful drain (TERM/INT)."""
        self._stop.set()

    def interrupted(self) -> None:
        """INT: gunicorn's worker_int, then a graceful drain."""
        self.hooks("worker_int", self)
        self.stop()

    def stop_now(self) -> None:
        """Exit without draining (QUIT); gunicorn calls worker_int here too."""
        self.hooks("worker_int", self)
        self._fast_exit = True
        self._stop.set()

    def _aborted(self, signum: int, frame: Any) -> None:
        """The watchdog timed us out (our stack is written): worker_abort, then exit —
        through worker_exit, as gunicorn's worker does after its abort hook."""
        self.hooks("worker_abort", self)
        self.hooks("worker_exit", self.server, self)
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(1)

    def reopen_logs(self) -> None:
        """USR1: reopen the error and access logs (logrotate moved them away)."""
        try:
            reopen_error_log()
        except OSError as exc:
            self.log.error("worker %d: cannot reopen the error log %r: %s", self.pid,
                           self.cfg.error_log, exc.strerror or exc)
        try:
            self.access_log.reopen()
        except OSError as exc:
            self.log.error("worker %d: cannot reopen the access log %r: %s", self.pid,
                           self.access_log.path, exc.strerror or exc)
        self.log.info("worker %d: logs reopened", self.pid)

    def _nudge_master(self) -> None:
        """Wake the master to read the status page now rather than at its next tick."""
        with contextlib.suppress(OSError):  # a full pipe: the master wakes anyway
            os.write(self.wake_fd, b"!")

    def _retire(self) -> None:
        self.log.info("worker %d served %d requests (--max-requests): asking for a successor",
                      self.pid, self.served)
        self.status.set_state(WorkerState.RETIRING)
        self._nudge_master()

    def _start(self) -> None:
        cfg = self.cfg
        limits = limits_from_config(cfg)
        inner = with_request_hooks(self.app, self, self.hooks)
        wsgi = build_wsgi_stack(self.app, cfg, self.metrics.wsgi_endpoint(self._sample),
                                self._tracking(inner) if cfg.timeout else
                                inner if inner is not self.app else None)
        tls = server_context(cfg.certfile, cfg.keyfile, cfg.ca_certs, cfg.cert_reqs,
                             cfg.ciphers) if cfg.certfile else None
        for listener in self.listeners:
            name, port = _describe(listener)
            handler = ConnectionHandler(
                _with_host_address(wsgi) if listener.family == socket.AF_UNIX else wsgi,
                limits, server_name=name, server_port=port, on_response=self._on_response,
                logger=logging.getLogger("server.http"), tls=tls,
                proxy_protocol=PROXY_MODES[cfg.proxy_protocol],
                proxy_allow=TrustedPeers.parse(cfg.proxy_allow_from),
                forwarded_allow=TrustedPeers.parse(cfg.forwarded_allow_ips),
                root_path=cfg.root_path)
            server = StreamServer(listener, handler, spawn=self.pool)
            server.start()
            self.handlers.append(handler)
            self.servers.append(server)

    def _heartbeat(self) -> None:
        """Prove the loop is alive; sample the gauges each second; drain if the master is
        gone."""
        interval = beat_interval(self.cfg.timeout)
        next_sample = monotonic() + SAMPLE_SECONDS
        while True:
            self.status.beat()
            if os.getppid() != self.ppid:
                self.log.warning("master %d is gone; worker %d drains and exits", self.ppid,
                                 self.pid)
                self._stop.set()
                return
            if monotonic() >= next_sample:
                next_sample += SAMPLE_SECONDS
                try:
                    self._sample()
                except Exception:  # metrics must never take the worker down
                    self.log.exception("sampling metrics failed")
            gevent.sleep(interval)

    def _drain(self) -> None:
        deadline = monotonic() + self.cfg.graceful_timeout
        for server in self.servers:
            server.close()  # stop accepting; the master still holds the listening socket
        for handler in self.handlers:
            handler.drain(idle_grace=min(DRAIN_IDLE_GRACE, self.cfg.graceful_timeout))
        remaining = max(0.0, deadline - monotonic())
        if not self.pool.join(timeout=remaining):
            self.log.warning("worker %d: %d connection(s) still busy after the graceful "
                             "timeout; closing them", self.pid, len(self.pool))
            self.pool.kill(timeout=1.0)
        self.log.info("worker %d stopped", self.pid)
