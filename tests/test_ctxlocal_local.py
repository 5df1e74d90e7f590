"""``ctxlocal.Local``: its API as werkzeug 1.x defined it, and the introspection around it.

Each test builds its own Locals, so no test depends on what an earlier one left behind.
Lifecycle (dying greenlets, ``id()`` reuse, growth) lives in ``test_ctxlocal_lifecycle.py``;
isolation across greenlets and threads in ``test_ctxlocal_isolation.py``.
"""

from __future__ import annotations

import gc
import weakref
from collections.abc import Callable
from typing import Any

import gevent
import gevent.event
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import ctxlocal
from ctxlocal import Local, LocalManager, LocalProxy, LocalStack, get_ident, ident, release_local
from ctxlocal.local import _RESERVED


def test_set_get_delete() -> None:
    """The basic attribute protocol, with the AttributeErrors plain objects raise."""
    loc = Local()
    loc.foo = 42
    assert loc.foo == 42
    assert hasattr(loc, "foo")
    del loc.foo
    assert not hasattr(loc, "foo")
    with pytest.raises(AttributeError):
        loc.foo
    with pytest.raises(AttributeError):
        del loc.foo
    with pytest.raises(AttributeError, match="nothing_here"):
        loc.nothing_here


def test_delete_when_context_has_no_entry() -> None:
    """Deleting before anything was stored must be an AttributeError, not a KeyError."""
    loc = Local()
    with pytest.raises(AttributeError):
        del loc.never_set


def test_isinstance_and_type_name() -> None:
    """Each Local has a class of its own, but it still *is* a Local and reads like one."""
    loc = Local()
    assert isinstance(loc, Local)
    assert type(loc) is not Local
    assert type(loc).__name__ == "Local"
    assert type(Local()) is not type(loc)


def test_subclass_keeps_its_methods() -> None:
    """A subclass of Local (a common werkzeug-era pattern) keeps its own behaviour."""

    class Session(Local):
        def user_or_anonymous(self) -> str:
            return getattr(self, "user", "anonymous")

    session = Session()
    assert isinstance(session, Session)
    assert session.user_or_anonymous() == "anonymous"
    session.user = "alice"
    assert session.user_or_anonymous() == "alice"
    release_local(session)


def test_release_local() -> None:
    """release_local forgets every value of the current context and the storage entry."""
    loc = Local()
    loc.a = 1
    loc.b = 2
    assert get_ident() in loc.__storage__
    release_local(loc)
    assert not hasattr(loc, "a")
    assert not hasattr(loc, "b")
    assert get_ident() not in loc.__storage__
    release_local(loc)  # releasing twice is harmless


def test_dunder_release_local() -> None:
    """``__release_local__`` is what release_local calls; it can be called directly too."""
    loc = Local()
    loc.a = 1
    loc.__release_local__()
    assert not hasattr(loc, "a")
    assert len(loc.__storage__) == 0


def test_release_only_touches_the_current_context() -> None:
    """Releasing in one greenlet leaves another greenlet's values alone."""
    loc = Local()
    loc.value = "main"

    def child() -> None:
        loc.value = "child"
        release_local(loc)

    gevent.spawn(child).join()
    assert loc.value == "main"
    release_local(loc)


def test_local_manager_cleanup() -> None:
    """LocalManager.cleanup releases every managed Local and LocalStack."""
    loc = Local()
    stack = LocalStack()
    manager = LocalManager([loc, stack])
    loc.x = 1
    stack.push("item")
    manager.cleanup()
    assert not hasattr(loc, "x")
    assert stack.top is None
    assert len(loc.__storage__) == 0
    assert ctxlocal.live_entries(stack) == 0


def test_local_manager_accepts_a_single_local_and_none() -> None:
    """werkzeug accepted one Local instead of a list, and no Locals at all."""
    loc = Local()
    assert LocalManager(loc).locals == [loc]
    stack = LocalStack()
    assert LocalManager(stack).locals == [stack]
    assert LocalManager().locals == []
    assert LocalManager(iter([loc, stack])).locals == [loc, stack]
    LocalManager().cleanup()  # nothing to do, nothing raised
    assert "storages: 2" in repr(LocalManager([loc, stack]))


def test_local_manager_get_ident() -> None:
    """Without a custom ident the manager reports the same identity the Locals use."""
    assert LocalManager().get_ident() == get_ident()
    assert LocalManager(ident_func=lambda: "custom").get_ident() == "custom"


def test_iter_lists_every_context() -> None:
    """``iter(local)`` yields ``(ident, namespace)`` for each context holding values."""
    loc = Local()
    loc.who = "main"
    seen: dict[int, str] = {}

    def child() -> None:
        loc.who = "child"
        seen.update({ident: values["who"] for ident, values in loc})
        gevent.sleep(0)

    worker = gevent.spawn(child)
    worker.join()
    # join() resumes us from inside the finished greenlet's link callbacks; the one that
    # drops its entries runs when the hub gets control back.
    gevent.sleep(0)
    assert seen[get_ident()] == "main"
    assert "child" in seen.values()
    assert len(seen) == 2
    assert dict(loc) == {get_ident(): {"who": "main"}}  # the child's entry is gone
    release_local(loc)
    assert list(loc) == []


