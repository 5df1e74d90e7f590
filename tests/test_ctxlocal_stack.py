"""``ctxlocal.LocalStack``: werkzeug 1.x's stack API, per greenlet, leaving nothing behind."""

from __future__ import annotations

import gevent
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import ctxlocal
from ctxlocal import LocalProxy, LocalStack, get_ident, release_local


def test_push_returns_the_stack_and_top_follows() -> None:
    """push returns the current context's stack list (werkzeug returned it too)."""
    stack = LocalStack()
    assert stack.top is None
    first = stack.push(1)
    assert first == [1]
    second = stack.push(2)
    assert second is first
    assert second == [1, 2]
    assert stack.top == 2
    assert len(stack) == 2
    assert stack.pop() == 2
    assert stack.top == 1
    assert stack.pop() == 1
    assert stack.top is None


def test_pop_of_the_last_item_releases_the_entry() -> None:
    """Popping the last item leaves no storage entry, so nothing can leak from it."""
    stack = LocalStack()
    stack.push("a")
    stack.push("b")
    assert get_ident() in stack._local.__storage__
    stack.pop()
    assert get_ident() in stack._local.__storage__
    stack.pop()
    assert stack._local.__storage__ == {}
    assert ctxlocal.live_entries(stack) == 0


def test_pop_on_empty_returns_none() -> None:
    """An empty stack pops None (no exception), repeatedly."""
    stack = LocalStack()
    assert stack.pop() is None
    assert stack.pop() is None
    stack.push(1)
    stack.pop()
    assert stack.pop() is None


def test_none_is_a_legitimate_item() -> None:
    """Pushing None works; top cannot tell it from empty, len can."""
    stack = LocalStack()
    stack.push(None)
    assert stack.top is None
    assert len(stack) == 1
    assert stack.pop() is None
    assert len(stack) == 0


def test_empty_stack_is_truthy() -> None:
    """A stack object is always truthy (as in werkzeug), also with depth zero."""
    stack = LocalStack()
    assert len(stack) == 0
    assert bool(stack) is True


def test_release_local_on_a_stack() -> None:
    """release_local accepts a LocalStack and empties it for this context."""
    stack = LocalStack()
    stack.push(1)
    stack.push(2)
    release_local(stack)
    assert stack.top is None
    assert stack._local.__storage__ == {}
    stack.push(3)
    stack.__release_local__()
    assert stack.top is None


def test_call_is_a_proxy_to_the_top() -> None:
    """``stack()`` proxies whatever is on top *now*; ``stack("attr")`` an attribute of it."""

    class Item:
        def __init__(self, name: str) -> None:
            self.name = name

    stack = LocalStack()
    top = stack()
    name = stack("name")
    assert type(top) is LocalProxy
    assert repr(top) == "<LocalProxy unbound>"
    stack.push(Item("first"))
    assert top.name == "first"
    assert name == "first"
    stack.push(Item("second"))
    assert top.name == "second"
    assert name.upper() == "SECOND"
    stack.pop()
    assert name == "first"
    stack.pop()
    with pytest.raises(RuntimeError):
        name.upper()


def test_proxy_unbound_message() -> None:
    """A stack proxy's unbound error is the message it was given."""
    stack = LocalStack()
    with pytest.raises(RuntimeError, match="working outside of a request"):
        stack(unbound_message="working outside of a request").anything


def test_isolation_between_greenlets() -> None:
    """Each greenlet has its own stack; interleaving never mixes them."""
    stack = LocalStack()
    stack.push("main")
    errors: list[str] = []

    def worker(n: int) -> None:
        if stack.top is not None:
            errors.append(f"{n}: saw {stack.top!r} before pushing")
        for depth in range(5):
            stack.push((n, depth))
            gevent.sleep(0)
            if stack.top != (n, depth) or len(stack) != depth + 1:
                errors.append(f"{n}: top {stack.top!r} at depth {depth}")
        for depth in reversed(range(5)):
            if stack.pop() != (n, depth):
                errors.append(f"{n}: wrong pop at depth {depth}")
            gevent.sleep(0)

    gevent.joinall([gevent.spawn(worker, n) for n in range(20)], raise_error=True)
    assert errors == []
    assert stack.top == "main"
    assert stack.pop() == "main"
    assert stack._local.__storage__ == {}


