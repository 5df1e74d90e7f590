"""``Local``: attribute storage private to the current context, and ``release_local``.

How it differs from ``werkzeug.local.Local`` of the 0.x/1.x era (whose API it keeps):

* Entries are keyed on the current context — the greenlet, or the asyncio task it is
  stepping — and dropped when that context finishes or is collected (see
  :mod:`ctxlocal.ident`), so there is neither growth when nobody calls ``release_local`` nor
  stale data when an address is reused.
* Speed.  Attribute access on a Local is the hot path of every request, so each Local gets a
  class of its own whose ``__getattribute__`` / ``__setattr__`` are closures over that Local's
  storage.  That removes the attribute look-ups (``self.__storage__``,
  ``self.__ident_func__``) and the failed generic look-up that ``__getattr__`` costs; see
  ``bench/results/local.md``.  ``isinstance(obj, Local)`` holds as usual.
* Stricter: the names of the Local's own machinery (``__storage__``, ``__release_local__``,
  ...) cannot be set as values; ``__ident_func__`` can, as in werkzeug.

The protocol other ctxlocal modules use (dunder names, so they can never collide with a
value, and are refused as values like the rest of the machinery): ``__storage__`` (the
storage dict, on the Local's own class), ``__ctxlocal_lookup__(name, unbound)`` (what a
LocalProxy calls), ``__ctxlocal_local__`` (the Local holding the values: itself here, the
inner Local of a LocalStack), ``__ctxlocal_name__``, ``__ctxlocal_stack__`` (copied
list-wise), ``__ctxlocal_owner__`` (the weak reference that stands for it in the watches) and
``__ctxlocal_mode__`` (a cell holding the custom ident function, or None).
"""

from __future__ import annotations

import os
import weakref
from collections.abc import Callable, Iterator
from typing import Any

from .ident import current_key, get_ident, key_in_loop, owner_ref, running_loop, track
from .proxy import LocalProxy

__all__ = ["ACCELERATED", "Local", "all_locals", "live_entries", "release_local"]

_id = id
_running_loop = running_loop
_key_in_loop = key_in_loop
_track = track
_object_getattribute = object.__getattribute__
_all_locals: weakref.WeakSet[Local] = weakref.WeakSet()

try:
    from greenlet import getcurrent as _getcurrent
except ImportError:  # pragma: no cover - as in ident.py
    from threading import current_thread as _getcurrent

# The optional C accelerator (ctxlocal/_speedups.c, ``make speedups``): the same fast paths as
# _context_accessors below, in C.  CTXLOCAL_PURE_PYTHON=1 turns it off (``make test`` runs
# the ctxlocal tests both ways).
_speedups: Any
try:
    if os.environ.get("CTXLOCAL_PURE_PYTHON"):
        raise ImportError("CTXLOCAL_PURE_PYTHON is set")
    from . import _speedups
except ImportError:
    _speedups = None
ACCELERATED = _speedups is not None
"""Whether Locals use the C accelerator for attribute access in the current context."""

Accessors = tuple[Callable[..., Any], Callable[..., Any], Callable[..., Any],
                  Callable[[], None]]


def _context_accessors(storage: dict[Any, dict[str, Any]]) -> Accessors:
    """get/set/delete/release keyed on the current context, with automatic cleanup.

    The key is :func:`ctxlocal.ident.current_key` written out inline: a Python-level call
    per access would cost more than the rest of the fast path.  The closures capture the
    storage and nothing else; the helpers they call are module globals.  Every free variable
    costs a little on each call (CPython copies the closure's cells into the frame), and the
    fast paths are only a handful of C calls and dict operations, so it shows.  The slow
    path (a context's first value) finds the Local's watch handle on the class.
    """

    def __getattribute__(self: Local, name: str) -> Any:
        try:
            return storage[_id(_getcurrent()) if (loop := _running_loop()) is None
                           else _key_in_loop(loop)][name]
        except KeyError:
            return _object_getattribute(self, name)

    def __setattr__(self: Local, name: str, value: Any) -> None:
        if name in _RESERVED:
            _set_reserved(self, name, value)
            return
        key = (_id(_getcurrent()) if (loop := _running_loop()) is None
               else _key_in_loop(loop))
        try:
            storage[key][name] = value
        except KeyError:
            storage[key] = {name: value}
            _track(key, type(self).__ctxlocal_owner__)

    def __delattr__(self: Local, name: str) -> None:
        try:
            del storage[current_key()][name]
        except KeyError:
            raise AttributeError(name) from None

    def release() -> None:
        storage.pop(current_key(), None)

    return __getattribute__, __setattr__, __delattr__, release