def test_iter_is_a_snapshot() -> None:
    """Changing the Local while iterating it must not break the iteration."""
    loc = Local()
    loc.a = 1
    for _ident, _values in loc:
        loc.b = 2
        release_local(loc)
    assert list(loc) == []


def test_call_returns_a_proxy() -> None:
    """``local("name")`` is a LocalProxy to that attribute (werkzeug API)."""
    loc = Local()
    proxy = loc("user", unbound_message="nobody logged in")
    assert type(proxy) is LocalProxy
    loc.user = "alice"
    assert proxy == "alice"
    assert proxy.upper() == "ALICE"
    release_local(loc)
    with pytest.raises(RuntimeError, match="nobody logged in"):
        proxy.upper()


def test_ident_func_default_is_get_ident() -> None:
    """``__ident_func__`` reads as ctxlocal's get_ident, and the storage key is its value."""
    loc = Local()
    assert loc.__ident_func__ is get_ident
    loc.x = 1
    assert list(loc.__storage__) == [get_ident()]
    assert get_ident() == id(ctxlocal.current_context())
    release_local(loc)


def test_get_ident_equals_storage_key_in_every_greenlet() -> None:
    """``get_ident()`` is the key in whatever greenlet it is called from."""
    loc = Local()
    results: list[bool] = []

    def child() -> None:
        loc.x = 1
        results.append(list(loc.__storage__) == [get_ident()])

    for _ in range(5):
        gevent.spawn(child).join()
    assert results == [True] * 5


def test_custom_ident_func_in_constructor() -> None:
    """``Local(ident_func=f)`` keys storage on ``f()``: werkzeug 1.x's pluggable identity."""
    current = ["a"]
    loc = Local(ident_func=lambda: current[0])
    loc.value = 1
    current[0] = "b"
    assert not hasattr(loc, "value")
    loc.value = 2
    current[0] = "a"
    assert loc.value == 1
    assert set(loc.__storage__) == {"a", "b"}
    assert loc.__ident_func__() == "a"
    release_local(loc)
    assert set(loc.__storage__) == {"b"}


def test_custom_ident_entries_are_not_cleaned_up_automatically() -> None:
    """With a custom ident there is no greenlet to watch: entries live until released."""
    loc = Local(ident_func=lambda: "shared-key")

    def child() -> None:
        loc.value = "from child"

    gevent.spawn(child).join()
    gevent.sleep(0)
    gc.collect()
    assert loc.__storage__ == {"shared-key": {"value": "from child"}}
    assert loc.value == "from child"  # same key from the main greenlet: same entry
    release_local(loc)
    assert loc.__storage__ == {}


def test_set_ident_func_switches_the_key() -> None:
    """Assigning ``__ident_func__`` re-keys future access; get_ident switches back."""
    loc = Local()
    loc.x = "greenlet-keyed"
    loc.__ident_func__ = lambda: "custom"
    assert not hasattr(loc, "x")
    loc.x = "custom-keyed"
    assert loc.__storage__["custom"] == {"x": "custom-keyed"}
    loc.__ident_func__ = get_ident
    assert loc.__ident_func__ is get_ident
    assert loc.x == "greenlet-keyed"
    release_local(loc)
    loc.__ident_func__ = lambda: "custom"
    release_local(loc)
    assert loc.__storage__ == {}


def test_ident_func_must_be_callable() -> None:
    """A non-callable identity is refused when set, not at the first attribute access."""
    loc = Local()
    with pytest.raises(TypeError):
        loc.__ident_func__ = 42
    with pytest.raises(TypeError):
        Local(ident_func=42)  # type: ignore[arg-type]


@pytest.mark.parametrize("name", sorted(_RESERVED - {"__ident_func__"}))
def test_reserved_names_cannot_be_set(name: str) -> None:
    """The Local's own machinery cannot be overwritten by a value of the same name."""
    loc = Local()
    with pytest.raises(AttributeError, match="machinery"):
        setattr(loc, name, "clobbered")
    assert get_ident() not in loc.__storage__


def test_reserved_names_include_the_werkzeug_ones() -> None:
    """The names werkzeug code reaches for stay the Local's own."""
    assert {"__storage__", "__ident_func__", "__release_local__", "__iter__", "__call__",
            "__dict__", "__class__"} <= _RESERVED
    loc = Local()
    assert isinstance(loc.__storage__, dict)
    assert callable(loc.__release_local__)


def test_doc_is_an_ordinary_value() -> None:
    """``__doc__`` is not machinery: a Local may hold one per context."""
    loc = Local()
    loc.__doc__ = "per-context doc"
    assert loc.__doc__ == "per-context doc"
    release_local(loc)


