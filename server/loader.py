"""Loading the WSGI app named on the command line: ``module:attr`` or ``module:factory()``.

Every way this can fail becomes one :class:`AppLoadError` line (the master prints it and
exits 2) — not a traceback from deep inside importlib, but with the file and line where the
app's own code failed, so ``KeyError: 'DATABASE_URL'`` says where it was looked up.
"""

from __future__ import annotations

import ast
import importlib
import os
import sys
import sysconfig
import traceback
from typing import Any

__all__ = ["AppLoadError", "failing_line", "load_app", "load_configured_app"]


class AppLoadError(Exception):
    """The APP argument does not name a usable WSGI application."""


#: Code that is rarely "where the app failed": the standard library and installed packages.
_LIBRARY_PATHS = tuple(sorted({os.path.realpath(sysconfig.get_paths()[key]) + os.sep
                               for key in ("stdlib", "platstdlib", "purelib", "platlib")}))
#: This package: the loader's own frames (``importlib.import_module``'s caller) are never it.
_SERVER_PATH = os.path.dirname(os.path.realpath(__file__)) + os.sep


def _is_library(filename: str) -> bool:
    return os.path.realpath(filename).startswith(_LIBRARY_PATHS)


def _shown(filename: str) -> str:
    """The path as the user would type it: relative to the current directory if below it."""
    relative = os.path.relpath(filename)
    return filename if relative.startswith("..") else relative


def failing_line(exc: BaseException) -> str:
    """``"path/to/file.py, line 12"`` of the innermost frame in the app's own code.

    The innermost frame of all is often library code (``os.environ``'s ``__getitem__`` for a
    missing variable, a driver's ``connect``); the line the user must look at is the last one
    of theirs on the way there (if all are library code: the innermost). A SyntaxError
    happens before its file has a frame; it carries the place itself.
    """
    if isinstance(exc, SyntaxError) and exc.filename:
        return f"{_shown(exc.filename)}, line {exc.lineno}"
    frames = [f for f in traceback.extract_tb(exc.__traceback__)
              if not f.filename.startswith("<")  # frozen importlib, os, ...
              and not os.path.realpath(f.filename).startswith(_SERVER_PATH)]
    if not frames:
        return ""
    own = [f for f in frames if not _is_library(f.filename)]
    frame = (own or frames)[-1]  # an app installed as a package: its innermost frame
    return f"{_shown(frame.filename)}, line {frame.lineno}"


def _describe(exc: BaseException) -> str:
    """``Type: first line of the message (file, line N)`` — one line, whatever the message."""
    detail = str(exc).splitlines()[0] if str(exc) else ""
    where = failing_line(exc)
    return (f"{type(exc).__name__}{': ' + detail if detail else ''}"
            f"{f' ({where})' if where else ''}")


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
        raise AppLoadError(f"importing {module_name!r} failed: {_describe(exc)}") from None
    except BaseException as exc:
        if isinstance(exc, KeyboardInterrupt):
            raise
        raise AppLoadError(f"importing {module_name!r} failed: {_describe(exc)}") from None
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
            raise AppLoadError(f"calling {module_name}:{expr} failed: {_describe(exc)}") \
                from None
    if not callable(target):
        raise AppLoadError(f"{module_name}:{expr} is a {type(target).__name__}, "
                           f"not a WSGI callable")
    return target


def load_configured_app(spec: str | None, *, unsafe_probe: bool = False) -> Any:
    """The app ``APP`` names, or the reference app without one (AppLoadError on failure)."""
    if spec:
        return load_app(spec)
    # Only when it is the app: its module-level Locals would otherwise show in every app's
    # /metrics (ctxserver_ctxlocal_live_entries{local="probe_local"}).
    from .probe import create_app  # noqa: PLC0415

    return create_app(unsafe_probe=unsafe_probe)
