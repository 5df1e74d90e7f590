"""``LocalStack``: a stack per context, the backbone of request contexts.

Same API as werkzeug 1.x's ``LocalStack``.  Popping the last item releases the context's
entry, so a context that pushed and popped leaves nothing behind even before it dies.

The stack lives in a :class:`~ctxlocal.Local` (``stack._local.stack``, as in werkzeug), but
``push``/``pop``/``top`` read and write that Local's storage directly instead of going
through its attribute protocol.  That is the per-request hot path: a request pushes onto an
empty stack and pops the last item, and through ``local.stack`` each of those raised and
caught two or three exceptions (``bench/results/local.md`` has what it costs now).  Same
entries, same keys, same tracking as the Local's own accessors; the storage, mode cell and
watch handle are the Local's public protocol (see :mod:`ctxlocal.local`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .ident import current_key, key_in_loop, running_loop, track
from .local import Local
from .proxy import LocalProxy

__all__ = ["LocalStack"]

_id = id
_running_loop = running_loop
_key_in_loop = key_in_loop

try:
    from greenlet import getcurrent as _getcurrent
except ImportError:  # pragma: no cover - as in ident.py
    from threading import current_thread as _getcurrent


class _StackLocal(Local):
    """The Local inside a LocalStack: copied into other contexts list-wise."""

    __slots__ = ()
    __ctxlocal_stack__ = True


class LocalStack:
    """A stack of objects private to the current context (greenlet, thread or asyncio task).

    >>> from ctxlocal import LocalStack
    >>> stack = LocalStack()
    >>> stack.push(42)
    [42]
    >>> stack.top
    42
    >>> stack.pop()
    42
    >>> stack.top is None
    True
    """

    __slots__ = ("_local", "_mode", "_name", "_owner", "_storage")

    def __init__(self, ident_func: Callable[[], Any] | None = None, *,
                 name: str | None = None) -> None:
        self._local = _StackLocal(ident_func, name=name)
        cls = type(self._local)
        # The Local's storage dict and mode cell never change identity (ident changes
        # update the cell in place), so they can be kept here for the fast paths.
        self._storage = cls.__storage__
        self._mode = cls.__ctxlocal_mode__
        self._owner = cls.__ctxlocal_owner__
        self._name = name

    @property
    def __ctxlocal_local__(self) -> Local:
        """The Local that holds the stacks (ctxlocal's protocol; ``_local`` in werkzeug)."""
        return self._local

    @property
    def __ctxlocal_name__(self) -> str | None:
        return self._name

    def _key(self) -> Any:
        ident = self._mode[0]
        return current_key() if ident is None else ident()

    def __ctxlocal_lookup__(self, name: str | None, unbound: str) -> Callable[[], Any]:
        """The function a :class:`~ctxlocal.LocalProxy` calls: the top item (or its
        attribute ``name``), or RuntimeError(unbound) when the stack is empty."""
        storage, mode = self._storage, self._mode
        if name is None:

            def lookup() -> Any:
                ident = mode[0]
                if ident is None:  # current_key(), written out: the hot path
                    key = (_id(_getcurrent()) if (loop := _running_loop()) is None
                           else _key_in_loop(loop))
                else:
                    key = ident()
                try:
                    return storage[key]["stack"][-1]
                except (KeyError, IndexError):
                    raise RuntimeError(unbound) from None
        else:

            def lookup() -> Any:
                ident = mode[0]
                if ident is None:  # current_key(), written out: the hot path
                    key = (_id(_getcurrent()) if (loop := _running_loop()) is None
                           else _key_in_loop(loop))
                else:
                    key = ident()
                try:
                    top = storage[key]["stack"][-1]
                except (KeyError, IndexError):
                    raise RuntimeError(unbound) from None
                return getattr(top, name)

        return lookup

    def __release_local__(self) -> None:
        self._local.__release_local__()

    @property
    def __ident_func__(self) -> Callable[[], Any]:
        return self._local.__ident_func__

    @__ident_func__.setter
    def __ident_func__(self, value: Callable[[], Any]) -> None:
        self._local.__ident_func__ = value

    def __call__(self, name: str | None = None, *,
                 unbound_message: str | None = None) -> Any:
        """A :class:`~ctxlocal.LocalProxy` to the top item (or to attribute ``name`` of it)."""
        return LocalProxy(self, name, unbound_message=unbound_message)

    def push(self, obj: Any) -> list[Any]:
        """Push ``obj`` on the current context's stack; return the stack (werkzeug API)."""
        custom = self._mode[0]
        key = current_key() if custom is None else custom()
        storage = self._storage
        namespace = storage.get(key)
        if namespace is None:
            # A first push: create the entry and watch the context, as Local.__setattr__
            # does (a custom ident is not watched).
            stack = [obj]
            storage[key] = {"stack": stack}
            if custom is None:
                track(key, self._owner)
            return stack
        stack = namespace.get("stack")
        if stack is None:
            namespace["stack"] = stack = []
        stack.append(obj)
        return stack

    def pop(self) -> Any:
        """Remove and return the top item; None when the stack is empty.

        Popping the last item releases the context's entry altogether.
        """
        key = self._key()
        storage = self._storage
        namespace = storage.get(key)
        stack = None if namespace is None else namespace.get("stack")
        if stack is None:
            return None
        if len(stack) <= 1:
            storage.pop(key, None)
            return stack[-1] if stack else None
        return stack.pop()

    @property
    def top(self) -> Any:
        """The topmost item, or None when the current context's stack is empty."""
        ident = self._mode[0]
        if ident is None:  # current_key(), written out: a request proxy reads ``top``
            key = (_id(_getcurrent()) if (loop := _running_loop()) is None
                   else _key_in_loop(loop))
        else:
            key = ident()
        try:
            return self._storage[key]["stack"][-1]
        except (KeyError, IndexError):
            return None

    def __len__(self) -> int:
        """Depth of the current context's stack."""
        namespace = self._storage.get(self._key())
        return 0 if namespace is None else len(namespace.get("stack", ()))

    def __bool__(self) -> bool:
        # A stack object is always truthy (as in werkzeug), even when empty for this context;
        # without this, ``__len__`` would make an empty stack falsy.
        return True

    def __repr__(self) -> str:
        label = f" {self._name!r}" if self._name else ""
        return f"<LocalStack{label} depth={len(self)}>"
