"""``Local``: attribute storage private to the current context, and ``release_local``.

How it differs from ``werkzeug.local.Local`` of the 0.x/1.x era (whose API it keeps):

* Entries are keyed on ``id(current greenlet)`` and dropped when the greenlet finishes or is
  collected (see :mod:`ctxlocal.ident`), so there is neither growth when nobody calls
  ``release_local`` nor stale data when an address is reused.
* Speed.  Attribute access on a Local is the hot path of every request, so each Local gets a
  class of its own whose ``__getattribute__`` / ``__setattr__`` are closures over that Local's
  storage.  That removes the attribute look-ups (``self.__storage__``,
  ``self.__ident_func__``) and the failed generic look-up that ``__getattr__`` costs; see
  ``bench/results/local.md``.  ``isinstance(obj, Local)`` holds as usual.
* Stricter: the names of the Local's own machinery (``__storage__``, ``__release_local__``,
  ...) cannot be set as values; ``__ident_func__`` can, as in werkzeug.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Iterator
from typing import Any

from .ident import current_context, get_ident, owner_ref, track

__all__ = ["Local", "all_locals", "live_entries", "release_local"]

_id = id
_getcurrent = current_context
_object_getattribute = object.__getattribute__
_all_locals: weakref.WeakSet[Local] = weakref.WeakSet()


def _install_accessors(cls: type, ident_func: Callable[[], Any] | None) -> None:
    """Give ``cls`` (a Local's own class) attribute access closures over its storage.

    ``ident_func=None`` is the default, greenlet-keyed identity with automatic cleanup.  A
    custom ident function gets werkzeug 1.x semantics: entries live until released.

    The default closures capture the storage and nothing else; the helpers they call are
    module globals.  Every free variable costs a little on each call (CPython copies the
    closure's cells into the frame), and the fast paths are only a handful of C calls and
    dict operations, so it shows: about 10 % on attribute get and set against closures over
    five variables.  The slow path (a context's first value) finds the Local's watch handle
    on the class.
    """
    storage: dict[Any, dict[str, Any]] = cls.__storage__

    if ident_func is None:

        def __getattribute__(self: Local, name: str) -> Any:
            try:
                return storage[_id(_getcurrent())][name]
            except KeyError:
                return _object_getattribute(self, name)

        def __setattr__(self: Local, name: str, value: Any) -> None:
            if name in _RESERVED:
                _set_reserved(self, name, value)
                return
            key = _id(_getcurrent())
            try:
                storage[key][name] = value
            except KeyError:
                storage[key] = {name: value}
                track(_getcurrent(), key, type(self)._ctxlocal_owner)

        def __delattr__(self: Local, name: str) -> None:
            try:
                del storage[_id(_getcurrent())][name]
            except KeyError:
                raise AttributeError(name) from None

        def release() -> None:
            storage.pop(_id(_getcurrent()), None)

        current_ident = get_ident
    else:
        ident = ident_func

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

        current_ident = ident

    cls.__getattribute__ = __getattribute__
    cls.__setattr__ = __setattr__
    cls.__delattr__ = __delattr__
    cls._ctxlocal_release = staticmethod(release)
    cls._ctxlocal_ident = staticmethod(current_ident)
    # The same, as a cell that code outside the class (LocalStack, LocalProxy) keeps a
    # reference to: updated in place, so they see a changed ident without re-installing.
    mode = cls.__dict__.get("_ctxlocal_mode")
    if mode is None:
        cls._ctxlocal_mode = mode = [None]
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
    """Attributes whose values are private to the current greenlet (or thread).

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
    _ctxlocal_name: str | None
    _ctxlocal_owner: weakref.ref[Local]  # stands for this Local in ident.py's watches
    _ctxlocal_mode: list[Callable[[], Any] | None]  # [custom ident function, or None]
    _ctxlocal_stack: bool  # True for the Local inside a LocalStack (copied list-wise)

    def __new__(cls, ident_func: Callable[[], Any] | None = None, *,
                name: str | None = None) -> Local:
        own_class = type(cls.__name__, (cls,), {
            "__slots__": (),
            "__module__": cls.__module__,
            "__qualname__": cls.__qualname__,
            "__doc__": cls.__doc__,
            "__storage__": {},
            "_ctxlocal_name": name,
            "_ctxlocal_stack": False,
        })
        custom = None if ident_func is None or ident_func is get_ident else ident_func
        if custom is not None and not callable(custom):
            raise TypeError("ident_func must be callable")
        self = object.__new__(own_class)
        own_class._ctxlocal_owner = owner_ref(self)
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
        return type(self)._ctxlocal_ident

    @__ident_func__.setter
    def __ident_func__(self, value: Callable[[], Any]) -> None:
        # ``local.__ident_func__ = f`` goes through __setattr__; this setter serves
        # ``object.__setattr__(local, "__ident_func__", f)``, which is how werkzeug 1.x's
        # LocalManager (and code modelled on it) assigned it.
        _set_reserved(self, "__ident_func__", value)

    def __iter__(self) -> Iterator[tuple[Any, dict[str, Any]]]:
        """Iterate over ``(ident, values)`` of every live context (a snapshot).

        ``dict.copy()`` first: it cannot be interrupted by a collection that drops a dead
        greenlet's entry, where iterating the live dict could ("changed size during
        iteration").
        """
        return iter(list(type(self).__storage__.copy().items()))

    def __call__(self, name: str, *, unbound_message: str | None = None) -> Any:
        """Return a :class:`~ctxlocal.LocalProxy` to attribute ``name`` of this Local."""
        from .proxy import LocalProxy

        return LocalProxy(self, name, unbound_message=unbound_message)

    def __release_local__(self) -> None:
        """Forget the current context's values (what :func:`release_local` calls)."""
        type(self)._ctxlocal_release()

    def __repr__(self) -> str:
        label = f" {self._ctxlocal_name!r}" if self._ctxlocal_name else ""
        return f"<{type(self).__qualname__}{label} entries={live_entries(self)}>"


_RESERVED = frozenset(
    name for name in dir(Local) if name.startswith("__") and name != "__doc__"
) | {"__storage__", "__ident_func__", "__dict__", "__class__"}


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
    from .stack import LocalStack

    inner = local._local if isinstance(local, LocalStack) else local
    return len(type(inner).__storage__)


def all_locals() -> list[Local]:
    """Every Local that is still alive (for introspection and metrics)."""
    return list(_all_locals)
