"""Code written against ``werkzeug.local`` of the 1.x era runs unchanged on ctxlocal.

Everything below uses the API the way werkzeug 1.x-era applications, extensions and
werkzeug's own tests did — ``local.__storage__``, ``__ident_func__`` assignment (also via
``object.__setattr__``, as werkzeug's LocalManager did it), ``LocalManager([...],
ident_func=...)``, ``LocalProxy(local, "name")``, ``stack()``, ``stack._local``,
``release_local(stack)`` — with ``ctxlocal`` imported under werkzeug's name.  The only
change such code needs is the import line.  werkzeug's own suites, vendored unchanged, are
in ``tests/werkzeug_suites/``.
"""

from __future__ import annotations

import copy
import threading
from typing import Any

import pytest

import ctxlocal as local  # was: from werkzeug import local
from ctxlocal import (  # was: from werkzeug.local import ...
    Local,
    LocalManager,
    LocalProxy,
    LocalStack,
    get_ident,
    release_local,
)


def test_basic_local() -> None:
    """werkzeug's classic: three threads, each its own ``foo``."""
    l = local.Local()  # noqa: E741 - the name werkzeug's tests used
    l.foo = 0
    values = []
    barrier = threading.Barrier(3, timeout=60)

    def value_setter(idx: int) -> None:
        l.foo = idx
        barrier.wait()
        values.append(l.foo)

    threads = [threading.Thread(target=value_setter, args=(x,)) for x in [1, 2, 3]]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(values) == [1, 2, 3]

    def delfoo() -> None:
        del l.foo

    delfoo()
    try:
        l.foo
    except AttributeError:
        pass
    else:
        raise AssertionError("foo should be gone")
    try:
        delfoo()
    except AttributeError:
        pass
    else:
        raise AssertionError("deleting twice should fail")
    local.release_local(l)


def test_local_release() -> None:
    l = Local()  # noqa: E741
    l.foo = 42
    release_local(l)
    assert not hasattr(l, "foo")

    ls = LocalStack()
    ls.push(42)
    release_local(ls)
    assert ls.top is None


def test_storage_and_ident() -> None:
    """Reaching into ``__storage__`` with ``get_ident()``, as extensions did."""
    l = Local()  # noqa: E741
    l.user = "alice"
    assert l.__storage__[get_ident()]["user"] == "alice"
    assert l.__ident_func__() == get_ident()
    assert dict(l.__storage__) == {get_ident(): {"user": "alice"}}
    for ident, storage in l:  # Local.__iter__ yielded (ident, storage) pairs
        assert ident == get_ident()
        assert storage == {"user": "alice"}
    release_local(l)
    assert get_ident() not in l.__storage__


def test_local_proxy_over_a_callable() -> None:
    foo: list[Any] = []
    ls = LocalProxy(lambda: foo)
    ls.append(42)
    ls.append(23)
    ls[1:] = [1, 2, 3]
    assert foo == [42, 1, 2, 3]
    assert repr(foo) == repr(ls)
    assert foo[0] == 42
    foo += [1]
    assert list(foo) == [42, 1, 2, 3, 1]


def test_local_proxy_operations_math() -> None:
    foo = 2
    ls = LocalProxy(lambda: foo)
    assert ls + 1 == 3
    assert 1 + ls == 3
    assert ls - 1 == 1
    assert 1 - ls == -1
    assert ls * 1 == 2
    assert 1 * ls == 2
    assert ls / 1 == 2
    assert 1.0 / ls == 0.5
    assert ls // 1.0 == 2.0
    assert 1.0 // ls == 0.0
    assert ls % 2 == 0
    assert 2 % ls == 0


def test_local_proxy_operations_strings() -> None:
    foo = "foo"
    ls = LocalProxy(lambda: foo)
    assert ls + "bar" == "foobar"
    assert "bar" + ls == "barfoo"
    assert ls * 2 == "foofoo"

    foo = "foo %s"
    assert ls % ("bar",) == "foo bar"


def test_local_stack() -> None:
    ident = local.get_ident()

    ls = local.LocalStack()
    assert ident not in ls._local.__storage__
    assert ls.top is None
    ls.push(42)
    assert ident in ls._local.__storage__
    assert ls.top == 42
    ls.push(23)
    assert ls.top == 23
    ls.pop()
    assert ls.top == 42
    ls.pop()
    assert ls.top is None
    assert ls.pop() is None
    assert ls.pop() is None

    proxy = ls()
    ls.push([1, 2])
    assert proxy == [1, 2]
    ls.push((1, 2))
    assert proxy == (1, 2)
    ls.pop()
    ls.pop()
    assert repr(proxy) == "<LocalProxy unbound>"

    assert ident not in ls._local.__storage__


