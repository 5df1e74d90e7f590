"""The master process: bind, fork workers, supervise them, handle signals.

After gunicorn's arbiter.  The master binds every listener once (so a port in use is a
clear error before any worker exists), forks ``--workers`` children that inherit the
sockets, and then only supervises, in one loop that wakes on a signal, on a worker's nudge
(a byte on a pipe), or when the next deadline is due:

* **booting**: each worker imports the app after the fork (``--preload``: the master did,
  before); the first worker that reports ready gets the "listening on" line. A worker that
  cannot import the app at start-up makes the master print its one-line reason and exit 2 —
  no restart loop;
* **watchdog**: a worker whose heartbeat is older than ``--timeout`` is asked for its stack
  (:mod:`server.watchdog`), killed, logged with the request ids it had in flight, and
  replaced at once;
* **a worker that dies** is replaced — at once if it had been serving for a while
  (:data:`HEALTHY_AFTER`), with exponential backoff while workers keep dying young or fail
  to boot, so a crash loop cannot spin. Only real crashes back off: a worker the watchdog
  killed, or one that was asked to stop, does not (see :data:`EXITS`);
* **successors first**: a worker that reached ``--max-requests`` (RETIRING) and the old
  generation after a HUP are told to drain (TERM) only once enough successors are ready, so
  no request waits for an import; a HUP whose new workers cannot boot is abandoned and the
  running workers keep serving, with the settings they had;
* **reload** (HUP): the settings are resolved again (:mod:`server.reload`) and the new
  generation runs with them; the master's own (the watchdog's ``--timeout``, the drain
  deadlines) judge each worker by the settings it was forked with. A config file that no
  longer loads refuses the reload: one ERROR line, nothing changes;
* **deadlines**: a worker told to drain that is still alive ``--graceful-timeout`` (+
  :data:`KILL_GRACE`) later is killed (SIGKILL).

Signals: see :meth:`Arbiter.signal_actions`; every other catchable signal whose default
would end the process (:data:`server.signals.IGNORED`) is logged and ignored.
"""

from __future__ import annotations

import contextlib
import logging
import os
import random
import signal
import socket
import sys
import tempfile
from dataclasses import dataclass
from enum import Enum
from time import monotonic
from typing import Any

import gevent
from gevent.select import select

from . import accelerators
from .config import Config, ConfigError, fail
from .hooks import HookError, Hooks
from .liveness import BOOT_ERROR, WorkerState, WorkerStatus
from .logs import AccessLog, reopen_error_log, restyle_logging
from .metrics import mark_worker_dead
from .reload import ConfigSources, next_access_log, plan_reload
from .signals import IGNORED, quiet_fork_window, signal_name
from .sockets import bind_listener, close_listener, describe_bind_error, listener_address
from .watchdog import collect_stack, timeout_report
from .worker import Worker

__all__ = ["EXITS", "Arbiter", "ExitKind", "WorkerProcess", "classify_exit"]

log = logging.getLogger("server.arbiter")

MAX_BACKOFF = 10.0
FIRST_BACKOFF = 0.1
HEALTHY_AFTER = 5.0  # a worker that lived this long resets the crash backoff
#: Beyond ``--graceful-timeout``, seconds a draining worker gets for its own clean-up (it
#: closes connections still busy at the timeout, flushes its metrics) before SIGKILL.
KILL_GRACE = 1.0
#: How long a fast shutdown (QUIT) waits before SIGKILL.
FAST_GRACE = 1.0
#: The master's longest sleep: nothing it waits for is signalled otherwise.
TICK = 1.0
#: With a ``worker_abort`` hook: seconds a timed-out worker gets to run it before SIGKILL.
ABORT_GRACE = 1.0


class ExitKind(Enum):
    STOPPED = "stopped"  # the master told it to stop (drain, fast exit, kill at a deadline)
    TIMED_OUT = "timed out"  # killed by the watchdog
    BOOT_FAILED = "failed to boot"  # could not import the app (its reason is in its page)
    # Anything else: a bug of ours, or a signal from outside (OOM...). Never the app's
    # exception, BaseException included: the handler answers it and the worker serves on
    # (tests/test_isolation_holes.py), so the backoff below only ever slows our own crashes.
    CRASHED = "died"


