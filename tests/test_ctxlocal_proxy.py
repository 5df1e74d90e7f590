"""``ctxlocal.LocalProxy``: every operator and protocol it forwards, and the unbound state.

The proxies here are mostly ``LocalProxy(local, "x")`` over a fresh Local; the other
backings (LocalStack, ContextVar, callable) get tests of their own.  Each test releases
what it set, and the ``loc`` fixture checks that it did.
"""

from __future__ import annotations

import ast
import asyncio
import copy
import inspect
import math
import operator
import os
import pathlib
from collections.abc import Callable, Iterator
from contextvars import ContextVar
from pathlib import Path
from typing import Any

import gevent
import pytest
import werkzeug.local
from hypothesis import given
from hypothesis import strategies as st

import ctxlocal
import ctxlocal.proxy
from ctxlocal import Local, LocalProxy, LocalStack, release_local


@pytest.fixture
def loc() -> Iterator[Local]:
    """A fresh Local; released (and checked empty) after the test."""
    local = Local(name="proxied")
    yield local
    release_local(local)
    assert local.__storage__ == {}


def bound(loc: Local, value: Any) -> LocalProxy:
    """A proxy to ``loc.x``, with ``loc.x`` set to ``value`` in this greenlet."""
    loc.x = value
    return LocalProxy(loc, "x")


# -- attributes and items ---------------------------------------------------------------

class Thing:
    """A plain object with a docstring, to see attribute traffic through the proxy."""

    def __init__(self) -> None:
        self.colour = "red"


def test_attribute_get_set_delete(loc: Local) -> None:
    """Attribute access goes to the current object; a missing one is an AttributeError."""
    thing = Thing()
    proxy = bound(loc, thing)
    assert proxy.colour == "red"
    proxy.colour = "blue"
    assert thing.colour == "blue"
    proxy.size = 3
    assert thing.size == 3  # type: ignore[attr-defined]
    del proxy.size
    assert not hasattr(thing, "size")
    with pytest.raises(AttributeError, match="size"):
        proxy.size
    assert getattr(proxy, "missing", "default") == "default"


def test_items_and_slices(loc: Local) -> None:
    """Item and slice get/set/delete reach the object."""
    data = [0, 1, 2, 3]
    proxy = bound(loc, data)
    assert proxy[1] == 1
    assert proxy[1:3] == [1, 2]
    proxy[0] = 10
    proxy[1:3] = ["a", "b", "c"]
    assert data == [10, "a", "b", "c", 3]
    del proxy[0]
    del proxy[-2:]
    assert data == ["a", "b"]
    mapping = bound(loc, {"k": 1})
    mapping["new"] = 2
    del mapping["k"]
    assert loc.x == {"new": 2}
    with pytest.raises(KeyError):
        mapping["k"]


def test_iteration_protocols(loc: Local) -> None:
    """iter, reversed, in, len, length_hint and next all use the object."""
    proxy = bound(loc, [1, 2, 3])
    assert list(proxy) == [1, 2, 3]
    assert list(reversed(proxy)) == [3, 2, 1]
    assert 2 in proxy
    assert 5 not in proxy
    assert len(proxy) == 3
    assert operator.length_hint(proxy) == 3
    iterator = bound(loc, iter("ab"))
    assert next(iterator) == "a"
    assert next(iterator) == "b"
    with pytest.raises(StopIteration):
        next(iterator)


def test_length_hint_of_an_iterator(loc: Local) -> None:
    """length_hint works for objects that only have ``__length_hint__``."""
    proxy = bound(loc, iter(range(7)))
    assert operator.length_hint(proxy) == 7


# -- comparisons and hashing --------------------------------------------------------------

@pytest.mark.parametrize("op", [operator.lt, operator.le, operator.eq, operator.ne,
                                operator.gt, operator.ge])
@pytest.mark.parametrize(("value", "other"), [(1, 2), (2, 2), (3, 2), ("b", "a")])
def test_comparisons_both_ways(loc: Local, op: Callable[[Any, Any], bool],
                               value: Any, other: Any) -> None:
    """``proxy OP other`` and ``other OP proxy`` agree with the plain values."""
    proxy = bound(loc, value)
    assert op(proxy, other) == op(value, other)
    assert op(other, proxy) == op(other, value)