def test_local_proxies_with_callables() -> None:
    foo: Any = 42
    ls = LocalProxy(lambda: foo)
    assert ls == 42
    foo = [23]
    ls.append(42)
    assert ls == [23, 42]
    assert foo == [23, 42]


def test_custom_idents() -> None:
    ident = 0
    l = Local()  # noqa: E741
    stack = LocalStack()
    LocalManager([l, stack], ident_func=lambda: ident)

    l.foo = 42
    stack.push({"foo": 42})
    ident = 1
    l.foo = 23
    stack.push({"foo": 23})
    ident = 0
    assert l.foo == 42
    assert stack.top["foo"] == 42
    stack.pop()
    assert stack.top is None
    ident = 1
    assert l.foo == 23
    assert stack.top["foo"] == 23
    stack.pop()
    assert stack.top is None
    release_local(l)
    ident = 0
    release_local(l)
    assert l.__storage__ == {}


def test_ident_func_assignment() -> None:
    """Assigning ``__ident_func__`` directly, and the way werkzeug 1.x's LocalManager did
    it: ``object.__setattr__``, which bypasses ``Local.__setattr__``."""
    key = ["a"]
    l = Local()  # noqa: E741
    l.__ident_func__ = lambda: key[0]
    l.x = 1
    assert l.__storage__ == {"a": {"x": 1}}
    object.__setattr__(l, "__ident_func__", lambda: key[0] * 2)
    l.x = 2
    assert l.__storage__ == {"a": {"x": 1}, "aa": {"x": 2}}
    stack = LocalStack()
    object.__setattr__(stack, "__ident_func__", lambda: "stack-key")
    stack.push(1)
    assert list(stack._local.__storage__) == ["stack-key"]
    stack.pop()
    l.__storage__.clear()


def test_deepcopy_on_proxy() -> None:
    class Foo:
        attr = 42

        def __copy__(self) -> Foo:
            return self

        def __deepcopy__(self, memo: dict[int, Any]) -> Foo:
            return self

    f = Foo()
    p = LocalProxy(lambda: f)
    assert p.attr == 42
    assert copy.deepcopy(p) is f
    assert copy.copy(p) is f

    a = []
    p = LocalProxy(lambda: a)
    assert copy.copy(p) == a
    assert copy.copy(p) is not a


def test_local_proxy_wrapped_attribute() -> None:
    class SomeClassWithWrapped:
        __wrapped__ = "wrapped"

    def lookup_func() -> int:
        return 42

    proxy = LocalProxy(lookup_func)
    assert proxy.__wrapped__ is lookup_func

    ns = Local()
    ns.foo = SomeClassWithWrapped()
    ns.bar = 42
    assert ns("foo").__wrapped__ == "wrapped"
    with pytest.raises(AttributeError):  # 42 has none (ctxlocal used to return the Local)
        ns("bar").__wrapped__
    release_local(ns)


def test_proxy_to_a_local_attribute() -> None:
    """``LocalProxy(local, "name")`` — how werkzeug-era apps built ``request``/``g``."""
    _locals = Local()
    request = LocalProxy(_locals, "request")
    _locals.request = {"path": "/"}
    assert request["path"] == "/"
    assert request._get_current_object() is _locals.request
    release_local(_locals)
    try:
        request["path"]
    except RuntimeError:
        pass
    else:
        raise AssertionError("an unbound proxy must raise RuntimeError")


def test_local_manager_middleware() -> None:
    """``LocalManager([local]).make_middleware(app)`` and the decorator form."""
    l = Local()  # noqa: E741
    manager = LocalManager([l])
    assert manager.get_ident() == get_ident()

    def application(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        l.request = environ
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"Hello World!"]

    app = manager.make_middleware(application)
    response = app({}, lambda status, headers: None)
    assert list(response) == [b"Hello World!"]
    assert hasattr(l, "request")
    response.close()
    assert not hasattr(l, "request")

    @manager.middleware
    def decorated(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        l.request = environ
        return [b"decorated"]

    response = decorated({}, lambda status, headers: None)
    assert list(response) == [b"decorated"]
    response.close()
    assert not hasattr(l, "request")
    assert repr(manager) == "<LocalManager storages: 1>"


def test_local_subclass_with_init() -> None:
    """werkzeug-era subclasses called ``Local.__init__`` from their own ``__init__``."""

    class RequestLocal(Local):
        def __init__(self) -> None:
            super().__init__()

    rl = RequestLocal()
    rl.value = 1
    assert rl.value == 1
    release_local(rl)
