"""Loading the WSGI app named on the command line: ``module:attr`` or ``module:factory()``.

Every way this can fail becomes one :class:`AppLoadError` line (the CLI prints it and exits
2) — not a traceback from deep inside importlib.
"""

from __future__ import annotations

import ast
import importlib
import os
import sys
from typing import Any

__all__ = ["AppLoadError", "load_app"]


class AppLoadError(Exception):
    """The APP argument does not name a usable WSGI application."""


def _parse_call(expr: str) -> tuple[str, bool, list[Any], dict[str, Any]]:
    """Split ``name`` / ``name()`` / ``name(1, debug=True)`` (literal arguments only)."""
    try:
        node = ast.parse(expr, mode="eval").body
    except SyntaxError:
        raise AppLoadError(f"cannot parse {expr!r}: expected NAME or NAME(...)") from None
    if isinstance(node, ast.Name):
        return node.id, False, [], {}
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
        try:
            args = [ast.literal_eval(arg) for arg in node.args]
            kwargs = {kw.arg: ast.literal_eval(kw.value) for kw in node.keywords if kw.arg}
        except ValueError:
            raise AppLoadError(f"factory arguments in {expr!r} must be literals") from None
        return node.func.id, True, args, kwargs
    raise AppLoadError(f"cannot use {expr!r}: expected NAME or NAME(...)")


def load_app(spec: str) -> Any:
    """Import ``module`` and return ``attr`` (or ``factory(...)``'s result).

    ``module`` alone means ``module:app`` (or ``module:application`` if there is no
    ``app``).  The current directory is importable, as with gunicorn.
    """
    module_name, _, expr = spec.partition(":")
    if not module_name:
        raise AppLoadError(f"invalid APP {spec!r}: expected module:attr or module:factory()")
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name and module_name.startswith(exc.name):
            raise AppLoadError(f"cannot import {module_name!r}: no such module") from None
        raise AppLoadError(f"importing {module_name!r} failed: {type(exc).__name__}: {exc}") \
            from None
    except BaseException as exc:
        if isinstance(exc, KeyboardInterrupt):
            raise
        detail = str(exc).splitlines()[0] if str(exc) else ""
        raise AppLoadError(f"importing {module_name!r} failed: {type(exc).__name__}"
                           f"{': ' + detail if detail else ''}") from None
    if not expr:
        expr = "app" if hasattr(module, "app") else "application"
    name, is_call, args, kwargs = _parse_call(expr)
    try:
        target = getattr(module, name)
    except AttributeError:
        raise AppLoadError(f"module {module_name!r} has no attribute {name!r}") from None
    if is_call:
        try:
            target = target(*args, **kwargs)
        except Exception as exc:
            detail = str(exc).splitlines()[0] if str(exc) else ""  # the error is one line
            raise AppLoadError(f"calling {module_name}:{expr} failed: {type(exc).__name__}"
                               f"{': ' + detail if detail else ''}") from None
    if not callable(target):
        raise AppLoadError(f"{module_name}:{expr} is a {type(target).__name__}, "
                           f"not a WSGI callable")
    return target
