"""``LocalProxy``: an object that forwards everything to whatever is current *now*.

``request``, ``g`` and ``current_app`` are proxies: module-level names that resolve, on each
use, to the object of the request running in the current greenlet.

What it forwards: attribute get/set/delete, item access, iteration, ``in``, ``len``,
comparisons, hashing, every arithmetic and bitwise operator (reflected ones too), conversions
(``int``, ``float``, ``index``, ``str``, ``bytes``, ``format``, ``round``...), calling, context
managers (sync and async), ``await``, ``copy``/``deepcopy`` (which copy the *object*), and
``__class__`` so that ``isinstance(proxy, Request)`` holds.

Edge cases, named:

* In-place operators (``proxy += x``) apply the operator to the object and return the proxy,
  so the name stays a proxy.  For a mutable object (a list) the object changes; for an
  immutable one (an int) the result has nowhere to go and is discarded — as in werkzeug.
* Unbound (no object in this context): ``repr`` is ``<LocalProxy unbound>``, ``bool`` is
  False, ``dir`` lists the proxy's own attributes, and every other use raises
  ``RuntimeError`` with a message naming what is unbound.
* ``__doc__`` and ``__wrapped__`` come from the object; when it has none, from the proxy
  (``__wrapped__`` is then the Local, stack, ContextVar or callable being proxied).

Why ``__getattribute__`` rather than ``__getattr__``: with ``__getattr__`` every forwarded
attribute first fails a normal look-up on the proxy, and building that AttributeError costs
more than the forwarding itself.
"""

from __future__ import annotations

import copy
import math
import operator
from contextvars import ContextVar
from typing import Any

from .ident import current_context as getcurrent
from .local import Local
from .stack import LocalStack

__all__ = ["LocalProxy"]

_id = id


def _make_lookup(obj: Any, name: str | None, unbound: str) -> Any:
    """Build the zero-argument function that returns the current object or raises."""

    def fail() -> RuntimeError:
        return RuntimeError(unbound)

    # Locals and stacks are read straight from their storage (one Python call per use, not
    # two): the key is computed as their own accessors compute it, from the same mode cell.
    if isinstance(obj, LocalStack):
        storage, mode = obj._storage, obj._mode
        if name is None:

            def lookup() -> Any:
                ident = mode[0]
                try:
                    return storage[_id(getcurrent()) if ident is None else ident()]["stack"][-1]
                except (KeyError, IndexError):
                    raise fail() from None
        else:

            def lookup() -> Any:
                ident = mode[0]
                try:
                    top = storage[_id(getcurrent()) if ident is None else ident()]["stack"][-1]
                except (KeyError, IndexError):
                    raise fail() from None
                return getattr(top, name)

        return lookup

    if isinstance(obj, Local):
        if name is None:
            raise TypeError("LocalProxy(Local) needs the attribute name: LocalProxy(local, 'x')")
        storage, mode = type(obj).__storage__, type(obj)._ctxlocal_mode

        def lookup() -> Any:
            ident = mode[0]
            try:
                return storage[_id(getcurrent()) if ident is None else ident()][name]
            except KeyError:
                pass
            try:
                # Not a value of this context: whatever else ``local.name`` would find (a
                # method of a Local subclass, say), as before.
                return getattr(obj, name)
            except AttributeError:
                raise fail() from None

        return lookup

    if isinstance(obj, ContextVar):
        # ``get()`` without an argument, so that the variable's own default counts as bound
        # (``get(sentinel)`` would override it).

        def lookup() -> Any:
            try:
                value = obj.get()
            except LookupError:
                raise fail() from None
            return value if name is None else getattr(value, name)

        return lookup

    if hasattr(obj, "__release_local__"):
        # Any other werkzeug-style local object: ``(local, name)``.
        if name is None:
            raise TypeError("LocalProxy(local) needs the attribute name")

        def lookup() -> Any:
            try:
                return getattr(obj, name)
            except AttributeError:
                raise fail() from None

        return lookup

    if not callable(obj):
        raise TypeError(f"LocalProxy needs a Local, LocalStack, ContextVar or callable, "
                        f"not {type(obj).__name__}")
    if name is None:
        return obj

    def lookup() -> Any:
        return getattr(obj(), name)

    return lookup


