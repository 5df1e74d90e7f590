"""Signals master and workers share: the ones that must not end a process, and a quiet
window around ``fork()``.

A signal's default action is often to terminate (USR1, USR2, ALRM, the real-time ones…).
gunicorn's users send USR1 (logrotate), TTIN/TTOU, WINCH, USR2 to the master as a matter
of course; none of them may stop the server.  The master handles the ones that mean
something (see ``Arbiter.signal_actions``) and logs and ignores :data:`IGNORED`; the workers
ignore them too.  Not in the list: faults the kernel raises for the faulting code (SEGV,
BUS, FPE, ILL, SYS, TRAP, ABRT — catching those hides a crash), and TSTP/CONT (a terminal's
Ctrl-Z should still work).
"""

from __future__ import annotations

import contextlib
import signal
from collections.abc import Iterator

__all__ = ["IGNORED", "quiet_fork_window", "signal_name", "unblock_after_fork"]

#: Catchable, asynchronous, and by default fatal — but meaningless to a server.
IGNORED: tuple[int, ...] = tuple(
    getattr(signal, name) for name in
    ("SIGALRM", "SIGVTALRM", "SIGPROF", "SIGIO", "SIGPWR", "SIGSTKFLT", "SIGXCPU", "SIGXFSZ")
    if hasattr(signal, name)
) + tuple(range(signal.SIGRTMIN, signal.SIGRTMAX + 1))

#: Blocked from just before ``fork()`` until the child has its own handlers: else a USR1
#: forwarded to a worker forked a microsecond earlier would kill it with the default action.
_FORK_BLOCKED = signal.valid_signals() - {signal.SIGKILL, signal.SIGSTOP}


def signal_name(signum: int) -> str:
    """``SIGTERM``; ``SIGRTMIN+2`` for the real-time ones the enum does not name."""
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"SIGRTMIN+{signum - signal.SIGRTMIN}"


@contextlib.contextmanager
def quiet_fork_window() -> Iterator[None]:
    """Block every catchable signal in the master around a fork; the parent's pending ones
    are delivered when the block ends, the child unblocks with :func:`unblock_after_fork`."""
    old = signal.pthread_sigmask(signal.SIG_BLOCK, _FORK_BLOCKED)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


def unblock_after_fork() -> None:
    signal.pthread_sigmask(signal.SIG_UNBLOCK, _FORK_BLOCKED)
