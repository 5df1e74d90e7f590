"""Handing a *copy* of the current context to child greenlets.

A child greenlet is a new context: it sees nothing of its parent's Locals.  When a request
fans out work (``gevent.spawn`` per backend call), the children usually need to see the
request.  ``spawn`` takes a snapshot of the parent's Locals/stacks — every Local the parent
holds a value in, like ``contextvars.copy_context()``, or only the ones named — and installs
copies in the child before it runs, then releases them when it ends.  What a copy holds is
:mod:`ctxlocal.copying`'s rule (asyncio tasks get the same from their creator).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, TypeVar

import gevent

from .copying import copy_namespace, fresh_namespace
from .local import Local, all_locals, release_local

__all__ = ["ContextSnapshot", "copy_context", "spawn"]

T = TypeVar("T")


def _namespace_of(local: Local) -> dict[str, Any] | None:
    return type(local).__storage__.get(local.__ident_func__())


def _local_of(target: Any) -> Local:
    """The Local that holds ``target``'s values (a Local's own, a LocalStack's inner one)."""
    try:
        return target.__ctxlocal_local__
    except AttributeError:
        raise TypeError(f"expected a Local or LocalStack, not {type(target).__name__}") from None


class ContextSnapshot:
    """The current context's values of some Locals, frozen so another greenlet can use them."""

    __slots__ = ("_entries",)

    def __init__(self, targets: Iterable[Any] | None = None) -> None:
        entries: list[tuple[Local, dict[str, Any], bool]] = []
        for target in _every_local_in_use() if targets is None else targets:
            local = _local_of(target)
            is_stack = type(local).__ctxlocal_stack__
            namespace = _namespace_of(local)
            copied = None if namespace is None else copy_namespace(namespace, is_stack)
            if copied is not None:
                entries.append((local, copied, is_stack))
        self._entries = entries

    def run(self, func: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run ``func`` in the current context with the snapshot installed; restore after.

        Values were copied when the snapshot was taken; a stack gets a fresh list per run,
        so children seeded from one snapshot never share pushes and pops.

        What the current context held in those Locals before is set aside for the run and put
        back afterwards (in a fresh child there is nothing, and the copies are simply
        released).  Without that, ``copy_context(loc).run(f)`` called in the parent itself
        would let ``f`` write into the parent's values and then wipe them.
        """
        saved: list[tuple[Local, dict[str, Any] | None]] = []
        try:
            for local, namespace, is_stack in self._entries:
                previous = type(local).__storage__.pop(local.__ident_func__(), None)
                saved.append((local, previous))
                for name, value in fresh_namespace(namespace, is_stack).items():
                    setattr(local, name, value)
            return func(*args, **kwargs)
        finally:
            for local, previous in reversed(saved):
                release_local(local)
                if previous is not None:
                    # setattr, not a raw store, so the entry is tracked like any other.
                    for name, value in previous.items():
                        setattr(local, name, value)


def _every_local_in_use() -> list[Local]:
    """Every Local (stacks' included) that holds a value for the current context."""
    return [local for local in all_locals()
            if local.__ident_func__() in type(local).__storage__]


def copy_context(*targets: Any) -> ContextSnapshot:
    """Snapshot the current context's values of ``targets`` (of every Local if none)."""
    return ContextSnapshot(targets or None)


def spawn(func: Callable[..., Any], *args: Any,
          locals: Iterable[Any] | None = None,
          **kwargs: Any) -> gevent.Greenlet:
    """``gevent.spawn(func, *args, **kwargs)`` with a copy of this context's Locals.

    ``locals=None`` (the default) copies every Local the current context holds a value in;
    pass a list to copy only those.

    >>> import gevent
    >>> from ctxlocal import Local, spawn
    >>> loc = Local()
    >>> loc.user = "alice"
    >>> child = spawn(lambda: loc.user)
    >>> child.get()
    'alice'
    """
    snapshot = ContextSnapshot(locals)
    return gevent.spawn(snapshot.run, func, *args, **kwargs)