#: What an exit means to the master: (log level, apply the crash-loop backoff).
#: A STOPPED worker was replaced before it was told to go (or is not wanted any more); a
#: TIMED_OUT one is replaced at once — the app hung, our code did not crash, and the
#: watchdog itself bounds how often that can happen.
EXITS: dict[ExitKind, tuple[int, bool]] = {
    ExitKind.STOPPED: (logging.DEBUG, False),
    ExitKind.TIMED_OUT: (logging.ERROR, False),
    ExitKind.BOOT_FAILED: (logging.ERROR, True),
    ExitKind.CRASHED: (logging.WARNING, True),
}


@dataclass
class WorkerProcess:
    """The master's record of one worker process."""

    worker: Worker  # the object hooks will see (pid, cfg, log, age)
    generation: int
    started: float
    #: Why the master told it to stop, once it did (it is then no longer counted).
    leaving: str | None = None
    kill_at: float = float("inf")  # SIGKILL deadline, once told to drain
    grace: float = 0.0  # what the deadline allowed (for the log)
    timed_out: bool = False

    @property
    def pid(self) -> int:
        assert self.worker.pid is not None
        return self.worker.pid

    @property
    def status(self) -> WorkerStatus:
        return self.worker.status

    def close(self) -> None:
        self.status.close()
        self.worker.dump.close()


@dataclass(frozen=True)
class MasterSettings:
    """What a reload replaces in the master: kept until the new generation serves, so that
    an abandoned reload puts it back."""

    cfg: Config
    access_log: AccessLog
    num_workers: int


def classify_exit(record: WorkerProcess, code: int) -> ExitKind:
    """Why a worker ended, from what the master did to it and its exit code."""
    if record.timed_out:
        return ExitKind.TIMED_OUT
    if record.leaving is not None:
        return ExitKind.STOPPED
    if code == BOOT_ERROR:
        return ExitKind.BOOT_FAILED
    return ExitKind.CRASHED


def describe_exit(code: int) -> str:
    return f"signal {signal_name(-code)}" if code < 0 else f"exit code {code}"