def test_ident_func_property() -> None:
    """``__ident_func__`` reads and writes through to the stack's Local (werkzeug API)."""
    stack = LocalStack()
    assert stack.__ident_func__ is get_ident
    key = ["one"]
    stack.__ident_func__ = lambda: key[0]
    assert stack._local.__ident_func__() == "one"
    stack.push("in one")
    key[0] = "two"
    assert stack.top is None
    stack.push("in two")
    key[0] = "one"
    assert stack.top == "in one"
    assert set(stack._local.__storage__) == {"one", "two"}
    stack.pop()
    key[0] = "two"
    stack.pop()
    assert stack._local.__storage__ == {}
    stack.__ident_func__ = get_ident
    assert stack.__ident_func__ is get_ident


def test_custom_ident_in_constructor() -> None:
    """``LocalStack(ident_func=f)`` like Local's."""
    stack = LocalStack(ident_func=lambda: "fixed")
    stack.push(1)
    assert list(stack._local.__storage__) == ["fixed"]
    stack.pop()


def test_repr() -> None:
    """The repr names the stack and shows this context's depth."""
    stack = LocalStack(name="requests")
    assert repr(stack) == "<LocalStack 'requests' depth=0>"
    stack.push(1)
    assert repr(stack) == "<LocalStack 'requests' depth=1>"
    stack.pop()
    assert repr(LocalStack()) == "<LocalStack depth=0>"


@settings(max_examples=200, deadline=None)
@given(operations=st.lists(st.one_of(st.integers(), st.none()), max_size=40))
def test_behaves_like_a_list(operations: list[int | None]) -> None:
    """Any push/pop sequence (int = push, None = pop) agrees with a list model, and an
    empty model always means no storage entry."""
    stack = LocalStack()
    model: list[int] = []
    for op in operations:
        if op is None:
            assert stack.pop() == (model.pop() if model else None)
        else:
            assert stack.push(op) == [*model, op]
            model.append(op)
        assert stack.top == (model[-1] if model else None)
        assert len(stack) == len(model)
        assert (get_ident() in stack._local.__storage__) == bool(model)
    release_local(stack)


def test_ident_change_on_the_inner_local_is_seen() -> None:
    """push/pop/top read the storage directly; they must follow an ident set on the inner
    Local itself (``stack._local.__ident_func__ = f``, bypassing the stack's setter)."""
    stack = LocalStack()
    stack.push("greenlet-keyed")
    stack._local.__ident_func__ = lambda: "custom"
    assert stack.top is None
    assert len(stack) == 0
    stack.push("custom-keyed")
    assert stack._local.__storage__["custom"] == {"stack": ["custom-keyed"]}
    assert stack.pop() == "custom-keyed"
    stack._local.__ident_func__ = get_ident
    assert stack.top == "greenlet-keyed"
    assert stack.pop() == "greenlet-keyed"
    assert stack._local.__storage__ == {}


def test_stack_and_its_local_agree() -> None:
    """``stack._local.stack`` (werkzeug-era code reads it) is the list push returns."""
    stack = LocalStack()
    pushed = stack.push(1)
    assert stack._local.stack is pushed
    stack._local.stack.append(2)
    assert stack.top == 2
    release_local(stack)


def test_other_values_in_the_inner_local() -> None:
    """A namespace that holds something besides the stack: push adds the stack to it,
    pop and top treat a missing stack as empty."""
    stack = LocalStack()
    stack._local.note = "not a stack"
    assert stack.top is None
    assert stack.pop() is None
    assert len(stack) == 0
    stack.push(1)
    assert stack._local.note == "not a stack"
    assert stack.pop() == 1
    assert not hasattr(stack._local, "note")  # the last pop releases the whole entry


def test_pop_of_an_emptied_list_releases() -> None:
    """If code emptied the list behind the stack's back, pop still releases the entry."""
    stack = LocalStack()
    stack.push(1)
    stack._local.stack.clear()
    assert stack.top is None
    assert stack.pop() is None
    assert stack._local.__storage__ == {}


def test_first_push_watches_the_greenlet() -> None:
    """An entry created by push is dropped when its greenlet ends, like a Local's."""
    stack = LocalStack()
    worker = gevent.spawn(stack.push, "from a greenlet that never pops")
    worker.join()
    gevent.sleep(0)
    assert stack._local.__storage__ == {}