def _custom_accessors(storage: dict[Any, dict[str, Any]],
                      ident: Callable[[], Any]) -> Accessors:
    """The same keyed on ``ident()`` (werkzeug 1.x semantics: entries live until released)."""

    def __getattribute__(self: Local, name: str) -> Any:
        try:
            return storage[ident()][name]
        except KeyError:
            return _object_getattribute(self, name)

    def __setattr__(self: Local, name: str, value: Any) -> None:
        if name in _RESERVED:
            _set_reserved(self, name, value)
            return
        key = ident()
        try:
            storage[key][name] = value
        except KeyError:
            storage[key] = {name: value}

    def __delattr__(self: Local, name: str) -> None:
        try:
            del storage[ident()][name]
        except KeyError:
            raise AttributeError(name) from None

    def release() -> None:
        storage.pop(ident(), None)

    return __getattribute__, __setattr__, __delattr__, release


def _first_value(local: Local, key: int, name: str, value: Any) -> None:
    """The C accelerator's slow path: the current context's first value in ``local``."""
    type(local).__storage__[key] = {name: value}
    _track(key, type(local).__ctxlocal_owner__)


def _install_accessors(cls: type, ident_func: Callable[[], Any] | None) -> None:
    """Give ``cls`` (a Local's own class) attribute access closures over its storage.

    ``ident_func=None`` is the default, context-keyed identity with automatic cleanup —
    in C when the accelerator is there (the Python closures then only serve ``release``).
    """
    storage: dict[Any, dict[str, Any]] = cls.__storage__
    if ident_func is None:
        accessors = _context_accessors(storage)
    else:
        accessors = _custom_accessors(storage, ident_func)
    if ident_func is None and _speedups is not None:
        if "__getattribute__" in cls.__dict__:
            del cls.__getattribute__
        cls.__setattr__, cls.__delattr__ = _speedups.setattr, _speedups.delattr
        _speedups.install(cls)
        release = accessors[3]
    else:
        cls.__getattribute__, cls.__setattr__, cls.__delattr__, release = accessors
    cls.__ctxlocal_release__ = staticmethod(release)
    # A cell that LocalStack and the proxies' lookups keep a reference to: updated in place,
    # so they see a changed ident without re-installing anything.
    mode = cls.__dict__.get("__ctxlocal_mode__")
    if mode is None:
        cls.__ctxlocal_mode__ = mode = [None]
    mode[0] = ident_func


def _set_reserved(local: Local, name: str, value: Any) -> None:
    if name == "__ident_func__":
        cls = type(local)
        custom = None if value is get_ident else value
        if custom is not None and not callable(custom):
            raise TypeError("__ident_func__ must be callable")
        _install_accessors(cls, custom)
        return
    raise AttributeError(f"{name!r} is part of Local's machinery and cannot be set")


