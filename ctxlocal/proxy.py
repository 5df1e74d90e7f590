"""``LocalProxy``: an object that forwards everything to whatever is current *now*.

``request``, ``g`` and ``current_app`` are proxies: module-level names that resolve, on each
use, to the object of the request running in the current greenlet.  This module knows
nothing of Local or LocalStack: each provides the lookup its proxies call
(``__ctxlocal_lookup__``), so imports point one way (local, stack -> proxy).

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
  False, ``dir`` is ``[]`` (as in werkzeug 1.x and 2.x), and every other use raises
  ``RuntimeError`` with a message naming what is unbound.
* ``__doc__`` comes from the object; unbound, it is the proxy class's.
* ``__wrapped__`` as in werkzeug 1.x/2.0: a proxy over a plain callable wraps that callable
  (``__wrapped__`` is the callable, bound or not); any other proxy forwards it to the object,
  so it raises AttributeError when the object has none — and when unbound (not
  RuntimeError, so that ``hasattr``, ``inspect.unwrap`` and doctest's finder, which only
  expect AttributeError, work on a module holding an unbound proxy).

Why ``__getattribute__`` rather than ``__getattr__``: with ``__getattr__`` every forwarded
attribute first fails a normal look-up on the proxy, and building that AttributeError costs
more than the forwarding itself.
"""

from __future__ import annotations

import copy
import math
import operator
from collections.abc import Callable
from contextvars import ContextVar
from typing import Any

__all__ = ["LocalProxy"]


def _contextvar_lookup(var: ContextVar[Any], name: str | None,
                       unbound: str) -> Callable[[], Any]:
    # ``get()`` without an argument, so that the variable's own default counts as bound
    # (``get(sentinel)`` would override it).

    def lookup() -> Any:
        try:
            value = var.get()
        except LookupError:
            raise RuntimeError(unbound) from None
        return value if name is None else getattr(value, name)

    return lookup


def _werkzeug_local_lookup(local: Any, name: str | None, unbound: str) -> Callable[[], Any]:
    # Any other werkzeug-style local object: ``(local, name)``.
    if name is None:
        raise TypeError("LocalProxy(local) needs the attribute name")

    def lookup() -> Any:
        try:
            return getattr(local, name)
        except AttributeError:
            raise RuntimeError(unbound) from None

    return lookup


def _callable_lookup(func: Callable[[], Any], name: str | None) -> Callable[[], Any]:
    if name is None:
        return func

    def lookup() -> Any:
        return getattr(func(), name)

    return lookup


def _make_lookup(obj: Any, name: str | None, unbound: str) -> Callable[[], Any]:
    """The zero-argument function that returns the current object or raises RuntimeError.

    Locals and stacks build their own (``__ctxlocal_lookup__``: they read their storage
    directly, one Python call per use), so this module needs to know neither class.
    """
    provider = getattr(type(obj), "__ctxlocal_lookup__", None)
    if provider is not None:
        return provider(obj, name, unbound)
    if isinstance(obj, ContextVar):
        return _contextvar_lookup(obj, name, unbound)
    if hasattr(obj, "__release_local__"):
        return _werkzeug_local_lookup(obj, name, unbound)
    if not callable(obj):
        raise TypeError(f"LocalProxy needs a Local, LocalStack, ContextVar or callable, "
                        f"not {type(obj).__name__}")
    return _callable_lookup(obj, name)


def _wraps_a_function(obj: Any) -> bool:
    """werkzeug 1.x/2.0: a proxy over a plain callable (not a local) "wraps" that callable,
    so ``__wrapped__`` is the callable; any other proxy forwards ``__wrapped__``."""
    return (callable(obj) and not isinstance(obj, ContextVar)
            and not hasattr(type(obj), "__ctxlocal_lookup__")
            and not hasattr(obj, "__release_local__"))


def _describe(obj: Any, name: str | None) -> str:
    """Name what the proxy reads, for the unbound message: ``probe_local.user``.

    ``__ctxlocal_name__`` for a Local or stack (asked of the object: a Local refuses it as a
    value, so a stored attribute can never answer instead).
    """
    if hasattr(type(obj), "__ctxlocal_lookup__"):
        target = obj.__ctxlocal_name__ or type(obj).__name__
    elif isinstance(obj, ContextVar):
        target = obj.name
    else:
        target = (getattr(obj, "_name", None) or getattr(obj, "__name__", None)
                  or type(obj).__name__)
    return f"{target}.{name}" if name else str(target)