def test_repr_names_the_local_and_counts_entries() -> None:
    """The repr is introspection: name and how many contexts hold entries."""
    loc = Local(name="session")
    assert repr(loc) == "<Local 'session' entries=0>"
    loc.x = 1
    assert repr(loc) == "<Local 'session' entries=1>"
    release_local(loc)
    assert repr(Local()) == "<Local entries=0>"


def test_live_entries_and_stats() -> None:
    """live_entries counts contexts per Local; stats() sums them per name."""
    named = Local(name="test_ctxlocal_local.named")
    stack = LocalStack(name="test_ctxlocal_local.stack")
    assert ctxlocal.live_entries(named) == 0
    assert ctxlocal.stats()["test_ctxlocal_local.named"] == 0
    named.x = 1
    stack.push(1)
    release_waiters: list[gevent.event.Event] = []

    def hold() -> None:
        named.x = 2
        event = gevent.event.Event()
        release_waiters.append(event)
        event.wait()

    holders = [gevent.spawn(hold) for _ in range(3)]
    gevent.sleep(0)
    assert ctxlocal.live_entries(named) == 4
    assert ctxlocal.live_entries(stack) == 1
    counts = ctxlocal.stats()
    assert counts["test_ctxlocal_local.named"] == 4
    assert counts["test_ctxlocal_local.stack"] == 1
    for event in release_waiters:
        event.set()
    gevent.joinall(holders)
    gevent.sleep(0)
    release_local(named)
    release_local(stack)
    counts = ctxlocal.stats()
    assert counts["test_ctxlocal_local.named"] == 0
    assert counts["test_ctxlocal_local.stack"] == 0


def test_live_contexts_counts_contexts_with_entries() -> None:
    """A context counts while it holds something, in however many Locals."""
    before = ctxlocal.live_contexts()
    first, second = Local(), Local()
    first.x = 1
    second.x = 1
    assert ctxlocal.live_contexts() == before + 1
    release_local(first)
    assert ctxlocal.live_contexts() == before + 1
    release_local(second)
    assert ctxlocal.live_contexts() == before


def test_all_locals_is_weak() -> None:
    """all_locals() lists live Locals without keeping them alive."""
    loc = Local()
    assert any(item is loc for item in ctxlocal.all_locals())
    ref = weakref.ref(loc)
    del loc
    gc.collect()
    assert ref() is None


def test_dropped_local_releases_its_values() -> None:
    """A Local that goes away takes every context's values with it.

    Regression: the watch of a long-lived context (here the main greenlet) used to hold the
    storage dict strongly, so values of Locals created and dropped in a loop stayed alive
    for as long as that context did.
    """

    class Value:
        pass

    refs: list[weakref.ref[Value]] = []
    for _ in range(200):
        loc = Local()
        value = Value()
        loc.x = value
        refs.append(weakref.ref(value))
        del loc, value
    gc.collect()
    assert sum(ref() is not None for ref in refs) == 0


def test_dropped_locals_leave_nothing_in_a_long_lived_context() -> None:
    """The watch of a long-lived context does not list Locals that are gone."""

    def body() -> int:
        for _ in range(500):
            loc = Local()
            loc.x = 1
            del loc
        gc.collect()
        return len(ident._watches[get_ident()].owners)

    keeper = Local()  # keeps this greenlet watched after the loop
    worker = gevent.spawn(lambda: (setattr(keeper, "y", 1), body())[1])
    assert worker.get() == 1


# -- a model check: any sequence of operations behaves like a dict per context ------------

_NAMES = st.sampled_from(["a", "b", "c"])
_OPERATIONS = st.lists(
    st.one_of(
        st.tuples(st.just("set"), _NAMES, st.integers()),
        st.tuples(st.just("del"), _NAMES, st.none()),
        st.tuples(st.just("release"), st.none(), st.none()),
    ),
    max_size=30,
)


@settings(max_examples=200, deadline=None)
@given(operations=_OPERATIONS)
def test_behaves_like_a_dict(operations: list[tuple[str, Any, Any]]) -> None:
    """After any sequence of set/del/release, reads agree with a plain dict model."""
    loc = Local()
    model: dict[str, int] = {}
    actions: dict[str, Callable[[Any, Any], None]] = {
        "set": lambda name, value: (setattr(loc, name, value), model.__setitem__(name, value)),
        "release": lambda _n, _v: (release_local(loc), model.clear()),
    }
    for op, name, value in operations:
        if op == "del":
            if name in model:
                delattr(loc, name)
                del model[name]
            else:
                with pytest.raises(AttributeError):
                    delattr(loc, name)
        else:
            actions[op](name, value)
        for probe in ("a", "b", "c"):
            assert getattr(loc, probe, None) == model.get(probe)
    release_local(loc)
