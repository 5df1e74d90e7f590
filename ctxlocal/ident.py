"""Who "the current context" is, and knowing when it ends.

A context is the current greenlet.  Every OS thread has a main greenlet of its own, so plain
threads (unpatched ``threading``, gevent's threadpool) are distinct contexts too, and greenlets
inside threads never collide with greenlets of another thread.  When greenlet is not installed
the current ``threading.Thread`` object stands in.

Why a registry of weak references instead of keying storage on the greenlet itself:

* keying a dict on the greenlet object (werkzeug 0.x/1.x) holds a strong reference, so a
  finished greenlet and everything it stored stay alive until someone calls
  ``release_local`` — storage grows with every request that forgets to;
* keying on ``id(greenlet)`` without cleanup (``threading.local`` clones done wrong) serves a
  dead greenlet's data to the next greenlet that happens to get the same address.

Here storage is keyed on ``id(context)`` and every context that stores anything is watched by
one ``weakref`` (shared by all Locals).  Its callback runs while the greenlet is being
deallocated — strictly before its address can be reused — and drops the context's entry from
every Local that holds one.  ``gevent.Greenlet`` objects are also ``rawlink``-ed so their data
goes away as soon as they *finish*, even if something keeps the Greenlet object alive (a pool,
a list of results).
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from typing import Any

try:
    from greenlet import getcurrent as _getcurrent
except ImportError:  # pragma: no cover - greenlet is a hard dependency; kept for embedders
    from threading import current_thread as _getcurrent

__all__ = ["current_context", "get_ident", "live_contexts", "owner_ref", "release_context",
           "track"]

current_context: Callable[[], Any] = _getcurrent
"""Return the object that identifies the running context (the current greenlet)."""


def get_ident() -> int:
    """Return an int that identifies the current context among all *live* contexts.

    It is the key under which :class:`~ctxlocal.Local` stores the current context's values,
    so ``local.__storage__[get_ident()]`` works as it did in werkzeug.  Like ``id()``, the
    number may be reused after the context has died — by then its entries are gone.
    """
    return id(_getcurrent())


class _Watch:
    """Everything stored for one live context: which Locals hold an entry under its key.

    ``owners`` maps ``id(ref) -> ref``, ``ref`` being the weak reference that stands for one
    Local (see :func:`owner_ref`), so that a context which sets and releases a Local in a loop
    (a thread's main greenlet, say) registers each Local once, not once per round.  Weak,
    because a long-lived context (the main greenlet) must not keep a Local's storage — and
    every other context's values in it — alive after the Local itself is gone.
    """

    __slots__ = ("owners", "ref")

    def __init__(self, ref: weakref.ref[Any]) -> None:
        self.ref = ref
        self.owners: dict[int, weakref.ref[Any]] = {}


_watches: dict[int, _Watch] = {}


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


def _on_finished(greenlet: Any) -> None:
    """``Greenlet.rawlink`` callback: the greenlet finished, its data can go now."""
    _forget(id(greenlet))


def _on_owner_collected(ref: weakref.ref[Any]) -> None:
    """A Local was collected: stop listing it in the watches of the contexts that used it.

    Its storage went with it; without this, a long-lived context that touches many
    short-lived Locals would collect one dead reference per Local.
    """
    ref_key = id(ref)
    # ``dict.copy()`` allocates before it copies, so a collection triggered here cannot
    # change ``_watches`` halfway through the snapshot.
    for watch in _watches.copy().values():
        watch.owners.pop(ref_key, None)


def owner_ref(local: Any) -> weakref.ref[Any]:
    """The weak reference that stands for ``local`` (an object whose class has a
    ``__storage__`` dict) in the watches; create one per Local and pass it to :func:`track`.
    """
    return weakref.ref(local, _on_owner_collected)


def track(context: Any, key: int, owner: weakref.ref[Any]) -> None:
    """Remember that ``context`` has an entry under ``key`` in the Local ``owner`` refers to,
    and must lose it when it ends.

    Called once per (context, Local) pair, on the slow path where a context stores its first
    value in a Local.  Thread-safe under the GIL: only the thread running ``context`` creates
    its watch, and every dict operation used here is atomic.
    """
    watch = _watches.get(key)
    if watch is None:
        watch = _Watch(weakref.ref(context, _on_collected(key)))
        _watches[key] = watch
        rawlink = getattr(context, "rawlink", None)
        if rawlink is not None:
            rawlink(_on_finished)
    watch.owners[id(owner)] = owner


def release_context() -> None:
    """Drop the current context's entries from every Local that has one.

    The end-of-request guard of a server: it releases also the Locals it does not know
    about (an app's own module-level Locals), in O(entries) — the watch of the context
    knows exactly which Locals hold something for it.  Locals with a custom
    ``ident_func`` are not tracked and not affected.

    The context stays watched (as after ``release_local``): forgetting the watch would make
    the next value it stores watch it again — one more ``rawlink`` callback on a long-lived
    gevent.Greenlet for every release, a list that only grows.
    """
    key = id(_getcurrent())
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
