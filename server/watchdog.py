"""Blocked event loops: the stack of what blocks a worker, for the master's timeout report,
and the worker's optional early warning (``--block-warning``).

A gevent worker serves everything from one event loop; a view in a CPU loop or in a C call
that gevent did not patch (``ctypes``, a C driver's blocking socket) stops that loop, and
with it every request of the worker, ``/healthz`` included.  gunicorn's answer is
``--timeout``: the master kills a worker whose heartbeat is older than that.  Ours too
(see :mod:`server.liveness`), and before it kills, it asks the worker for the stack of the
code that blocks it:

* :func:`install_stack_dumps` (worker) registers :mod:`faulthandler` on :data:`STACK_SIGNAL`
  with a file the master handed over before the fork. faulthandler's handler is C: it
  writes every thread's Python stack while the loop is blocked in Python *or* in C, where a
  Python signal handler would wait for the blocking call to return. Then it lets the signal
  take its default action, so the worker dies in the handler: a blocking C call the signal
  interrupted cannot return and serve on for the moment until the master's SIGKILL;
* :func:`collect_stack` (master) sends the signal and waits (at most :data:`STACK_WAIT`)
  until the dump stops growing; :func:`timeout_report` makes one log record of it with the
  request ids in flight (written by the worker into the shared page, readable now).

An operator may ask any worker for its stacks too: ``kill -USR2 <worker pid>`` writes them
to the error log (stderr) and changes nothing else.

:func:`start_block_monitor` (worker) is the early warning: gevent's monitor thread
(``max_blocking_time``) notices a loop that did not switch greenlets for that long and we
log the blocking greenlet's stack — without killing anything.  The report is formatted and
written in the monitor thread with ``os.write``: the loop it would otherwise go through is
the one that is blocked, and logging's locks are gevent locks after monkey-patching.
"""

from __future__ import annotations

import contextlib
import faulthandler
import logging
import os
import signal
import sys
import traceback
import warnings
from collections.abc import Callable
from time import monotonic
from typing import IO, Any

import gevent
import zope.event
from gevent.events import EventLoopBlocked

__all__ = ["DEBUG_SIGNAL", "STACK_SIGNAL", "STACK_WAIT", "collect_stack",
           "install_stack_dumps", "start_block_monitor", "timeout_report", "write_boot_stack"]

#: "Write your stacks to the dump file, then die": a real-time signal nobody sends by habit
#: (gunicorn sends SIGABRT on a timeout, whose default action also writes a core file).
STACK_SIGNAL = signal.SIGRTMIN + 2
#: "Write your stacks to the error log": for an operator; the worker serves on.
DEBUG_SIGNAL = signal.SIGUSR2
#: Seconds the master waits for the dump (it takes milliseconds; a worker stuck in the
#: kernel, state D, may never write one).
STACK_WAIT = 1.0
#: The dump is complete when it has not grown for this long.
_SETTLED = 0.05


# ------------------------------------------------------------------------------ worker side


def install_stack_dumps(dump: IO[bytes],
                        then: Callable[[int, Any], None] | None = None) -> None:
    """:data:`STACK_SIGNAL`: all threads' stacks to ``dump``, then die of the signal (or
    call ``then``, a Python handler: the ``worker_abort`` hook); :data:`DEBUG_SIGNAL`: the
    same to stderr, and serve on; a fatal signal (SEGV, ABRT...): the same to stderr before
    the process dies, so a crash in C code says where."""
    # what chain=True passes the signal on to
    signal.signal(STACK_SIGNAL, then or signal.SIG_DFL)
    faulthandler.register(STACK_SIGNAL, file=dump, all_threads=True, chain=True)
    faulthandler.register(DEBUG_SIGNAL, file=sys.stderr, all_threads=True, chain=False)
    faulthandler.enable(file=sys.stderr, all_threads=True)


def write_boot_stack(dump: IO[bytes], booting: Any) -> None:
    """Write the stack of the greenlet that is importing the app into ``dump``.

    An import that waits cooperatively (a database connect at import time, gevent-patched)
    keeps the event loop free, so the watchdog's C dump would show only the idle hub; the
    worker writes this just before the watchdog is due, in faulthandler's format.
    """
    frame = getattr(booting, "gr_frame", None)
    if frame is None:
        return
    ours = os.path.dirname(os.path.abspath(__file__)) + os.sep  # how the worker got there
    lines = [f'  File "{f.filename}", line {f.lineno} in {f.name}'
             for f in reversed(traceback.extract_stack(frame))
             if not f.filename.startswith((ours, "<frozen runpy>"))]
    text = "The booting greenlet (most recent call first):\n" + "\n".join(lines) + "\n\n"
    with contextlib.suppress(OSError, ValueError):
        os.write(dump.fileno(), text.encode("utf-8", "replace"))