def test_hash_and_use_as_key(loc: Local) -> None:
    """A bound proxy hashes like its object, so it finds the object's dict entries."""
    proxy = bound(loc, "key")
    assert hash(proxy) == hash("key")
    assert {"key": 1}[proxy] == 1
    assert proxy in {"key"}


def test_unhashable_object(loc: Local) -> None:
    """Hashing a proxy to an unhashable object fails as the object would."""
    proxy = bound(loc, [1])
    with pytest.raises(TypeError):
        hash(proxy)


# -- arithmetic and bitwise ----------------------------------------------------------------

BINARY_INT_OPS: list[Callable[[Any, Any], Any]] = [
    operator.add, operator.sub, operator.mul, operator.truediv, operator.floordiv,
    operator.mod, operator.lshift, operator.rshift, operator.and_, operator.xor,
    operator.or_, operator.pow, divmod,
]


@pytest.mark.parametrize("op", BINARY_INT_OPS, ids=lambda op: op.__name__)
@given(value=st.integers(-50, 50), other=st.integers(1, 8))
def test_binary_and_reflected_int_ops(op: Callable[[Any, Any], Any],
                                      value: int, other: int) -> None:
    """Every binary operator, proxy on the left and (reflected) on the right.

    ``other`` stays small and positive: valid as divisor, shift count and exponent.
    """
    loc = Local()
    proxy = bound(loc, value)
    assert op(proxy, other) == op(value, other)
    if value > 0:  # as the right operand: divisor / shift count / exponent
        assert op(other, proxy) == op(other, value)
    release_local(loc)


def test_string_operators(loc: Local) -> None:
    """Operators are the object's: ``+``/``*``/``%`` on a string concatenate and format."""
    proxy = bound(loc, "ab")
    assert proxy + "c" == "abc"
    assert "z" + proxy == "zab"
    assert proxy * 2 == "abab"
    assert 2 * proxy == "abab"
    loc.x = "hello %s"
    assert proxy % "you" == "hello you"


class Matrix:
    """Just enough of a matrix to see ``@`` and ``@=`` go through, both ways."""

    def __init__(self, value: int) -> None:
        self.value = value

    def __matmul__(self, other: Any) -> int:
        return self.value * 10 + other

    def __rmatmul__(self, other: Any) -> int:
        return other * 10 + self.value

    def __imatmul__(self, other: Any) -> Matrix:
        self.value = self.value * 10 + other
        return self


def test_matmul(loc: Local) -> None:
    """``@``, reflected ``@`` and ``@=`` reach the object."""
    matrix = Matrix(1)
    proxy = bound(loc, matrix)
    assert proxy @ 2 == 12
    assert 3 @ proxy == 31  # type: ignore[operator]
    same = proxy
    same @= 5
    assert same is proxy
    assert matrix.value == 15


def test_divmod_and_pow_with_modulo(loc: Local) -> None:
    """divmod both ways and three-argument pow."""
    proxy = bound(loc, 17)
    assert divmod(proxy, 5) == (3, 2)
    assert divmod(40, proxy) == (2, 6)
    assert pow(proxy, 2, 5) == pow(17, 2, 5)
    assert pow(proxy, 3) == 17 ** 3
    assert 2 ** proxy == 2 ** 17


@pytest.mark.parametrize("op", [operator.neg, operator.pos, abs, operator.invert],
                         ids=lambda op: op.__name__)
@given(value=st.integers(-100, 100))
def test_unary_ops(op: Callable[[Any], Any], value: int) -> None:
    """-p, +p, abs(p) and ~p."""
    loc = Local()
    proxy = bound(loc, value)
    assert op(proxy) == op(value)
    release_local(loc)


# -- in-place operators ---------------------------------------------------------------------

INPLACE = ["iadd", "isub", "imul", "imatmul", "itruediv", "ifloordiv", "imod", "ipow",
           "ilshift", "irshift", "iand", "ixor", "ior"]


class Recorder:
    """Records every in-place operation applied to it and returns itself, like a mutable
    container would."""

    def __init__(self) -> None:
        self.log: list[tuple[str, Any]] = []


def _recording(name: str) -> Callable[[Recorder, Any], Recorder]:
    def method(self: Recorder, other: Any) -> Recorder:
        self.log.append((name, other))
        return self
    return method


for _name in INPLACE:
    setattr(Recorder, f"__{_name}__", _recording(_name))


