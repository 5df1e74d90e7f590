"""What a context handed a copy of another's values gets: one rule for ``spawn``,
``copy_context`` and asyncio tasks.

Copy depth, named: a Local's per-context namespace is copied (rebinding an attribute in the
copy never reaches the original); a LocalStack's stack list is copied (push/pop never reach
the original); the values themselves are shared — unless a value's type defines
``__copy_context__()``, whose result the copy gets instead (the server's RequestContext does
this to give each child its own copy of ``g``).
"""

from __future__ import annotations

from typing import Any

__all__ = ["copy_namespace", "copy_value", "fresh_namespace"]


def copy_value(value: Any) -> Any:
    """``value``, or what its ``__copy_context__`` hook returns for a copied context."""
    hook = getattr(type(value), "__copy_context__", None)
    return hook(value) if hook is not None else value


def copy_namespace(namespace: dict[str, Any], is_stack: bool) -> dict[str, Any] | None:
    """The copy of one context's namespace in one Local; None when there is nothing to copy.

    For a LocalStack's Local (``is_stack``) that is the stack list, item by item; an empty
    stack is nothing.
    """
    if is_stack:
        stack = namespace.get("stack")
        if not stack:
            return None
        return {**namespace, "stack": [copy_value(item) for item in stack]}
    if not namespace:
        return None
    return {name: copy_value(value) for name, value in namespace.items()}


def fresh_namespace(namespace: dict[str, Any], is_stack: bool) -> dict[str, Any]:
    """A new container for already-copied values, so that several contexts seeded from one
    copy never share a stack list."""
    if is_stack:
        return {**namespace, "stack": list(namespace["stack"])}
    return dict(namespace)