def start_block_monitor(seconds: float, in_flight: Callable[[], list[tuple[str, float]]],
                        logger: logging.Logger) -> None:
    """Log the stack of any greenlet that keeps the loop from switching for ``seconds``.

    One record per blocking episode (gevent reports every period while the block lasts).
    Costs a greenlet-switch trace function for as long as the worker runs.
    """
    gevent.config.monitor_thread = True
    gevent.config.max_blocking_time = seconds
    gevent.config.print_blocking_reports = False  # we write our own, in the log's format
    last: dict[str, Any] = {"greenlet": None, "at": 0.0}

    def on_event(event: object) -> None:
        if not isinstance(event, EventLoopBlocked):
            return
        now = monotonic()
        # gevent reports every period while the block lasts; the monitor thread itself may
        # wait for a busy CPU, so "the same episode" allows for a late report.
        same = event.greenlet is last["greenlet"] and now - last["at"] < max(5.0, 3 * seconds)
        last.update(greenlet=event.greenlet, at=now)
        if not same:
            # The ids first: formatting the stack takes long enough for the main thread to
            # get the GIL back, finish the blocking request and free its slot.
            requests = in_flight()
            _write_record(logger, logging.WARNING, block_report(
                os.getpid(), seconds, _thread_stack(event.hub), requests, now))

    zope.event.subscribers.append(on_event)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "install psutil" (memory monitoring, not used)
        gevent.get_hub().start_periodic_monitoring_thread()


def _thread_stack(hub: Any) -> str:
    # A documented CPython API (for debuggers): the one way to read another thread's frame.
    frame = sys._current_frames().get(getattr(hub, "thread_ident", None))  # noqa: SLF001
    return "".join(traceback.format_stack(frame)) if frame is not None else "(no stack)\n"


def _write_record(logger: logging.Logger, level: int, message: str) -> None:
    """Format a record with the root handler's formatter and write it to stderr directly."""
    record = logger.makeRecord(logger.name, level, __file__, 0, message, None, None)
    handlers = logging.getLogger().handlers
    text = handlers[0].format(record) if handlers else message
    with contextlib.suppress(OSError):
        os.write(2, (text + "\n").encode("utf-8", "replace"))


def block_report(pid: int, seconds: float, stack: str, in_flight: list[tuple[str, float]],
                 now: float) -> str:
    return (f"worker {pid}: the event loop has been blocked for more than {seconds:g} s "
            f"(--block-warning); {_describe_in_flight(in_flight, now)}; the blocking "
            f"greenlet's stack (most recent call last):\n{stack.rstrip()}")


# ------------------------------------------------------------------------------ master side


def collect_stack(pid: int, dump: IO[bytes]) -> str:
    """Ask worker ``pid`` for its stacks and return the dump file ('' if nothing came).

    The file may already hold the stack of a slow boot (:func:`write_boot_stack`).
    """
    fd = dump.fileno()
    start = os.fstat(fd).st_size
    try:
        os.kill(pid, STACK_SIGNAL)
    except ProcessLookupError:
        return ""
    deadline = monotonic() + STACK_WAIT
    size, changed = start, monotonic()
    while monotonic() < deadline:
        gevent.sleep(0.01)
        now_size = os.fstat(fd).st_size
        if now_size != size:
            size, changed = now_size, monotonic()
        elif size > start and monotonic() - changed >= _SETTLED:
            break
    return os.pread(fd, size, 0).decode("utf-8", "replace")


def _describe_in_flight(in_flight: list[tuple[str, float]], now: float) -> str:
    if not in_flight:
        return "no request in flight"
    shown = ", ".join(f"{rid} ({now - started:.1f} s)" for rid, started in in_flight[:20])
    more = f" and {len(in_flight) - 20} more" if len(in_flight) > 20 else ""
    return f"request ids in flight: {shown}{more}"


def timeout_report(pid: int, silent: float, timeout: float, booting: bool,
                   in_flight: list[tuple[str, float]], stack: str, now: float) -> str:
    """The one log record of a worker killed by the watchdog."""
    what = ("did not finish booting" if booting
            else "stopped answering (its event loop is blocked)")
    where = (f"its stack when killed (most recent call first):\n{stack.rstrip()}" if stack
             else f"it wrote no stack within {STACK_WAIT:g} s")
    return (f"WORKER TIMEOUT: worker {pid} {what}: no heartbeat for {silent:.1f} s "
            f"(--timeout {timeout:g}); killed. {_describe_in_flight(in_flight, now)}; {where}")