@pytest.mark.parametrize("name", INPLACE)
def test_inplace_returns_the_proxy_and_mutates(loc: Local, name: str) -> None:
    """``proxy OP= x`` applies the in-place operator to the object and the name stays the
    proxy (so a module-level proxy is not replaced by the object)."""
    recorder = Recorder()
    proxy = bound(loc, recorder)
    result = getattr(operator, name)(proxy, 7)
    assert result is proxy
    assert recorder.log == [(name, 7)]
    assert loc.x is recorder


def test_inplace_on_builtin_mutables(loc: Local) -> None:
    """The everyday cases: list ``+=``, set ``|=`` / ``&=`` / ``-=``, dict ``|=``."""
    items = [1]
    proxy = bound(loc, items)
    proxy += [2, 3]
    assert items == [1, 2, 3]
    proxy *= 2
    assert items == [1, 2, 3, 1, 2, 3]
    assert isinstance(proxy, LocalProxy) and type(proxy) is LocalProxy
    numbers = {1, 2, 3}
    proxy = bound(loc, numbers)
    proxy |= {4}
    proxy &= {2, 3, 4}
    proxy -= {3}
    proxy ^= {9}
    assert numbers == {2, 4, 9}
    mapping = {"a": 1}
    proxy = bound(loc, mapping)
    proxy |= {"b": 2}
    assert mapping == {"a": 1, "b": 2}


def test_inplace_on_an_int_is_discarded(loc: Local) -> None:
    """Documented edge case: an int cannot change, and the proxy has nowhere to put the
    result, so ``proxy += 1`` leaves the Local's value as it was (as werkzeug does).
    Rebind through the Local instead: ``loc.x += 1``."""
    proxy = bound(loc, 5)
    proxy += 1
    assert type(proxy) is LocalProxy
    assert loc.x == 5
    assert proxy == 5
    loc.x += 1
    assert proxy == 6


# -- conversions ------------------------------------------------------------------------------

def test_numeric_conversions(loc: Local) -> None:
    """int, float, complex, index, round, trunc, floor and ceil."""
    proxy = bound(loc, 7.75)
    assert int(proxy) == 7
    assert float(proxy) == 7.75
    assert complex(proxy) == complex(7.75)
    assert round(proxy) == 8
    assert round(proxy, 1) == 7.8
    assert math.trunc(proxy) == 7
    assert math.floor(proxy) == 7
    assert math.ceil(proxy) == 8
    index = bound(loc, 2)
    assert operator.index(index) == 2
    assert ["a", "b", "c"][index] == "c"
    assert hex(index) == "0x2"
    assert range(10)[index:] == range(2, 10)


def test_trunc_floor_ceil_of_a_negative(loc: Local) -> None:
    """The three roundings differ for negatives; each must reach the object's own."""
    proxy = bound(loc, -2.5)
    assert (math.trunc(proxy), math.floor(proxy), math.ceil(proxy)) == (-2, -3, -2)


def test_text_conversions(loc: Local) -> None:
    """str, repr, bytes and format use the object."""
    proxy = bound(loc, 42)
    assert str(proxy) == "42"
    assert repr(proxy) == "42"
    assert f"{proxy:>5}" == "   42"
    assert format(proxy, "x") == "2a"
    data = bound(loc, b"raw")
    assert bytes(data) == b"raw"
    ints = bound(loc, [104, 105])
    assert bytes(ints) == b"hi"


def test_bool(loc: Local) -> None:
    """A bound proxy is as truthy as its object."""
    assert bool(bound(loc, [1])) is True
    assert bool(bound(loc, [])) is False
    assert bool(bound(loc, 0)) is False


def test_fspath(loc: Local) -> None:
    """os.fspath / open() accept a proxy to a path-like object."""

    proxy = bound(loc, pathlib.PurePosixPath("/tmp/x"))
    assert os.fspath(proxy) == "/tmp/x"


# -- calling and context managers ---------------------------------------------------------------

def test_call(loc: Local) -> None:
    """Calling the proxy calls the object, with arguments."""
    proxy = bound(loc, lambda a, b=0: a + b)
    assert proxy(1, b=2) == 3


