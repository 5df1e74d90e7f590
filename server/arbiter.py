"""The master process: bind, fork workers, supervise them, handle signals.

After gunicorn's arbiter: the master binds every listener once (so a port in use is a clear
error before any worker exists), forks ``--workers`` children that inherit the sockets and
accept on them, and then only supervises:

* a worker that dies is replaced — at once if it had been serving for a while (5 s), with
  exponential backoff (0.1 s doubling to 10 s) while workers keep dying young, so a crash
  loop cannot spin;
* TERM/INT: graceful shutdown — workers drain, the master waits up to
  ``--graceful-timeout`` (+1 s), kills stragglers, removes unix socket files, exits 0;
* QUIT: fast shutdown — workers are told to exit at once;
* HUP: graceful reload — a new set of workers is forked first, then the old ones drain, so
  no request is refused.  The app is imported once, in the master, before forking (this
  validates it and shares its memory copy-on-write); to deploy new code, restart the server.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import shutil
import signal
import socket
import stat
import tempfile
from dataclasses import dataclass, field
from time import monotonic
from typing import Any

import gevent
from gevent.event import Event

from .config import Config, fail
from .logs import AccessLog

log = logging.getLogger("server.arbiter")

MAX_BACKOFF = 10.0
FIRST_BACKOFF = 0.1
HEALTHY_AFTER = 5.0  # a worker that lived this long resets the crash backoff


@dataclass
class WorkerProcess:
    pid: int
    generation: int
    started: float = field(default_factory=monotonic)


def _parse_bind(address: str) -> tuple[int, Any]:
    if address.startswith("unix:"):
        return socket.AF_UNIX, address[5:]
    host, _, port = address.rpartition(":")
    host = host.strip("[]") or "0.0.0.0"
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    return family, (host, int(port))


def bind_listener(address: str, backlog: int) -> socket.socket:
    """Create a listening socket for ``address``; OSError explains failures."""
    family, target = _parse_bind(address)
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        if family == socket.AF_UNIX:
            with contextlib.suppress(FileNotFoundError):
                if stat.S_ISSOCK(os.stat(target).st_mode):
                    os.unlink(target)  # a stale socket file from an earlier run
        else:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.bind(target)
        sock.listen(backlog)
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock


def describe_bind_error(address: str, exc: OSError) -> str:
    if exc.errno == errno.EADDRINUSE:
        return f"cannot listen on {address}: address already in use (is another server running?)"
    if exc.errno == errno.EACCES:
        return f"cannot listen on {address}: permission denied"
    if exc.errno == errno.EADDRNOTAVAIL:
        return f"cannot listen on {address}: address not available on this machine"
    return f"cannot listen on {address}: {exc.strerror or exc}"


class Arbiter:
    """Supervises the workers of one server run; :meth:`run` returns the exit code."""

    def __init__(self, config: Config, app: Any, access_log: AccessLog) -> None:
        self.config = config
        self.app = app
        self.access_log = access_log
        self.listeners: list[socket.socket] = []
        self.workers: dict[int, WorkerProcess] = {}
        self.generation = 0
        self.pid = os.getpid()
        self._wake = Event()
        self._stopping = False
        self._fast = False
        self._reload = False
        self._backoff = 0.0
        self._next_spawn = 0.0
        self._signal_handlers: list[Any] = []
        self._metrics_dir: str | None = None

    # -- set-up -----------------------------------------------------------------------------
    def bind(self) -> None:
        for address in self.config.bind:
            try:
                self.listeners.append(bind_listener(address, self.config.backlog))
            except OSError as exc:
                self.close_listeners()
                fail(describe_bind_error(address, exc))
            except (ValueError, socket.gaierror) as exc:
                self.close_listeners()
                fail(f"cannot listen on {address}: {exc}")

    def close_listeners(self) -> None:
        for listener in self.listeners:
            with contextlib.suppress(OSError):
                if listener.family == socket.AF_UNIX:
                    path = listener.getsockname()
                    if path:
                        os.unlink(path)
            listener.close()
        self.listeners.clear()

    def _install_signals(self) -> None:
        handlers = {signal.SIGTERM: self._on_term, signal.SIGINT: self._on_term,
                    signal.SIGQUIT: self._on_quit, signal.SIGHUP: self._on_hup,
                    signal.SIGCHLD: self._wake.set}
        for signum, callback in handlers.items():
            self._signal_handlers.append(gevent.signal_handler(signum, callback))

    def _on_term(self) -> None:
        self._stopping = True
        self._wake.set()

    def _on_quit(self) -> None:
        self._stopping = True
        self._fast = True
        self._wake.set()

    def _on_hup(self) -> None:
        self._reload = True
        self._wake.set()

    # -- workers ----------------------------------------------------------------------------
    def spawn_worker(self) -> None:
        pid = os.fork()
        if pid == 0:  # the child: never returns
            for handler in self._signal_handlers:
                handler.cancel()
            # worker imports prometheus-client, which picks its storage at import time from
            # PROMETHEUS_MULTIPROC_DIR: only set by run(), so not at the top of this module.
            from .worker import Worker  # noqa: PLC0415

            Worker(self.listeners, self.app, self.config, self.access_log, self.pid).run()
        self.workers[pid] = WorkerProcess(pid, self.generation)
        log.debug("spawned worker %d (generation %d)", pid, self.generation)

    def _signal_workers(self, signum: int, pids: list[int] | None = None) -> None:
        for pid in pids if pids is not None else list(self.workers):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signum)

    def _reap(self) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            worker = self.workers.pop(pid, None)
            if worker is None:
                continue
            _mark_dead(pid)
            if self._stopping or worker.generation != self.generation:
                continue  # expected: told to stop
            lived = monotonic() - worker.started
            code = os.waitstatus_to_exitcode(status)
            how = f"signal {-code}" if code < 0 else f"exit code {code}"
            if lived > HEALTHY_AFTER:
                self._backoff = 0.0  # an established worker died: replace it at once
            else:  # dying young, again and again: back off so a crash loop cannot spin
                self._backoff = min(MAX_BACKOFF, self._backoff * 2) or FIRST_BACKOFF
            self._next_spawn = monotonic() + self._backoff
            log.warning("worker %d died (%s) after %.1fs; replacing it", pid, how, lived)

    def _maintain(self) -> None:
        current = [w for w in self.workers.values() if w.generation == self.generation]
        missing = self.config.workers - len(current)
        if missing > 0 and monotonic() >= self._next_spawn:
            for _ in range(missing):
                self.spawn_worker()

    def _do_reload(self) -> None:
        self._reload = False
        old = list(self.workers)
        self.generation += 1
        log.info("reload: starting %d new worker(s), draining %d old", self.config.workers,
                 len(old))
        for _ in range(self.config.workers):
            self.spawn_worker()
        self._signal_workers(signal.SIGTERM, old)

    # -- main loop --------------------------------------------------------------------------
    def run(self) -> int:
        self._setup_metrics_dir()
        self.bind()
        self._install_signals()
        addresses = ", ".join(self.config.bind)
        log.info("listening on %s with %d worker(s) (master pid %d)", addresses,
                 self.config.workers, self.pid)
        try:
            self._maintain()
            while not self._stopping:
                # Wake for a pending replacement when its backoff ends, not up to 0.5 s late.
                self._wake.wait(min(0.5, max(0.0, self._next_spawn - monotonic())) or 0.5)
                self._wake.clear()
                self._reap()
                if self._stopping:
                    break
                if self._reload:
                    self._do_reload()
                self._maintain()
            self._shutdown()
        finally:
            self.close_listeners()
            self._cleanup_metrics_dir()
        log.info("master %d exiting", self.pid)
        return 0

    def _shutdown(self) -> None:
        signum = signal.SIGQUIT if self._fast else signal.SIGTERM
        log.info("shutting down: %s to %d worker(s)", signal.Signals(signum).name,
                 len(self.workers))
        self._signal_workers(signum)
        deadline = monotonic() + (1.0 if self._fast else self.config.graceful_timeout + 1.0)
        while self.workers and monotonic() < deadline:
            self._wake.wait(0.1)
            self._wake.clear()
            self._reap()
        if self.workers:
            log.warning("killing %d worker(s) that outlived the graceful timeout",
                        len(self.workers))
            self._signal_workers(signal.SIGKILL)
            while self.workers:
                gevent.sleep(0.05)
                self._reap()

    # -- metrics directory ------------------------------------------------------------------
    def _setup_metrics_dir(self) -> None:
        if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            self._metrics_dir = tempfile.mkdtemp(prefix="ctxserver-metrics-")
            os.environ["PROMETHEUS_MULTIPROC_DIR"] = self._metrics_dir

    def _cleanup_metrics_dir(self) -> None:
        if self._metrics_dir:
            shutil.rmtree(self._metrics_dir, ignore_errors=True)


def _mark_dead(pid: int) -> None:
    # After run() set PROMETHEUS_MULTIPROC_DIR (see spawn_worker).
    from .metrics import mark_worker_dead  # noqa: PLC0415

    try:
        mark_worker_dead(pid)
    except OSError:  # pragma: no cover - best effort
        log.debug("could not clean metrics of worker %d", pid, exc_info=True)
