"""Handing a copy of the context to child greenlets: ``ctxlocal.spawn`` and
``copy_context``.  What the child writes never reaches the parent, and the child's copy
is gone when it ends."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import gevent
import pytest

import ctxlocal
from ctxlocal import Local, LocalStack, copy_context, get_ident, release_local


@pytest.fixture
def loc() -> Iterator[Local]:
    """A fresh Local, released after the test."""
    local = Local()
    yield local
    release_local(local)


@pytest.fixture
def stack() -> Iterator[LocalStack]:
    """A fresh LocalStack, released after the test."""
    local_stack = LocalStack()
    yield local_stack
    release_local(local_stack)


def entry_keys(*locals_: Local | LocalStack) -> set[Any]:
    """Every storage key of the given locals: which contexts hold entries."""
    keys: set[Any] = set()
    for item in locals_:
        inner = item._local if isinstance(item, LocalStack) else item
        keys |= set(type(inner).__storage__)
    return keys


def test_child_sees_a_copy(loc: Local, stack: LocalStack) -> None:
    """The child starts with the parent's values and stack."""
    loc.user = "alice"
    loc.role = "admin"
    stack.push("outer")
    stack.push("inner")

    def child() -> tuple[str, str, Any, int]:
        return loc.user, loc.role, stack.top, len(stack)

    worker = ctxlocal.spawn(child, locals=[loc, stack])
    assert worker.get() == ("alice", "admin", "inner", 2)


def test_child_writes_never_reach_the_parent(loc: Local, stack: LocalStack) -> None:
    """setattr, delattr, push and pop in the child stay in the child."""
    loc.user = "alice"
    loc.role = "admin"
    stack.push("parent item")

    def child() -> tuple[str, Any, Any]:
        loc.user = "mallory"
        del loc.role
        loc.extra = "child only"
        stack.push("child item")
        pushed_top = stack.top
        stack.pop()
        popped_parent = stack.pop()
        return pushed_top, popped_parent, stack.top

    worker = ctxlocal.spawn(child, locals=[loc, stack])
    assert worker.get() == ("child item", "parent item", None)
    assert loc.user == "alice"
    assert loc.role == "admin"
    assert not hasattr(loc, "extra")
    assert stack.top == "parent item"
    assert len(stack) == 1


def test_interleaved_children_do_not_share(loc: Local, stack: LocalStack) -> None:
    """Many children of one parent, yielding to each other: each has its own copy."""
    loc.counter = 0
    stack.push(0)

    def child(n: int) -> tuple[int, list[int]]:
        for step in range(3):
            loc.counter = n * 10 + step
            stack.push(n)
            gevent.sleep(0)
        return loc.counter, [stack.pop() for _ in range(len(stack))]

    workers = [ctxlocal.spawn(child, n, locals=[loc, stack]) for n in range(10)]
    gevent.joinall(workers, raise_error=True)
    for n, worker in enumerate(workers):
        assert worker.value == (n * 10 + 2, [n, n, n, 0])
    assert loc.counter == 0
    assert stack.top == 0


def test_child_copy_is_released_at_the_end(loc: Local, stack: LocalStack) -> None:
    """When the child's function returns, its copies are released (before it dies)."""
    loc.user = "alice"
    stack.push("item")
    inside: list[set[Any]] = []

    def child() -> None:
        inside.append(entry_keys(loc, stack))

    ctxlocal.spawn(child, locals=[loc, stack]).join()
    assert len(inside[0]) == 2  # parent + child while it ran
    assert entry_keys(loc, stack) == {get_ident()}  # parent only, right after join


def test_child_copy_is_released_when_the_child_raises(loc: Local) -> None:
    """A failing child leaves nothing behind either."""
    loc.user = "alice"

    def child() -> None:
        raise ValueError("child failed")

    worker = ctxlocal.spawn(child, locals=[loc])
    with pytest.raises(ValueError, match="child failed"):
        worker.get()
    assert entry_keys(loc) == {get_ident()}


def test_arguments_are_passed(loc: Local) -> None:
    """``spawn(func, *args, locals=..., **kwargs)`` passes args and kwargs to func."""
    loc.base = 100

    def child(a: int, *, b: int) -> int:
        return loc.base + a + b

    assert ctxlocal.spawn(child, 1, b=2, locals=[loc]).get() == 103