class Managed:
    """Records enter/exit, sync and async."""

    def __init__(self) -> None:
        self.events: list[str] = []

    def __enter__(self) -> str:
        self.events.append("enter")
        return "sync value"

    def __exit__(self, *exc: Any) -> bool:
        self.events.append(f"exit {exc[0].__name__ if exc[0] else None}")
        return True  # swallow, to see the return value go through

    async def __aenter__(self) -> str:
        self.events.append("aenter")
        return "async value"

    async def __aexit__(self, *exc: Any) -> bool:
        self.events.append(f"aexit {exc[0].__name__ if exc[0] else None}")
        return False


def test_context_manager(loc: Local) -> None:
    """``with proxy`` enters the object; ``__exit__``'s return value is honoured."""
    managed = Managed()
    proxy = bound(loc, managed)
    with proxy as value:
        assert value == "sync value"
    with proxy:
        raise ValueError("swallowed by __exit__")
    assert managed.events == ["enter", "exit None", "enter", "exit ValueError"]


class Answer:
    """An awaitable that yields to the event loop once and then answers 42."""

    def __await__(self) -> Any:
        yield from asyncio.sleep(0).__await__()
        return 42


async def _countdown() -> Any:
    for n in (3, 2, 1):
        await asyncio.sleep(0)
        yield n


def test_async_protocols(loc: Local) -> None:
    """``async with``, ``await`` and ``async for`` through proxies, run by asyncio."""
    managed = Managed()
    cm = LocalProxy(loc, "cm")
    awaitable = LocalProxy(loc, "answer")
    agen = LocalProxy(loc, "agen")
    loc.cm = managed
    loc.answer = Answer()
    loc.agen = _countdown()

    async def main() -> tuple[str, int, list[int]]:
        async with cm as value:
            pass
        answer = await awaitable
        counted = [n async for n in agen]
        return value, answer, counted

    assert asyncio.run(main()) == ("async value", 42, [3, 2, 1])
    assert managed.events == ["aenter", "aexit None"]


# -- copying ---------------------------------------------------------------------------------------

def test_copy_and_deepcopy_copy_the_object(loc: Local) -> None:
    """copy/deepcopy return copies of the *object*, never another proxy."""
    inner = [2]
    data = [1, inner]
    proxy = bound(loc, data)
    shallow = copy.copy(proxy)
    deep = copy.deepcopy(proxy)
    assert type(shallow) is list and type(deep) is list
    assert shallow == data and shallow is not data and shallow[1] is inner
    assert deep == data and deep[1] is not inner


def test_copy_hooks_of_the_object_are_used(loc: Local) -> None:
    """An object's own ``__copy__``/``__deepcopy__`` decide, as for the plain object."""

    class Singleton:
        def __copy__(self) -> Singleton:
            return self

        def __deepcopy__(self, memo: dict[int, Any]) -> Singleton:
            return self

    only = Singleton()
    proxy = bound(loc, only)
    assert copy.copy(proxy) is only
    assert copy.deepcopy(proxy) is only


def test_deepcopy_of_a_structure_holding_the_proxy(loc: Local) -> None:
    """Deep-copying a container that holds a proxy copies the proxied object."""
    proxy = bound(loc, {"a": [1]})
    copied = copy.deepcopy({"p": proxy})
    assert copied == {"p": {"a": [1]}}
    assert type(copied["p"]) is dict


# -- identity and introspection ----------------------------------------------------------------

def test_isinstance_and_class(loc: Local) -> None:
    """isinstance sees through the proxy via ``__class__``; ``type()`` does not."""
    proxy = bound(loc, Thing())
    assert isinstance(proxy, Thing)
    assert isinstance(proxy, LocalProxy)
    assert proxy.__class__ is Thing
    assert type(proxy) is LocalProxy


def test_doc_and_wrapped(loc: Local) -> None:
    """``__doc__`` is the object's; ``__wrapped__`` is forwarded to the object: its own, or
    AttributeError when it has none (werkzeug 1.x/2.0; regression: it used to return the
    Local)."""
    proxy = bound(loc, Thing())
    assert proxy.__doc__ == Thing.__doc__
    with pytest.raises(AttributeError):
        proxy.__wrapped__
    assert not hasattr(proxy, "__wrapped__")

    class Decorated:
        __wrapped__ = "inner function"

    loc.x = Decorated()
    assert proxy.__wrapped__ == "inner function"


def test_dir(loc: Local) -> None:
    """dir() lists the object's attributes."""
    proxy = bound(loc, Thing())
    assert "colour" in dir(proxy)
    assert dir(proxy) == dir(loc.x)