class Local:
    """Attributes whose values are private to the current context: the greenlet (or
    thread), or the asyncio task it is running.

    >>> from ctxlocal import Local
    >>> data = Local()
    >>> data.user = "alice"      # visible only in this greenlet
    >>> data.user
    'alice'

    ``Local(ident_func=f)`` keys storage on ``f()`` instead (werkzeug 1.x's pluggable
    identity); such entries are not cleaned up automatically.  ``name`` labels the Local in
    introspection (:func:`ctxlocal.stats`, ``/metrics``).
    """

    __slots__ = ("__weakref__",)

    # Declared for type checkers; the real values live on each instance's own class.
    __storage__: dict[Any, dict[str, Any]]
    __ctxlocal_name__: str | None
    __ctxlocal_owner__: weakref.ref[Local]
    __ctxlocal_mode__: list[Callable[[], Any] | None]
    __ctxlocal_release__: Callable[[], None]
    __ctxlocal_stack__: bool = False

    def __new__(cls, ident_func: Callable[[], Any] | None = None, *,
                name: str | None = None) -> Local:
        own_class = type(cls.__name__, (cls,), {
            "__slots__": (),
            "__module__": cls.__module__,
            "__qualname__": cls.__qualname__,
            "__doc__": cls.__doc__,
            "__storage__": {},
            "__ctxlocal_name__": name,
        })
        custom = None if ident_func is None or ident_func is get_ident else ident_func
        if custom is not None and not callable(custom):
            raise TypeError("ident_func must be callable")
        self = object.__new__(own_class)
        own_class.__ctxlocal_owner__ = owner_ref(self)
        _install_accessors(own_class, custom)
        _all_locals.add(self)
        return self

    def __init__(self, ident_func: Callable[[], Any] | None = None, *,
                 name: str | None = None) -> None:
        # Everything happened in __new__; defined for the signature and for subclasses.
        pass

    @property
    def __ident_func__(self) -> Callable[[], Any]:
        """The function whose result keys this Local's storage (werkzeug 1.x API)."""
        custom = type(self).__ctxlocal_mode__[0]
        return get_ident if custom is None else custom

    @__ident_func__.setter
    def __ident_func__(self, value: Callable[[], Any]) -> None:
        # ``local.__ident_func__ = f`` goes through __setattr__; this setter serves
        # ``object.__setattr__(local, "__ident_func__", f)``, which is how werkzeug 1.x's
        # LocalManager (and code modelled on it) assigned it.
        _set_reserved(self, "__ident_func__", value)

    @property
    def __ctxlocal_local__(self) -> Local:
        """The Local that holds the values (protocol shared with LocalStack)."""
        return self

    def __ctxlocal_lookup__(self, name: str | None, unbound: str) -> Callable[[], Any]:
        """The zero-argument function a :class:`~ctxlocal.LocalProxy` to attribute ``name``
        calls on every use: the current context's value, or RuntimeError(unbound)."""
        if name is None:
            raise TypeError("LocalProxy(Local) needs the attribute name: LocalProxy(local, 'x')")
        storage, mode, local = type(self).__storage__, type(self).__ctxlocal_mode__, self

        def lookup() -> Any:
            ident = mode[0]
            if ident is None:  # current_key(), written out: the hot path
                key = (_id(_getcurrent()) if (loop := _running_loop()) is None
                       else _key_in_loop(loop))
            else:
                key = ident()
            try:
                return storage[key][name]
            except KeyError:
                pass
            try:
                # Not a value of this context: whatever else ``local.name`` would find (a
                # method of a Local subclass, say), as before.
                return getattr(local, name)
            except AttributeError:
                raise RuntimeError(unbound) from None

        return lookup

    def __iter__(self) -> Iterator[tuple[Any, dict[str, Any]]]:
        """Iterate over ``(ident, values)`` of every live context (a snapshot).

        ``dict.copy()`` first: it cannot be interrupted by a collection that drops a dead
        greenlet's entry, where iterating the live dict could ("changed size during
        iteration").
        """
        return iter(list(type(self).__storage__.copy().items()))

    def __call__(self, name: str, *, unbound_message: str | None = None) -> Any:
        """Return a :class:`~ctxlocal.LocalProxy` to attribute ``name`` of this Local."""
        return LocalProxy(self, name, unbound_message=unbound_message)

    def __release_local__(self) -> None:
        """Forget the current context's values (what :func:`release_local` calls)."""
        type(self).__ctxlocal_release__()

    def __repr__(self) -> str:
        name = type(self).__ctxlocal_name__
        label = f" {name!r}" if name else ""
        return f"<{type(self).__qualname__}{label} entries={live_entries(self)}>"


_RESERVED = frozenset(
    name for name in dir(Local) if name.startswith("__") and name != "__doc__"
) | {"__storage__", "__ident_func__", "__dict__", "__class__", "__ctxlocal_name__",
     "__ctxlocal_owner__", "__ctxlocal_mode__", "__ctxlocal_release__"}


if _speedups is not None:
    _speedups.configure(getcurrent=_getcurrent, running_loop=_running_loop,
                        key_in_loop=_key_in_loop, first_value=_first_value,
                        set_reserved=_set_reserved, reserved=_RESERVED)


def release_local(local: Any) -> None:
    """Release the current context's data in ``local`` (a Local, LocalStack or anything
    with ``__release_local__``), as werkzeug's ``release_local`` did.

    >>> from ctxlocal import Local, release_local
    >>> loc = Local()
    >>> loc.foo = 42
    >>> release_local(loc)
    >>> hasattr(loc, "foo")
    False
    """
    local.__release_local__()


def live_entries(local: Any) -> int:
    """How many contexts currently hold values in ``local`` (a Local or LocalStack)."""
    return len(type(local.__ctxlocal_local__).__storage__)


def all_locals() -> list[Local]:
    """Every Local that is still alive (for introspection and metrics)."""
    return list(_all_locals)
