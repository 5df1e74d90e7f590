"""``LocalStack``: a stack per context, the backbone of request contexts.

Same API as werkzeug 1.x's ``LocalStack``.  Popping the last item releases the context's
entry, so a context that pushed and popped leaves nothing behind even before it dies.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .local import Local

__all__ = ["LocalStack"]


class LocalStack:
    """A stack of objects private to the current greenlet (or thread).

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

    __slots__ = ("_local", "_name")

    def __init__(self, ident_func: Callable[[], Any] | None = None, *,
                 name: str | None = None) -> None:
        self._local = Local(ident_func, name=name)
        type(self._local)._ctxlocal_stack = True
        self._name = name

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
        from .proxy import LocalProxy

        return LocalProxy(self, name, unbound_message=unbound_message)

    def push(self, obj: Any) -> list[Any]:
        """Push ``obj`` on the current context's stack; return the stack (werkzeug API)."""
        local = self._local
        try:
            stack = local.stack
        except AttributeError:
            stack = local.stack = []
        stack.append(obj)
        return stack

    def pop(self) -> Any:
        """Remove and return the top item; None when the stack is empty.

        Popping the last item releases the context's entry altogether.
        """
        local = self._local
        try:
            stack = local.stack
        except AttributeError:
            return None
        if len(stack) <= 1:
            local.__release_local__()
            return stack[-1] if stack else None
        return stack.pop()

    @property
    def top(self) -> Any:
        """The topmost item, or None when the current context's stack is empty."""
        try:
            return self._local.stack[-1]
        except (AttributeError, IndexError):
            return None

    def __len__(self) -> int:
        """Depth of the current context's stack."""
        try:
            return len(self._local.stack)
        except AttributeError:
            return 0

    def __bool__(self) -> bool:
        # A stack object is always truthy (as in werkzeug), even when empty for this context;
        # without this, ``__len__`` would make an empty stack falsy.
        return True

    def __repr__(self) -> str:
        label = f" {self._name!r}" if self._name else ""
        return f"<LocalStack{label} depth={len(self)}>"
