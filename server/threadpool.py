"""gevent's threadpool with fresh context for every task (issue 10, hole 4).

gevent's :class:`~gevent.threadpool.ThreadPool` runs every task a thread picks up in that
thread's one long-lived greenlet, so whatever a task left in a ``threading.local`` (patched:
greenlet-local), a ctxlocal ``Local`` or a ``ContextVar`` is there for the next task the
thread runs -- the next *request's* task, more often than not.  Here each task runs in a
greenlet of its own, created in the pool's thread for it alone: a fresh greenlet starts with
an empty ``contextvars`` context and no greenlet-local values, and its ctxlocal entries are
released when the task ends.

What this cannot isolate: the thread itself.  Attributes set on ``threading.current_thread()``
and values in an *unpatched* ``threading.local`` (one obtained through
``gevent.monkey.get_original``, or kept by a C extension per OS thread) stay with the OS
thread and are seen by its later tasks.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import gevent
from gevent.threadpool import ThreadPool
from greenlet import greenlet as RawGreenlet

import ctxlocal

__all__ = ["IsolatingThreadPool", "install", "run_fresh"]


def run_fresh(func: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    """``func(*args, **kwargs)`` in a new greenlet of the calling thread; its result or its
    exception comes back here (a greenlet's parent gets both)."""

    def task() -> Any:
        try:
            return func(*args, **kwargs)
        finally:
            ctxlocal.release_context()

    return RawGreenlet(task).switch()


class IsolatingThreadPool(ThreadPool):
    """A ThreadPool whose tasks each run in a fresh greenlet of the pool's thread.

    ``spawn`` is the one door: ``apply``, ``apply_async``, ``map``, ``imap`` and gevent's
    own threaded DNS resolver all go through it.
    """

    def spawn(self, func: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        return super().spawn(run_fresh, func, args, kwargs)


def install() -> None:
    """Make :class:`IsolatingThreadPool` the hub's threadpool (in a worker, before the app
    is imported; a pool created earlier, in the master before the fork, has no threads in
    this process and is dropped)."""
    gevent.config.threadpool = IsolatingThreadPool
    del gevent.get_hub().threadpool