def test_get_current_object(loc: Local) -> None:
    """``_get_current_object()`` returns the object itself (werkzeug API)."""
    thing = Thing()
    proxy = bound(loc, thing)
    assert proxy._get_current_object() is thing


def test_proxy_over_a_class(loc: Local) -> None:
    """A proxy to a class works as the second argument of isinstance/issubclass."""

    class Base:
        pass

    class Child(Base):
        pass

    proxy = bound(loc, Base)
    assert isinstance(Child(), proxy)
    assert not isinstance(3, proxy)
    assert issubclass(Child, proxy)
    assert not issubclass(int, proxy)
    instance = proxy()
    assert type(instance) is Base


def test_resolves_per_greenlet(loc: Local) -> None:
    """One module-level proxy, a different object in every greenlet."""
    proxy = LocalProxy(loc, "x")
    loc.x = "main"

    def child(n: int) -> str:
        loc.x = f"child {n}"
        gevent.sleep(0)
        return str(proxy)

    workers = [gevent.spawn(child, n) for n in range(10)]
    gevent.joinall(workers, raise_error=True)
    assert [worker.value for worker in workers] == [f"child {n}" for n in range(10)]
    assert proxy == "main"
    gevent.sleep(0)  # let the hub run the finished workers' cleanup links


# -- other backings ----------------------------------------------------------------------------

def test_stack_backed() -> None:
    """``LocalProxy(stack)`` is the top item; ``LocalProxy(stack, name)`` its attribute."""
    stack = LocalStack()
    top = LocalProxy(stack)
    colour = LocalProxy(stack, "colour")
    stack.push(Thing())
    assert isinstance(top, Thing)
    assert colour == "red"
    stack.pop()
    assert repr(top) == "<LocalProxy unbound>"
    with pytest.raises(RuntimeError):
        colour.upper()


def test_contextvar_backed() -> None:
    """A ContextVar works as the backing: unset is unbound, ``set`` binds."""
    var: ContextVar[Any] = ContextVar("request_id")
    proxy = LocalProxy(var)
    real = LocalProxy(var, "real")
    assert not proxy
    with pytest.raises(RuntimeError, match="request_id"):
        proxy + 1
    token = var.set(41)
    try:
        assert proxy + 1 == 42
        assert real == 41
        with pytest.raises(AttributeError):  # an int has no __wrapped__
            proxy.__wrapped__
    finally:
        var.reset(token)
    assert repr(proxy) == "<LocalProxy unbound>"


def test_contextvar_default_counts_as_bound() -> None:
    """A ContextVar's own default is its value when unset (regression: the proxy used to
    call ``get(sentinel)``, which overrides the default, and so reported it unbound)."""
    var: ContextVar[int] = ContextVar("with_default", default=5)
    proxy = LocalProxy(var)
    assert proxy == 5
    assert bool(proxy) is True


def test_contextvar_backed_is_per_greenlet() -> None:
    """Each greenlet runs in its own contextvars context, so the proxy is per greenlet."""
    var: ContextVar[str] = ContextVar("per_greenlet")
    proxy = LocalProxy(var)

    def child(n: int) -> str:
        var.set(f"child {n}")
        gevent.sleep(0)
        return str(proxy)

    workers = [gevent.spawn(child, n) for n in range(5)]
    gevent.joinall(workers, raise_error=True)
    assert [worker.value for worker in workers] == [f"child {n}" for n in range(5)]
    assert not proxy


def test_callable_backed() -> None:
    """A zero-argument callable is called on every use (werkzeug 1.x's main form)."""
    box: dict[str, Any] = {"value": [1]}
    proxy = LocalProxy(lambda: box["value"])
    proxy.append(2)
    assert box["value"] == [1, 2]
    box["value"] = "replaced"
    assert proxy.upper() == "REPLACED"
    named = LocalProxy(lambda: box["value"], "upper")
    assert named() == "REPLACED"


def test_callable_backed_unbound_and_wrapped() -> None:
    """A callable signals "unbound" by raising RuntimeError; ``__wrapped__`` is the callable
    (for an object without a ``__wrapped__`` of its own)."""

    def lookup() -> Any:
        raise RuntimeError("no application context")

    proxy = LocalProxy(lookup)
    assert repr(proxy) == "<LocalProxy unbound>"
    assert not proxy
    assert proxy.__wrapped__ is lookup
    with pytest.raises(RuntimeError, match="no application context"):
        proxy.anything


