"""What asyncio tells about the current thread: its running loop, the loop's current task,
and the ``contextvars.Context`` a task's steps run in.

An event loop belongs to a thread (``asyncio._get_running_loop()`` answers per thread), and so
does its notion of "the current task".  Greenlets share their thread's answer: when a task's
step makes a blocking gevent call (a monkey-patched socket inside a coroutine), the hub runs
*other* greenlets while that step is suspended, and asyncio still reports the suspended task
as current in each of them.  What tells the task's own step apart is the context: a step
runs with the task's ``contextvars.Context`` entered, and greenlets keep their contexts apart
(``greenlet.getcurrent().gr_context`` is the context current in that greenlet).
:mod:`ctxlocal.ident` puts the two together.
"""

from __future__ import annotations

import asyncio
import contextvars
import gc
from asyncio.events import _get_running_loop, _set_running_loop
from collections.abc import Callable
from typing import Any

__all__ = ["current_task_of", "running_loop", "task_context"]

running_loop: Callable[[], Any] = _get_running_loop
"""The event loop running in this thread, or None (C; cheap when no loop runs)."""

if running_loop() is None:
    # Every Local access asks running_loop(), and CPython 3.11 answers fastest from a cached
    # per-thread holder that exists only once a loop has run in the thread; before that, each
    # call searches the thread-state dict.  Setting "no loop" creates the holder — the state
    # every loop leaves behind when it stops, so nothing else changes.
    _set_running_loop(None)

try:
    # CPython 3.11: the C module's dict of loop -> current task (``asyncio.current_task``
    # is a Python function around it there; from 3.12 on it is C itself).
    from asyncio.tasks import _current_tasks

    current_task_of: Callable[[Any], Any] = _current_tasks.get
except ImportError:  # pragma: no cover - Python versions without the dict
    current_task_of = asyncio.current_task
"""``current_task_of(loop)``: the task whose step ``loop`` is running, or None."""

_Context = contextvars.Context


def task_context(task: Any) -> contextvars.Context | None:
    """The ``contextvars.Context`` a task's steps run in (None if it cannot be found)."""
    get_context = getattr(task, "get_context", None)  # Python 3.12+
    if get_context is not None:
        return get_context()
    context = getattr(task, "_context", None)  # asyncio's pure-Python Task
    if type(context) is _Context:
        return context
    # CPython 3.11's C Task has no accessor; its context is the first object its traversal
    # visits (TaskObj_traverse), ahead of any done-callback's context.
    for referent in gc.get_referents(task):
        if type(referent) is _Context:
            return referent
    return None