def _describe(obj: Any, name: str | None) -> str:
    """Name what the proxy reads, for the unbound message: ``probe_local.user``.

    Asked of the class for a Local: a plain ``getattr`` would read the current context's
    values first, and a Local may well store an attribute called ``_name``.
    """
    if isinstance(obj, Local):
        target = type(obj)._ctxlocal_name or type(obj).__name__
    elif isinstance(obj, ContextVar):
        target = obj.name
    else:
        target = (getattr(obj, "_name", None) or getattr(obj, "__name__", None)
                  or type(obj).__name__)
    return f"{target}.{name}" if name else str(target)


class LocalProxy:
    """Forward every operation to the object the wrapped local holds in this context.

    >>> from ctxlocal import Local, LocalProxy
    >>> loc = Local()
    >>> user = LocalProxy(loc, "user", unbound_message="no user logged in")
    >>> loc.user = "alice"
    >>> user.upper()
    'ALICE'

    ``local`` may be a :class:`Local` (with ``name``), a :class:`LocalStack` (proxy to the
    top item, or to its attribute ``name``), a ``ContextVar``, or any zero-argument callable
    returning the object (werkzeug 1.x style; a callable should raise ``RuntimeError`` when
    nothing is bound).
    """

    __slots__ = ("_ctxlocal_lookup", "_ctxlocal_unbound", "_ctxlocal_wrapped")

    def __init__(self, local: Any, name: str | None = None, *,
                 unbound_message: str | None = None) -> None:
        message = unbound_message or f"object unbound: no value for {_describe(local, name)}"
        setter = object.__setattr__
        setter(self, "_ctxlocal_lookup", _make_lookup(local, name, message))
        setter(self, "_ctxlocal_wrapped", local)
        setter(self, "_ctxlocal_unbound", message)

    def _get_current_object(self) -> Any:
        """The object behind the proxy in the current context (raises when unbound)."""
        return _lookup_of(self)()

    # -- attribute access ---------------------------------------------------------------
    def __getattribute__(self, name: str) -> Any:  # replaced below by the fast version
        raise NotImplementedError

    def __setattr__(self, name: str, value: Any) -> None:
        setattr(_lookup_of(self)(), name, value)

    def __delattr__(self, name: str) -> None:
        delattr(_lookup_of(self)(), name)

    def __dir__(self) -> list[str]:
        try:
            return dir(_lookup_of(self)())
        except RuntimeError:
            return dir(type(self))

    # -- what must work unbound -----------------------------------------------------------
    def __repr__(self) -> str:
        try:
            obj = _lookup_of(self)()
        except RuntimeError:
            return "<LocalProxy unbound>"
        return repr(obj)

    def __bool__(self) -> bool:
        try:
            obj = _lookup_of(self)()
        except RuntimeError:
            return False
        return bool(obj)

    # -- conversions and protocols ----------------------------------------------------------
    def __str__(self) -> str:
        return str(_lookup_of(self)())

    def __bytes__(self) -> bytes:
        return bytes(_lookup_of(self)())

    def __format__(self, spec: str) -> str:
        return format(_lookup_of(self)(), spec)

    def __hash__(self) -> int:
        return hash(_lookup_of(self)())

    def __len__(self) -> int:
        return len(_lookup_of(self)())

    def __length_hint__(self) -> int:
        return operator.length_hint(_lookup_of(self)())

    def __iter__(self) -> Any:
        return iter(_lookup_of(self)())

    def __reversed__(self) -> Any:
        return reversed(_lookup_of(self)())

    def __next__(self) -> Any:
        return next(_lookup_of(self)())

    def __contains__(self, item: Any) -> bool:
        return item in _lookup_of(self)()

    def __getitem__(self, key: Any) -> Any:
        return _lookup_of(self)()[key]

    def __setitem__(self, key: Any, value: Any) -> None:
        _lookup_of(self)()[key] = value

    def __delitem__(self, key: Any) -> None:
        del _lookup_of(self)()[key]

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return _lookup_of(self)()(*args, **kwargs)

    def __enter__(self) -> Any:
        return _lookup_of(self)().__enter__()

    def __exit__(self, *exc: Any) -> Any:
        return _lookup_of(self)().__exit__(*exc)

    async def __aenter__(self) -> Any:
        return await _lookup_of(self)().__aenter__()

    async def __aexit__(self, *exc: Any) -> Any:
        return await _lookup_of(self)().__aexit__(*exc)

    def __await__(self) -> Any:
        return _lookup_of(self)().__await__()

    def __aiter__(self) -> Any:
        return _lookup_of(self)().__aiter__()

    def __anext__(self) -> Any:
        return _lookup_of(self)().__anext__()

    def __int__(self) -> int:
        return int(_lookup_of(self)())

    def __float__(self) -> float:
        return float(_lookup_of(self)())

    def __complex__(self) -> complex:
        return complex(_lookup_of(self)())

    def __index__(self) -> int:
        return operator.index(_lookup_of(self)())

    def __round__(self, ndigits: int | None = None) -> Any:
        return round(_lookup_of(self)(), ndigits)

    def __trunc__(self) -> Any:
        return math.trunc(_lookup_of(self)())

    def __floor__(self) -> Any:
        return math.floor(_lookup_of(self)())

    def __ceil__(self) -> Any:
        return math.ceil(_lookup_of(self)())

    def __fspath__(self) -> Any:
        return _lookup_of(self)().__fspath__()

    def __instancecheck__(self, instance: Any) -> bool:
        return isinstance(instance, _lookup_of(self)())

    def __subclasscheck__(self, subclass: Any) -> bool:
        return issubclass(subclass, _lookup_of(self)())

    def __copy__(self) -> Any:
        return copy.copy(_lookup_of(self)())

    def __deepcopy__(self, memo: dict[int, Any]) -> Any:
        return copy.deepcopy(_lookup_of(self)(), memo)

    def __pow__(self, other: Any, modulo: Any = None) -> Any:
        obj = _lookup_of(self)()
        return pow(obj, other) if modulo is None else pow(obj, other, modulo)

    def __rpow__(self, other: Any) -> Any:
        return pow(other, _lookup_of(self)())

    def __ipow__(self, other: Any) -> LocalProxy:
        operator.ipow(_lookup_of(self)(), other)
        return self