class LocalProxy:
    """A proxy to the object bound to a context-local: every operation on a LocalProxy is
    forwarded to the object the wrapped local holds in the current context.

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
        setter(self, "_ctxlocal_wrapped", local if _wraps_a_function(local) else None)
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
            return []

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
    if name == "__wrapped__":
        return _wrapped(proxy)
    try:
        obj = _lookup_of(proxy)()
    except RuntimeError:
        if name == "__class__":
            return LocalProxy
        if name == "__doc__":
            return LocalProxy.__doc__
        raise
    return getattr(obj, name)


def _wrapped(proxy: LocalProxy) -> Any:
    """``proxy.__wrapped__`` (see the module docstring)."""
    function = _wrapped_of(proxy)
    if function is not None:
        return function
    try:
        obj = _lookup_of(proxy)()
    except RuntimeError as unbound:
        raise AttributeError(f"__wrapped__: {unbound}") from None
    return obj.__wrapped__


_OWN_ATTRIBUTES = frozenset({"_get_current_object", "__class__", "__doc__", "__wrapped__",
                             "__deepcopy__"})


def __getattribute__(self: LocalProxy, name: str) -> Any:
    if name in _OWN_ATTRIBUTES:
        return _own_attribute(self, name)
    return getattr(_lookup_of(self)(), name)


LocalProxy.__getattribute__ = __getattribute__  # type: ignore[method-assign]


def _unary(op: Callable[[Any], Any]) -> Callable[..., Any]:
    def method(self: LocalProxy) -> Any:
        return op(_lookup_of(self)())
    return method


def _binary(op: Callable[[Any, Any], Any]) -> Callable[..., Any]:
    def method(self: LocalProxy, other: Any) -> Any:
        return op(_lookup_of(self)(), other)
    return method


def _reflected(op: Callable[[Any, Any], Any]) -> Callable[..., Any]:
    def method(self: LocalProxy, other: Any) -> Any:
        return op(other, _lookup_of(self)())
    return method


def _inplace(op: Callable[[Any, Any], Any]) -> Callable[..., Any]:
    def method(self: LocalProxy, other: Any) -> LocalProxy:
        op(_lookup_of(self)(), other)
        return self
    return method


# name -> operator, for ``__name__``, ``__rname__`` and ``__iname__``.
_ARITHMETIC: dict[str, tuple[Callable[[Any, Any], Any], Callable[[Any, Any], Any]]] = {
    "add": (operator.add, operator.iadd),
    "sub": (operator.sub, operator.isub),
    "mul": (operator.mul, operator.imul),
    "matmul": (operator.matmul, operator.imatmul),
    "truediv": (operator.truediv, operator.itruediv),
    "floordiv": (operator.floordiv, operator.ifloordiv),
    "mod": (operator.mod, operator.imod),
    "lshift": (operator.lshift, operator.ilshift),
    "rshift": (operator.rshift, operator.irshift),
    "and": (operator.and_, operator.iand),
    "xor": (operator.xor, operator.ixor),
    "or": (operator.or_, operator.ior),
}

# Every generated forwarder: (method name, factory, operator).
_OPERATORS: tuple[tuple[str, Callable[[Any], Callable[..., Any]], Any], ...] = (
    ("__neg__", _unary, operator.neg),
    ("__pos__", _unary, operator.pos),
    ("__abs__", _unary, operator.abs),
    ("__invert__", _unary, operator.invert),
    ("__lt__", _binary, operator.lt),
    ("__le__", _binary, operator.le),
    ("__eq__", _binary, operator.eq),
    ("__ne__", _binary, operator.ne),
    ("__gt__", _binary, operator.gt),
    ("__ge__", _binary, operator.ge),
    ("__divmod__", _binary, divmod),
    ("__rdivmod__", _reflected, divmod),
    *((f"__{name}__", _binary, op) for name, (op, _) in _ARITHMETIC.items()),
    *((f"__r{name}__", _reflected, op) for name, (op, _) in _ARITHMETIC.items()),
    *((f"__i{name}__", _inplace, iop) for name, (_, iop) in _ARITHMETIC.items()),
)

for _name, _factory, _op in _OPERATORS:
    _method = _factory(_op)
    _method.__name__ = _name
    _method.__qualname__ = f"LocalProxy.{_name}"
    setattr(LocalProxy, _name, _method)
del _name, _factory, _op, _method
