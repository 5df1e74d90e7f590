"""Handing a *copy* of the current context to child greenlets.

A child greenlet is a new context: it sees nothing of its parent's Locals.  When a request
fans out work (``gevent.spawn`` per backend call), the children usually need to see the
request.  ``spawn`` takes a snapshot of the chosen Locals/stacks in the parent and installs
copies in the child before it runs, then releases them when it ends.

Copy depth, named: each Local's per-context namespace is copied (rebinding an attribute in the
child never reaches the parent); a LocalStack's stack list is copied (push/pop in the child
never reach the parent); the values themselves are shared — unless a value defines
``__copy_context__()``, whose result the child gets instead (the server's RequestContext does
this to give each child its own copy of ``g``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, TypeVar

import gevent

from .local import Local, release_local
from .stack import LocalStack

__all__ = ["ContextSnapshot", "copy_context", "spawn"]

T = TypeVar("T")


def _copy_value(value: Any) -> Any:
    hook = getattr(type(value), "__copy_context__", None)
    return hook(value) if hook is not None else value


def _namespace_of(local: Local) -> dict[str, Any] | None:
    return type(local).__storage__.get(local.__ident_func__())


class ContextSnapshot:
    """The current context's values of some Locals, frozen so another greenlet can use them."""

    __slots__ = ("_entries",)

    def __init__(self, targets: Iterable[Local | LocalStack]) -> None:
        entries: list[tuple[Local, dict[str, Any], bool]] = []
        for target in targets:
            if isinstance(target, LocalStack):
                namespace = _namespace_of(target._local)
                if namespace and namespace.get("stack"):
                    stack = [_copy_value(item) for item in namespace["stack"]]
                    entries.append((target._local, {**namespace, "stack": stack}, True))
            elif isinstance(target, Local):
                namespace = _namespace_of(target)
                if namespace:
                    copied = {k: _copy_value(v) for k, v in namespace.items()}
                    entries.append((target, copied, False))
            else:
                raise TypeError(f"expected a Local or LocalStack, not {type(target).__name__}")
        self._entries = entries

    def run(self, func: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run ``func`` in the current context with the snapshot installed; release after.

        Values were copied when the snapshot was taken; a stack gets a fresh list per run,
        so children seeded from one snapshot never share pushes and pops.
        """
        installed: list[Local] = []
        try:
            for local, namespace, is_stack in self._entries:
                installed.append(local)
                for name, value in namespace.items():
                    setattr(local, name, list(value) if is_stack and name == "stack" else value)
            return func(*args, **kwargs)
        finally:
            for local in installed:
                release_local(local)


def copy_context(*targets: Local | LocalStack) -> ContextSnapshot:
    """Snapshot the current context's values of ``targets``."""
    return ContextSnapshot(targets)


def spawn(func: Callable[..., Any], *args: Any, locals: Iterable[Local | LocalStack],
          **kwargs: Any) -> gevent.Greenlet:
    """``gevent.spawn(func, *args, **kwargs)`` with a copy of ``locals`` from this context.

    >>> import gevent
    >>> from ctxlocal import Local, spawn
    >>> loc = Local()
    >>> loc.user = "alice"
    >>> child = spawn(lambda: loc.user, locals=[loc])
    >>> child.get()
    'alice'
    """
    snapshot = ContextSnapshot(locals)
    return gevent.spawn(snapshot.run, func, *args, **kwargs)
