"""Who "the current context" is, and knowing when it ends.

A context is the current greenlet — or, inside it, the asyncio task whose step it is running.
Every OS thread has a main greenlet of its own, so plain threads (unpatched ``threading``,
gevent's threadpool) are distinct contexts too, greenlets inside threads never collide with
greenlets of another thread, and an event loop per thread keeps its tasks to its thread.
When greenlet is not installed the current ``threading.Thread`` object stands in.

Asyncio tasks (werkzeug 2.x isolates them too, through ``contextvars``): the task counts only
where its ``contextvars.Context`` is current — its steps, in the greenlet that runs its loop
(a ``copy_context().run(f)`` inside a step included) — which the task's first use of
ctxlocal checks against the task itself and marks in that context (:data:`_ORIGIN`).
Another greenlet that runs while a step is suspended in a gevent switch keeps its own
context (:mod:`ctxlocal.tasks` says why).  Loop callbacks that belong to no task
(``call_soon``, protocol callbacks) run in the context of the loop's greenlet.  A task starts
with a *copy* of the values of the context it was created in (as ``contextvars`` copies at
task creation), taken when the task first uses ctxlocal.  A creating task is found through a
``ContextVar`` (:data:`_ORIGIN`) that asyncio copies into every new task, and counts only if
it is still alive and runs in the same greenlet; otherwise the task starts with a copy of
the greenlet's own values (that is where a task created outside any task comes from:
``asyncio.run`` in a request greenlet sees the request).  Never another greenlet's.

Why a registry of weak references instead of keying storage on the greenlet itself:

* keying a dict on the greenlet object (werkzeug 0.x/1.x) holds a strong reference, so a
  finished greenlet and everything it stored stay alive until someone calls
  ``release_local`` — storage grows with every request that forgets to;
* keying on ``id(greenlet)`` without cleanup (``threading.local`` clones done wrong) serves a
  dead greenlet's data to the next greenlet that happens to get the same address.

Here storage is keyed on ``id(context)`` and every context that stores anything is watched by
one ``weakref`` (shared by all Locals).  Its callback runs while the greenlet or task is being
deallocated — strictly before its address can be reused — and drops the context's entry from
every Local that holds one.  ``gevent.Greenlet`` objects are also ``rawlink``-ed, and tasks
get a done callback, so their data goes away as soon as they *finish*, even if something
keeps the object alive (a pool, a list of results, ``gather``).
"""

from __future__ import annotations

import contextvars
import weakref
from collections.abc import Callable
from typing import Any

from .copying import copy_namespace
from .tasks import current_task_of, running_loop, task_context

try:
    from greenlet import getcurrent as _getcurrent
except ImportError:  # pragma: no cover - greenlet is a hard dependency; kept for embedders
    from threading import current_thread as _getcurrent

__all__ = ["current_context", "current_key", "get_ident", "key_in_loop", "live_contexts",
           "owner_ref", "release_context", "running_loop", "track"]


class _Watch:
    """Everything stored for one live context: which Locals hold an entry under its key.

    ``owners`` maps ``id(ref) -> ref``, ``ref`` being the weak reference that stands for one
    Local (see :func:`owner_ref`), so that a context which sets and releases a Local in a loop
    (a thread's main greenlet, say) registers each Local once, not once per round.  Weak,
    because a long-lived context (the main greenlet) must not keep a Local's storage — and
    every other context's values in it — alive after the Local itself is gone.

    ``greenlet_key`` is the key of the greenlet the context belongs to (its own for a
    greenlet; for a task, the greenlet that ran its first step).
    """

    __slots__ = ("greenlet_key", "key", "owners", "ref")

    def __init__(self, key: int, ref: weakref.ref[Any], greenlet_key: int) -> None:
        self.key = key
        self.ref = ref
        self.greenlet_key = greenlet_key
        self.owners: dict[int, weakref.ref[Any]] = {}


_watches: dict[int, _Watch] = {}

# The watch of the task whose ``contextvars.Context`` this one is (or was copied from): set
# in a task's context at its first use of ctxlocal.  It proves, cheaply, that the code asking
# runs in that task's context (and not in another greenlet that runs while the task's step is
# suspended), and it is how a new task finds the task that created it (asyncio copies the
# creator's context into every new task).
_ORIGIN: contextvars.ContextVar[_Watch] = contextvars.ContextVar("ctxlocal_origin")
_origin = _ORIGIN.get


def current_key() -> int:
    """The key under which the current context's values are stored (see :func:`get_ident`).

    Hot paths (``Local`` attribute access) inline this expression instead of calling it.
    """
    loop = running_loop()
    if loop is None:
        return id(_getcurrent())
    return key_in_loop(loop)


def key_in_loop(loop: Any) -> int:
    """:func:`current_key` while ``loop`` runs in this thread: the task's or the greenlet's."""
    greenlet = _getcurrent()
    task = current_task_of(loop)
    if task is None:
        return id(greenlet)
    key = id(task)
    watch = _watches.get(key)
    if watch is None:
        return _start_task(task, key, greenlet)
    return key if _origin(None) is watch else id(greenlet)


def _start_task(task: Any, key: int, greenlet: Any) -> int:
    """A task's first use of ctxlocal: watch it and seed it from its creator's values."""
    context = task_context(task)
    if context is None or context is not greenlet.gr_context:
        return id(greenlet)  # not this task's step (see module docstring)
    greenlet_key = id(greenlet)
    creator = _origin(None)
    watch = _watch(task, key, greenlet_key, is_task=True)
    _ORIGIN.set(watch)
    if creator is None or _watches.get(creator.key) is not creator or (
            creator.greenlet_key != greenlet_key):
        creator = _watches.get(greenlet_key)  # none alive in this greenlet: the greenlet's
    if creator is not None:
        _seed(watch, creator)
    return key