def test_values_are_shared_unless_they_copy_themselves(loc: Local) -> None:
    """Copy depth: the namespace is copied, the values are not — a mutable value is the
    same object in the child (named in propagate.py's docstring)."""
    shared = ["parent"]
    loc.items = shared

    def child() -> bool:
        loc.items.append("child")
        return loc.items is shared

    assert ctxlocal.spawn(child, locals=[loc]).get() is True
    assert shared == ["parent", "child"]


class RequestLike:
    """A value that hands children their own copy (as the server's RequestContext does)."""

    def __init__(self, data: dict[str, str]) -> None:
        self.data = data
        self.copies = 0

    def __copy_context__(self) -> RequestLike:
        self.copies += 1
        return RequestLike(dict(self.data))


def test_copy_context_hook(loc: Local, stack: LocalStack) -> None:
    """Values with ``__copy_context__`` are copied through it, in a Local and on a stack."""
    in_local = RequestLike({"who": "parent"})
    on_stack = RequestLike({"who": "parent"})
    loc.request = in_local
    stack.push(on_stack)

    def child() -> tuple[bool, bool]:
        loc.request.data["who"] = "child"
        stack.top.data["who"] = "child"
        return loc.request is in_local, stack.top is on_stack

    assert ctxlocal.spawn(child, locals=[loc, stack]).get() == (False, False)
    assert in_local.data == {"who": "parent"}
    assert on_stack.data == {"who": "parent"}
    assert (in_local.copies, on_stack.copies) == (1, 1)


def test_snapshot_is_taken_at_spawn_time(loc: Local) -> None:
    """The child sees the values as they were when spawn was called."""
    loc.state = "before"
    worker = ctxlocal.spawn(lambda: loc.state, locals=[loc])
    loc.state = "after"
    assert worker.get() == "before"


def test_parent_without_values(loc: Local, stack: LocalStack) -> None:
    """Nothing set in the parent: the child sees nothing, and nothing is left over."""

    def child() -> tuple[bool, Any]:
        return hasattr(loc, "anything"), stack.top

    assert ctxlocal.spawn(child, locals=[loc, stack]).get() == (False, None)
    assert entry_keys(loc, stack) == set()


def test_copy_context_run_in_a_child(loc: Local, stack: LocalStack) -> None:
    """``copy_context(...).run`` is the building block: run it in any greenlet."""
    loc.user = "alice"
    stack.push("top")
    snapshot = copy_context(loc, stack)

    def child() -> tuple[str, Any]:
        stack.push("child")
        return loc.user, stack.top

    workers = [gevent.spawn(snapshot.run, child) for _ in range(3)]
    gevent.joinall(workers, raise_error=True)
    assert [worker.value for worker in workers] == [("alice", "child")] * 3
    assert stack.top == "top"
    assert len(stack) == 1
    gevent.sleep(0)
    assert entry_keys(loc, stack) == {get_ident()}


def test_copy_context_run_in_the_same_greenlet(loc: Local, stack: LocalStack) -> None:
    """Running a snapshot in the context it was taken from isolates the run and restores
    the context afterwards.

    Regression: run() used to write over the current values and release them at the end,
    so the caller lost its own context.
    """
    loc.user = "alice"
    stack.push("parent")
    snapshot = copy_context(loc, stack)

    def body() -> tuple[str, Any]:
        loc.user = "changed in run"
        stack.push("pushed in run")
        return loc.user, stack.top

    assert snapshot.run(body) == ("changed in run", "pushed in run")
    assert loc.user == "alice"
    assert stack.top == "parent"
    assert len(stack) == 1


def test_copy_context_run_sets_aside_values_of_the_running_context(loc: Local) -> None:
    """A snapshot run in a greenlet that has values of its own shows the snapshot, and
    gives the greenlet its values back afterwards."""
    loc.user = "parent"
    snapshot = copy_context(loc)

    def other() -> tuple[str, str]:
        loc.user = "other greenlet"
        during = snapshot.run(lambda: loc.user)
        return during, loc.user

    assert gevent.spawn(other).get() == ("parent", "other greenlet")


def test_copy_context_rejects_other_objects() -> None:
    """Only Locals and LocalStacks can be snapshotted."""
    with pytest.raises(TypeError, match="Local or LocalStack"):
        copy_context(object())  # type: ignore[arg-type]