_lookup_of = LocalProxy.__dict__["_ctxlocal_lookup"].__get__
_wrapped_of = LocalProxy.__dict__["_ctxlocal_wrapped"].__get__
_generic_getattr = object.__getattribute__


def _own_attribute(proxy: LocalProxy, name: str) -> Any:
    """The few attribute names the proxy answers itself (or answers when unbound)."""
    if name == "_get_current_object" or name == "__deepcopy__":
        return _generic_getattr(proxy, name)
    try:
        obj = _lookup_of(proxy)()
    except RuntimeError:
        if name == "__class__":
            return LocalProxy
        if name == "__doc__":
            return LocalProxy.__doc__
        if name == "__wrapped__":
            return _wrapped_of(proxy)
        raise
    if name == "__wrapped__":
        try:
            return obj.__wrapped__
        except AttributeError:
            return _wrapped_of(proxy)
    return getattr(obj, name)


_OWN_ATTRIBUTES = frozenset({"_get_current_object", "__class__", "__doc__", "__wrapped__",
                             "__deepcopy__"})


def __getattribute__(self: LocalProxy, name: str) -> Any:
    if name in _OWN_ATTRIBUTES:
        return _own_attribute(self, name)
    return getattr(_lookup_of(self)(), name)


LocalProxy.__getattribute__ = __getattribute__  # type: ignore[method-assign]


def _install_operators() -> None:
    """Forwarders for unary, binary, reflected and in-place operators, generated once."""

    def put(name: str, method: Any) -> None:
        method.__name__ = name
        method.__qualname__ = f"LocalProxy.{name}"
        setattr(LocalProxy, name, method)

    def unary(op: Any) -> Any:
        def method(self: LocalProxy) -> Any:
            return op(_lookup_of(self)())
        return method

    def binary(op: Any) -> Any:
        def method(self: LocalProxy, other: Any) -> Any:
            return op(_lookup_of(self)(), other)
        return method

    def reflected(op: Any) -> Any:
        def method(self: LocalProxy, other: Any) -> Any:
            return op(other, _lookup_of(self)())
        return method

    def inplace(op: Any) -> Any:
        def method(self: LocalProxy, other: Any) -> LocalProxy:
            op(_lookup_of(self)(), other)
            return self
        return method

    for name in ("neg", "pos", "abs", "invert"):
        put(f"__{name}__", unary(getattr(operator, name)))
    for name in ("lt", "le", "eq", "ne", "gt", "ge"):
        put(f"__{name}__", binary(getattr(operator, name)))
    arithmetic = ("add", "sub", "mul", "matmul", "truediv", "floordiv", "mod", "lshift",
                  "rshift", "and", "xor", "or")
    for name in arithmetic:
        op = getattr(operator, f"{name}_" if name in ("and", "or") else name)
        put(f"__{name}__", binary(op))
        put(f"__r{name}__", reflected(op))
        put(f"__i{name}__", inplace(getattr(operator, f"i{name}")))
    put("__divmod__", binary(divmod))
    put("__rdivmod__", reflected(divmod))


_install_operators()