class Arbiter:
    """Supervises the workers of one server run; :meth:`run` returns the exit code."""

    def __init__(self, cfg: Config, app: Any, access_log: AccessLog,
                 sources: ConfigSources) -> None:
        # The settings of the current generation (a HUP replaces them; each worker keeps
        # the ones it was forked with: ``record.worker.cfg``).
        self.cfg = cfg
        self.log = log
        self.hooks = Hooks(cfg.hooks, log)
        self.app = app  # None unless --preload
        self.access_log = access_log
        self.sources = sources
        #: The settings before a reload whose new generation is not serving yet.
        self._before_reload: MasterSettings | None = None
        self.pid = os.getpid()
        self.listeners: list[socket.socket] = []
        self.workers: dict[int, WorkerProcess] = {}
        #: Wanted workers; TTIN/TTOU change it.
        self.num_workers = cfg.workers
        self.generation = 0
        self.worker_age = 0
        # Supervision state.
        self._signals: list[int] = []
        self._signal_handlers: list[Any] = []
        # The master sleeps on this pipe: signal handlers and workers (a state change) write
        # a byte to wake it, so it needs no second greenlet and wakes at once.
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)
        self._stopping = False
        self._fast = False
        self._ever_ready = False
        self._fatal: str | None = None
        self._backoff = 0.0
        self._next_spawn = 0.0

    def signal_actions(self) -> dict[int, Any]:
        """What each signal to the master does (gunicorn's meanings)."""
        return {
            signal.SIGTERM: self.stop,  # graceful: workers drain within --graceful-timeout
            signal.SIGINT: self.stop,
            signal.SIGQUIT: self.stop_now,  # fast: workers exit at once
            signal.SIGHUP: self.reload,  # new workers (new code), then the old ones drain
            signal.SIGUSR1: self.reopen_logs,  # logrotate: reopen in the master and workers
            signal.SIGUSR2: self.refuse_upgrade,
            signal.SIGTTIN: self.add_worker,
            signal.SIGTTOU: self.remove_worker,
            signal.SIGWINCH: self.ignore,  # gunicorn: only meaningful when daemonized
            signal.SIGCHLD: self.ignore,  # reaping happens on every turn of the loop
        }

    # -- set-up -----------------------------------------------------------------------------
    def bind(self) -> None:
        for address in self.cfg.bind:
            try:
                self.listeners.append(bind_listener(address, self.cfg.backlog, self.cfg.umask))
            except OSError as exc:
                self.close_listeners()
                fail(describe_bind_error(address, exc))
            except (ValueError, socket.gaierror) as exc:
                self.close_listeners()
                fail(f"cannot listen on {address}: {exc}")

    def close_listeners(self) -> None:
        for listener in self.listeners:
            close_listener(listener)
        self.listeners.clear()

    def _install_signals(self) -> None:
        for signum in (*self.signal_actions(), *IGNORED):
            self._signal_handlers.append(gevent.signal_handler(signum, self._queue, signum))

    def _queue(self, signum: int) -> None:
        self._signals.append(signum)
        with contextlib.suppress(OSError):  # a full pipe wakes the master as well
            os.write(self._wake_w, b"!")

    def _sleep(self, timeout: float) -> None:
        """Until a signal, a worker's nudge, or ``timeout`` seconds."""
        readable, _, _ = select([self._wake_r], [], [], timeout)
        if readable:
            with contextlib.suppress(BlockingIOError):
                os.read(self._wake_r, 4096)

    def _handle_signals(self) -> None:
        actions = self.signal_actions()
        while self._signals:
            signum = self._signals.pop(0)
            action = actions.get(signum)
            if action is None:
                log.info("ignoring signal %s", signal_name(signum))
                continue
            if signum != signal.SIGCHLD:
                log.debug("handling signal %s", signal_name(signum))
            action()

    # -- signal actions ---------------------------------------------------------------------
    def stop(self) -> None:
        self._stopping = True

    def stop_now(self) -> None:
        self._stopping = True
        self._fast = True

    def reload(self) -> None:
        """HUP: re-read the settings, then fork a new generation with them (gunicorn's)."""
        running = sum(1 for r in self.workers.values() if r.leaving is None)
        try:
            plan = plan_reload(self.cfg, self.sources.reread(warn=self._config_warning))
            access_log = next_access_log(self.access_log, self.cfg, plan.config)
        except ConfigError as exc:
            log.error("reload refused: %s; nothing changed, the %d running worker(s) keep "
                      "serving", exc, running)
            return
        if self._before_reload is None:
            self._before_reload = MasterSettings(self.cfg, self.access_log, self.num_workers)
        else:  # a HUP during a HUP: the one in between is superseded
            self.access_log.close_unless_shared(access_log, self._before_reload.access_log)
        # TTIN/TTOU's count stays unless the file changes ``workers`` (gunicorn resets it).
        wanted = plan.config.workers if "workers" in plan.changed else self.num_workers
        self._apply(MasterSettings(plan.config, access_log, wanted))
        for name, why in plan.kept:
            log.warning("reload: %s changed; restart to apply it (%s)", name, why)
        log.info("reload: %s", f"changed {', '.join(plan.changed)}" if plan.changed
                 else "no setting changed")
        self.hooks("on_reload", self)  # the re-read file's, as in gunicorn
        self.generation += 1
        log.info("reload: starting %d new worker(s); the %d running one(s) drain once the new "
                 "ones are ready", self.num_workers, running)

    def _config_warning(self, line: str) -> None:
        log.warning("%s", line)

    def _apply(self, settings: MasterSettings) -> None:
        """Make ``settings`` the master's: workers forked from now on run with them."""
        self.sources.apply_env(settings.cfg.env)
        restyle_logging(settings.cfg.log_level, settings.cfg.log_format)
        self.cfg = settings.cfg
        self.hooks = Hooks(settings.cfg.hooks, log)
        self.access_log = settings.access_log
        if settings.num_workers != self.num_workers:
            old, self.num_workers = self.num_workers, settings.num_workers
            self.hooks("nworkers_changed", self, self.num_workers, old)

    def _reload_done(self) -> None:
        """The new generation serves: the settings before the reload are gone for good."""
        before, self._before_reload = self._before_reload, None
        if before is not None:
            before.access_log.close_unless_shared(self.access_log)

    def reopen_logs(self) -> None:
        try:
            reopen_error_log()
        except OSError as exc:
            log.error("cannot reopen the error log %r: %s", self.cfg.error_log,
                      exc.strerror or exc)
        try:
            self.access_log.reopen()
        except OSError as exc:
            log.error("cannot reopen the access log %r: %s", self.access_log.path,
                      exc.strerror or exc)
        log.info("USR1: logs reopened; the workers reopen theirs")
        self._signal_workers(signal.SIGUSR1, list(self.workers))

    def refuse_upgrade(self) -> None:
        log.warning("USR2: binary upgrade is not supported; send HUP to load new code into "
                    "new workers (the app is imported in each worker unless --preload)")

    def add_worker(self) -> None:
        self.num_workers += 1
        log.info("TTIN: %d worker(s) wanted", self.num_workers)
        self.hooks("nworkers_changed", self, self.num_workers, self.num_workers - 1)

    def remove_worker(self) -> None:
        if self.num_workers <= 1:
            log.info("TTOU: staying at 1 worker")
            return
        self.num_workers -= 1
        log.info("TTOU: %d worker(s) wanted", self.num_workers)
        self.hooks("nworkers_changed", self, self.num_workers, self.num_workers + 1)

    def ignore(self) -> None:
        pass

    # -- workers ----------------------------------------------------------------------------
    def spawn_worker(self) -> None:
        self.worker_age += 1
        # gunicorn's jitter: each worker's limit is max_requests + randint(0, jitter).
        limit = (self.cfg.max_requests + random.randint(0, self.cfg.max_requests_jitter)
                 if self.cfg.max_requests else 0)
        # Where the worker's stack goes when the watchdog asks (unlinked; closed on exit).
        dump = tempfile.TemporaryFile(prefix="ctxserver-stack-")  # noqa: SIM115
        worker = Worker(age=self.worker_age, ppid=self.pid, listeners=self.listeners,
                        app=self.app, cfg=self.cfg, access_log=self.access_log,
                        status=WorkerStatus(self.cfg.worker_connections), dump=dump,
                        wake_fd=self._wake_w, max_requests=limit, server=self)
        self.hooks("pre_fork", self, worker)
        with quiet_fork_window():
            pid = os.fork()
            if pid == 0:  # the child: never returns
                self._become_worker(worker)
        worker.pid = pid
        self.workers[pid] = WorkerProcess(worker, self.generation, monotonic())
        log.debug("spawned worker %d (generation %d)", pid, self.generation)

    def _become_worker(self, worker: Worker) -> None:
        for handler in self._signal_handlers:
            handler.cancel()
        for sibling in self.workers.values():  # not ours to touch
            with contextlib.suppress(Exception):
                sibling.close()
        os.close(self._wake_r)  # the master's end of the wake-up pipe
        worker.pid = os.getpid()
        self.hooks("post_fork", self, worker)
        worker.run()

    def _signal_workers(self, signum: int, pids: list[int]) -> None:
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signum)

    def _tell_to_stop(self, record: WorkerProcess, why: str, signum: int = signal.SIGTERM,
                      grace: float | None = None) -> None:
        """Drain (TERM) or exit (QUIT/KILL); the worker no longer counts as wanted."""
        record.leaving = why
        # Its own --graceful-timeout: the one it drains by (a HUP may have changed ours).
        grace = record.worker.cfg.graceful_timeout + KILL_GRACE if grace is None else grace
        if monotonic() + grace < record.kill_at:
            record.kill_at, record.grace = monotonic() + grace, grace
        log.debug("worker %d: %s (%s)", record.pid, signal_name(signum), why)
        self._signal_workers(signum, [record.pid])

    def _reap(self) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            record = self.workers.pop(pid, None)
            if record is None:
                continue
            try:
                self._exited(record, os.waitstatus_to_exitcode(status))
            finally:
                record.close()
                _mark_dead(pid)
                self.hooks("child_exit", self, record.worker)

    def _exited(self, record: WorkerProcess, code: int) -> None:
        kind = classify_exit(record, code)
        booting = record.status.state() is WorkerState.BOOTING
        reason = (record.status.boot_error() if kind is ExitKind.BOOT_FAILED
                  else f"worker {record.pid} {kind.value} ({describe_exit(code)})")
        if self._stopping:
            log.debug("worker %d exited (%s)", record.pid, describe_exit(code))
            return
        if kind is not ExitKind.STOPPED and booting and not self._ever_ready:
            self._fatal = self._boot_failure(record, kind, reason)
            return
        if (kind is not ExitKind.STOPPED and booting and record.generation == self.generation
                and self._old_generation()):
            self._abandon_reload(reason)
            return
        level, backoff = EXITS[kind]
        how = describe_exit(code)
        if kind is ExitKind.CRASHED and code == -signal.SIGKILL:
            how += ", not sent by the master: out of memory?"
        lived = monotonic() - record.started
        if backoff:
            young = lived < HEALTHY_AFTER or kind is ExitKind.BOOT_FAILED
            self._backoff = (min(MAX_BACKOFF, self._backoff * 2) or FIRST_BACKOFF) if young else 0
            self._next_spawn = monotonic() + self._backoff
        wanted = record.generation == self.generation and record.leaving is None
        then = (f"; replacing it in {self._backoff:.1f} s" if backoff and self._backoff
                else "; replacing it" if wanted else "")
        if kind is ExitKind.BOOT_FAILED:
            log.log(level, "worker %d failed to boot: %s%s", record.pid, reason, then)
        else:
            log.log(level, "worker %d %s (%s) after %.1f s%s", record.pid, kind.value, how,
                    lived, then)

    def _boot_failure(self, record: WorkerProcess, kind: ExitKind, reason: str) -> str:
        """The one line the master exits with when no worker could start."""
        if kind is ExitKind.TIMED_OUT:
            return (f"worker {record.pid} did not finish booting within --timeout "
                    f"{record.worker.cfg.timeout:g} s (its stack is in the log above)")
        return reason if kind is ExitKind.BOOT_FAILED else f"{reason} while booting"

    def _old_generation(self) -> list[WorkerProcess]:
        return [r for r in self.workers.values()
                if r.generation < self.generation and r.leaving is None]

    def _abandon_reload(self, reason: str) -> None:
        """A worker of the new generation could not boot: keep the running ones, and the
        settings they run with."""
        old = self._old_generation()
        before, self._before_reload = self._before_reload, None
        if before is not None:
            abandoned = self.access_log
            self._apply(before)
            abandoned.close_unless_shared(before.access_log)
        for record in list(self.workers.values()):
            if record.generation == self.generation and record.leaving is None:
                self._tell_to_stop(record, "reload abandoned")
        self.generation += 1  # the running workers become the current generation
        for record in old:
            record.generation = self.generation
        log.error("reload failed: %s; the %d running worker(s) keep serving", reason, len(old))

    # -- supervision ------------------------------------------------------------------------
    def _check_states(self) -> None:
        if self._ever_ready:
            return
        if any(r.status.state() is not WorkerState.BOOTING for r in self.workers.values()):
            self._ever_ready = True
            addresses = ", ".join(listener_address(sock) for sock in self.listeners)
            log.info("listening on %s with %d worker(s) (master pid %d)", addresses,
                     self.num_workers, self.pid)
            # Here, not earlier: a start-up error stays the one line on stderr.
            log.info("%s", accelerators.summary())

    def _watch(self) -> None:
        """The watchdog: kill every worker whose heartbeat is older than its --timeout (the
        one it was forked with, which set how often it beats)."""
        now = monotonic()
        for record in list(self.workers.values()):
            silent = now - record.status.last_beat()
            timeout = record.worker.cfg.timeout
            if timeout and not record.timed_out and silent > timeout:
                self._time_out(record, silent)

    def _time_out(self, record: WorkerProcess, silent: float) -> None:
        record.timed_out = True
        booting = record.status.state() is WorkerState.BOOTING
        in_flight = record.status.in_flight()
        stack = collect_stack(record.pid, record.worker.dump)
        if "worker_abort" in record.worker.hooks:  # it runs the hook after its stack, exits
            record.leaving = "timed out, running worker_abort"
            record.kill_at, record.grace = monotonic() + ABORT_GRACE, ABORT_GRACE
        else:
            self._signal_workers(signal.SIGKILL, [record.pid])
        log.critical(timeout_report(record.pid, silent, record.worker.cfg.timeout, booting,
                                    in_flight, stack, monotonic()))

    def _enforce_deadlines(self) -> None:
        now = monotonic()
        for record in self.workers.values():
            if record.kill_at <= now:
                record.kill_at = float("inf")
                log.warning("worker %d still alive %.1f s after it was told to stop (%s); "
                            "killing it", record.pid, record.grace, record.leaving)
                self._signal_workers(signal.SIGKILL, [record.pid])

    def _staying(self) -> list[WorkerProcess]:
        """Workers that count: not told to go, not killed by the watchdog (which is replaced
        at once — except at start-up, where its end may be the end of the server)."""
        return [r for r in self.workers.values() if r.leaving is None
                and not (r.timed_out and self._ever_ready)]

    def _retire(self) -> None:
        """TERM the old generation and RETIRING workers once their successors are ready."""
        staying = self._staying()
        current = [r for r in staying if r.generation == self.generation]
        serving = [r for r in current if r.status.state() is WorkerState.SERVING]
        if len(serving) >= self.num_workers:
            self._reload_done()
            for record in staying:
                if record.generation < self.generation:
                    self._tell_to_stop(record, "reload")
        retiring = sorted((r for r in current if r.status.state() is WorkerState.RETIRING),
                          key=lambda r: r.started)
        spare = len(serving) + len(retiring) - self.num_workers
        for record in retiring[:max(0, spare)]:
            self._tell_to_stop(record, "max requests")

    def _maintain(self) -> None:
        """Fork what is missing of the current generation; trim what TTOU made too many."""
        wanted = sorted((r for r in self._staying() if r.generation == self.generation
                         and r.status.state() is not WorkerState.RETIRING),
                        key=lambda r: r.started)
        missing = self.num_workers - len(wanted)
        if missing > 0 and monotonic() >= self._next_spawn:
            for _ in range(missing):
                self.spawn_worker()
        for record in wanted[:max(0, -missing)]:  # gunicorn too removes the oldest
            self._tell_to_stop(record, "fewer workers (TTOU)")

    def _next_deadline(self) -> float:
        now = monotonic()
        deadlines = [now + TICK]
        for record in self.workers.values():
            deadlines.append(record.kill_at)
            timeout = record.worker.cfg.timeout
            if timeout and not record.timed_out:
                deadlines.append(record.status.last_beat() + timeout + 0.01)
        if self._next_spawn > now:
            deadlines.append(self._next_spawn)
        return max(0.0, min(deadlines) - now)

    # -- main loop --------------------------------------------------------------------------
    def run(self) -> int:
        try:
            self.hooks.fatal("on_starting", self)
        except HookError as exc:
            fail(str(exc))
        self._write_pidfile()
        try:
            return self._run()
        finally:
            self._remove_pidfile()

    def _write_pidfile(self) -> None:
        if not self.cfg.pid:
            return
        try:
            with open(self.cfg.pid, "w", encoding="ascii") as file:
                file.write(f"{self.pid}\n")
        except OSError as exc:
            fail(f"cannot write pid file {self.cfg.pid!r}: {exc.strerror or exc}")

    def _remove_pidfile(self) -> None:
        if self.cfg.pid and os.getpid() == self.pid:
            with contextlib.suppress(OSError):
                os.unlink(self.cfg.pid)

    def _run(self) -> int:
        self.bind()
        try:
            self.hooks.fatal("when_ready", self)
        except HookError as exc:
            self.close_listeners()
            fail(str(exc))
        self._install_signals()
        try:
            self._maintain()
            while not self._stopping and self._fatal is None:
                self._sleep(self._next_deadline())
                self._handle_signals()
                self._reap()
                if self._stopping or self._fatal is not None:
                    break
                self._check_states()
                self._watch()
                self._enforce_deadlines()
                self._retire()
                self._maintain()
            self._shutdown()
        finally:
            self.close_listeners()
        self.hooks("on_exit", self)
        if self._fatal is not None:
            sys.stderr.write(f"server: error: {self._fatal}\n")
            sys.stderr.flush()
            return 2
        log.info("master %d exiting", self.pid)
        return 0

    def _shutdown(self) -> None:
        fatal = self._fatal is not None
        self._stopping = True
        # No worker ever served when the start failed: nothing to drain, no log lines to add.
        signum = (signal.SIGKILL if fatal else signal.SIGQUIT if self._fast
                  else signal.SIGTERM)
        if not fatal:
            log.info("shutting down: %s to %d worker(s)", signal_name(signum),
                     len(self.workers))
        grace = FAST_GRACE if signum != signal.SIGTERM else None
        for record in list(self.workers.values()):
            self._tell_to_stop(record, "shutdown", signum, grace)
        while self.workers:
            self._sleep(min(0.1, self._next_deadline()))
            self._handle_signals()  # a QUIT now turns the graceful stop into a fast one
            if self._fast and signum == signal.SIGTERM:
                signum = signal.SIGQUIT
                for record in list(self.workers.values()):
                    self._tell_to_stop(record, "shutdown", signum, FAST_GRACE)
            self._reap()
            self._enforce_deadlines()


def _mark_dead(pid: int) -> None:
    try:
        mark_worker_dead(pid)
    except OSError:  # pragma: no cover - best effort
        log.debug("could not clean metrics of worker %d", pid, exc_info=True)