def test_other_werkzeug_style_locals() -> None:
    """Any object with ``__release_local__`` is read as ``(local, name)``."""

    theirs = werkzeug.local.Local()
    proxy = LocalProxy(theirs, "value")
    assert not proxy
    theirs.value = "from werkzeug's Local"
    assert proxy.upper() == "FROM WERKZEUG'S LOCAL"
    werkzeug.local.release_local(theirs)


def test_constructor_errors() -> None:
    """A Local needs the attribute name; a non-callable is refused at once."""
    with pytest.raises(TypeError):
        LocalProxy(Local())
    with pytest.raises(TypeError):
        LocalProxy(42)


# -- unbound -----------------------------------------------------------------------------------

def _aiter(proxy: Any) -> Any:
    return proxy.__aiter__()


UNBOUND_USES: dict[str, Callable[[Any], Any]] = {
    "getattr": lambda p: p.anything,
    "setattr": lambda p: setattr(p, "anything", 1),
    "delattr": lambda p: delattr(p, "anything"),
    "getitem": lambda p: p[0],
    "setitem": lambda p: p.__setitem__(0, 1),
    "delitem": lambda p: p.__delitem__(0),
    "iter": iter,
    "next": next,
    "reversed": reversed,
    "contains": lambda p: 1 in p,
    "len": len,
    "length_hint": lambda p: p.__length_hint__(),
    "hash": hash,
    "eq": lambda p: p == 1,
    "ne": lambda p: p != 1,
    "lt": lambda p: p < 1,
    "le": lambda p: p <= 1,
    "gt": lambda p: p > 1,
    "ge": lambda p: p >= 1,
    "reflected eq": lambda p: operator.eq(1, p),
    "add": lambda p: p + 1,
    "radd": lambda p: 1 + p,
    "iadd": lambda p: operator.iadd(p, 1),
    "sub": lambda p: p - 1,
    "mul": lambda p: p * 1,
    "matmul": lambda p: p @ 1,
    "truediv": lambda p: p / 1,
    "floordiv": lambda p: p // 1,
    "mod": lambda p: p % 1,
    "pow": lambda p: p ** 2,
    "pow modulo": lambda p: pow(p, 2, 3),
    "rpow": lambda p: 2 ** p,
    "ipow": lambda p: operator.ipow(p, 2),
    "divmod": lambda p: divmod(p, 1),
    "rdivmod": lambda p: divmod(1, p),
    "lshift": lambda p: p << 1,
    "rshift": lambda p: p >> 1,
    "and": lambda p: p & 1,
    "or": lambda p: p | 1,
    "xor": lambda p: p ^ 1,
    "neg": operator.neg,
    "pos": operator.pos,
    "abs": abs,
    "invert": operator.invert,
    "int": int,
    "float": float,
    "complex": complex,
    "index": operator.index,
    "round": round,
    "trunc": math.trunc,
    "floor": math.floor,
    "ceil": math.ceil,
    "str": str,
    "bytes": bytes,
    "format": lambda p: format(p, ""),
    "call": lambda p: p(),
    "enter": lambda p: p.__enter__(),
    "exit": lambda p: p.__exit__(None, None, None),
    "await": lambda p: p.__await__(),
    "aiter": _aiter,
    "copy": copy.copy,
    "deepcopy": copy.deepcopy,
    "fspath": os.fspath,
    "instancecheck": lambda p: isinstance(1, p),
    "subclasscheck": lambda p: issubclass(int, p),
    "current object": lambda p: p._get_current_object(),
}


@pytest.mark.parametrize("use", list(UNBOUND_USES.values()), ids=list(UNBOUND_USES))
def test_unbound_raises_runtime_error_with_the_message(loc: Local,
                                                       use: Callable[[Any], Any]) -> None:
    """Anything but repr/bool/dir on an unbound proxy is a RuntimeError carrying the
    message the proxy was given."""
    proxy = LocalProxy(loc, "x", unbound_message="no request is active")
    with pytest.raises(RuntimeError, match="no request is active"):
        use(proxy)