def _seed(watch: _Watch, origin: _Watch) -> None:
    """Give ``watch``'s context a copy of every entry ``origin``'s context holds."""
    for ref in tuple(origin.owners.values()):
        owner = ref()
        if owner is None:
            continue
        storage = type(owner).__storage__
        namespace = storage.get(origin.key)
        copied = None if namespace is None else copy_namespace(
            namespace, type(owner).__ctxlocal_stack__)
        if copied is not None:
            storage.setdefault(watch.key, copied)
            watch.owners[id(ref)] = ref


def current_context() -> Any:
    """The object that identifies the running context: the asyncio task stepping in this
    greenlet, else the current greenlet."""
    greenlet = _getcurrent()
    loop = running_loop()
    if loop is not None and key_in_loop(loop) != id(greenlet):
        return current_task_of(loop)
    return greenlet


def get_ident() -> int:
    """Return an int that identifies the current context among all *live* contexts.

    It is the key under which :class:`~ctxlocal.Local` stores the current context's values,
    so ``local.__storage__[get_ident()]`` works as it did in werkzeug.  Like ``id()``, the
    number may be reused after the context has died — by then its entries are gone.
    """
    return current_key()


def _drop_entries(key: int, watch: _Watch) -> None:
    """Pop ``key`` from the storage of every Local ``watch`` lists."""
    # A snapshot: popping an entry frees its values, whose finalizers may run any code.
    for ref in tuple(watch.owners.values()):
        owner = ref()
        if owner is not None:
            type(owner).__storage__.pop(key, None)


def _forget(key: int) -> None:
    """Drop every entry stored under ``key`` (a context that finished or was collected)."""
    watch = _watches.pop(key, None)
    if watch is not None:
        _drop_entries(key, watch)


def _on_collected(key: int) -> Callable[[weakref.ref[Any]], None]:
    # A closure over the int key, never over the context itself: the callback must not keep
    # the greenlet alive, or it would never be collected.
    def callback(_ref: weakref.ref[Any]) -> None:
        _forget(key)

    return callback


def _on_finished(context: Any) -> None:
    """``Greenlet.rawlink`` / ``Task.add_done_callback`` callback: it finished, its data can
    go now.  The object is alive while this runs, so its id cannot have been reused."""
    _forget(id(context))


def _on_owner_collected(ref: weakref.ref[Any], watches: dict[int, _Watch] = _watches) -> None:
    """A Local was collected: stop listing it in the watches of the contexts that used it.

    Its storage went with it; without this, a long-lived context that touches many
    short-lived Locals would collect one dead reference per Local.  ``watches`` is bound
    at definition: Locals collected while the interpreter shuts down run this after the
    module's globals were cleared (it printed "'NoneType' object has no attribute 'copy'").
    """
    ref_key = id(ref)
    # ``dict.copy()`` allocates before it copies, so a collection triggered here cannot
    # change ``watches`` halfway through the snapshot.
    for watch in watches.copy().values():
        watch.owners.pop(ref_key, None)


def owner_ref(local: Any) -> weakref.ref[Any]:
    """The weak reference that stands for ``local`` (an object whose class has a
    ``__storage__`` dict) in the watches; create one per Local and pass it to :func:`track`.
    """
    return weakref.ref(local, _on_owner_collected)


def _watch(context: Any, key: int, greenlet_key: int, *, is_task: bool) -> _Watch:
    """Start watching ``context`` (a greenlet, or an asyncio task)."""
    watch = _Watch(key, weakref.ref(context, _on_collected(key)), greenlet_key)
    _watches[key] = watch
    if is_task:
        context.add_done_callback(_on_finished)
    else:
        rawlink = getattr(context, "rawlink", None)
        if rawlink is not None:
            rawlink(_on_finished)
    return watch


def track(key: int, owner: weakref.ref[Any]) -> None:
    """Remember that the current context, stored under ``key``, has an entry in the Local
    ``owner`` refers to, and must lose it when it ends.

    Called once per (context, Local) pair, on the slow path where a context stores its first
    value in a Local.  A task's watch exists from its first use (:func:`key_in_loop`), so a
    missing watch is the current greenlet's.  Thread-safe under the GIL: only the thread
    running a context creates its watch, and every dict operation used here is atomic.
    """
    watch = _watches.get(key)
    if watch is None:
        greenlet = _getcurrent()
        if id(greenlet) != key:
            raise RuntimeError(f"ctxlocal: key {key} is not the current context's")
        watch = _watch(greenlet, key, key, is_task=False)
    watch.owners[id(owner)] = owner


def release_context() -> None:
    """Drop the current context's entries from every Local that has one.

    The end-of-request guard of a server: it releases also the Locals it does not know
    about (an app's own module-level Locals), in O(entries) — the watch of the context
    knows exactly which Locals hold something for it.  Locals with a custom
    ``ident_func`` are not tracked and not affected.  Inside an asyncio task it releases
    that task's entries.

    The context stays watched (as after ``release_local``): forgetting the watch would make
    the next value it stores watch it again — one more ``rawlink`` callback on a long-lived
    gevent.Greenlet for every release, a list that only grows.
    """
    key = current_key()
    watch = _watches.get(key)
    if watch is not None:
        _drop_entries(key, watch)


def live_contexts() -> int:
    """How many contexts currently hold at least one entry in some Local (introspection).

    Counts entries, not watches: a context that released everything it stored (a thread that
    pushed and popped a stack) holds nothing, though it stays watched until it ends.
    """
    count = 0
    for key, watch in _watches.copy().items():
        for ref in tuple(watch.owners.values()):
            owner = ref()
            if owner is not None and key in type(owner).__storage__:
                count += 1
                break
    return count