def test_unbound_async_uses(loc: Local) -> None:
    """``async with`` and ``await`` of an unbound proxy raise inside the coroutine."""
    proxy = LocalProxy(loc, "x", unbound_message="nothing to await")

    async def enter() -> None:
        async with proxy:
            pass

    async def wait() -> None:
        await proxy

    for coroutine in (enter, wait):
        with pytest.raises(RuntimeError, match="nothing to await"):
            asyncio.run(coroutine())


def test_unbound_default_message_names_the_local() -> None:
    """Without an explicit message, the error names the Local (by its name) and attribute."""
    named = LocalProxy(Local(name="session"), "user")
    with pytest.raises(RuntimeError, match=r"session\.user"):
        str(named)
    unnamed = LocalProxy(Local(), "user")
    with pytest.raises(RuntimeError, match=r"Local\.user"):
        str(unnamed)
    stack = LocalProxy(LocalStack(name="requests"))
    with pytest.raises(RuntimeError, match="requests"):
        str(stack)


def test_unbound_message_ignores_a_stored_name(loc: Local) -> None:
    """The default message must describe the Local, not a value it happens to hold."""
    loc._name = "a value called _name"
    proxy = LocalProxy(loc, "user")
    with pytest.raises(RuntimeError, match=r"proxied\.user"):
        str(proxy)


def test_unbound_repr_bool_dir_and_introspection(loc: Local) -> None:
    """The few things that work unbound: repr, bool, ``dir() == []`` (werkzeug 1.x/2.x),
    ``__class__``, ``__doc__``; ``__wrapped__`` is an AttributeError, not a RuntimeError, so
    ``hasattr`` and ``inspect.unwrap`` (doctest's finder) work on an unbound proxy."""
    proxy = LocalProxy(loc, "x")
    assert repr(proxy) == "<LocalProxy unbound>"
    assert bool(proxy) is False
    assert dir(proxy) == []
    assert proxy.__class__ is LocalProxy
    assert proxy.__doc__ == LocalProxy.__doc__
    assert not hasattr(proxy, "__wrapped__")
    assert inspect.unwrap(proxy) is proxy
    assert isinstance(proxy, LocalProxy)


def test_unbound_then_bound_then_unbound(loc: Local) -> None:
    """Binding is decided on each use, never cached."""
    proxy = LocalProxy(loc, "x")
    assert not proxy
    loc.x = "now"
    assert proxy == "now"
    del loc.x
    assert repr(proxy) == "<LocalProxy unbound>"


def test_ident_change_after_the_proxy_was_made() -> None:
    """Proxies read storage directly; a later ``__ident_func__`` change must still apply."""
    local = Local()
    stack = LocalStack()
    value, top = LocalProxy(local, "x"), LocalProxy(stack)
    local.x = "greenlet-keyed"
    stack.push("greenlet-keyed")
    local.__ident_func__ = lambda: "custom"
    stack.__ident_func__ = lambda: "custom"
    assert not value
    assert not top
    local.x = "custom-keyed"
    stack.push("custom-keyed")
    assert value == "custom-keyed"
    assert top == "custom-keyed"
    release_local(local)
    release_local(stack)
    local.__ident_func__ = ctxlocal.get_ident
    stack.__ident_func__ = ctxlocal.get_ident
    assert value == "greenlet-keyed"
    assert top == "greenlet-keyed"
    release_local(local)
    release_local(stack)


def test_proxy_to_a_method_of_a_local_subclass() -> None:
    """``LocalProxy(local, name)`` finds what ``local.name`` finds: a stored value first,
    else the Local's own attribute (a subclass method)."""

    class Session(Local):
        def greeting(self) -> str:
            return "hello"

    session = Session()
    proxy = LocalProxy(session, "greeting")
    assert proxy() == "hello"
    session.greeting = lambda: "per-context"
    assert proxy() == "per-context"
    release_local(session)


def test_proxy_module_imports_neither_local_nor_stack() -> None:
    """Imports point one way (local, stack -> proxy): each class builds the lookup its proxies
    call (``__ctxlocal_lookup__``), so proxy.py needs neither module."""
    tree = ast.parse(Path(ctxlocal.proxy.__file__).read_text(encoding="utf-8"))
    imported = {node.module for node in ast.walk(tree)
                if isinstance(node, ast.ImportFrom) and node.level > 0}
    imported |= {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import)
                 for alias in node.names}
    assert not imported & {"local", "stack", "ctxlocal.local", "ctxlocal.stack"}, imported
