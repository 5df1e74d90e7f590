"""Asyncio tasks are contexts of their own: isolation, inheritance, cleanup, introspection.

The context is the asyncio task whose step the current greenlet runs (ctxlocal/ident.py);
outside of one, the greenlet.  Each test names the guarantee it pins.  The first ones failed
before tasks were contexts (every task of a loop shared the greenlet's values).
"""

from __future__ import annotations

import asyncio
import contextvars
import gc
import threading
import tracemalloc
from collections.abc import Iterator
from typing import Any

import gevent
import gevent.event
import greenlet
import pytest

import ctxlocal
from ctxlocal import Local, LocalProxy, LocalStack, get_ident, release_local
from ctxlocal.tasks import task_context

N_TASKS = 100_000
BATCH = 1_000
MAX_RETAINED_BYTES_PER_TASK = 100


@pytest.fixture
def loc() -> Iterator[Local]:
    local = Local(name="asyncio")
    yield local
    release_local(local)


@pytest.fixture
def stack() -> Iterator[LocalStack]:
    local_stack = LocalStack(name="asyncio-stack")
    yield local_stack
    release_local(local_stack)


def storage(item: Local | LocalStack) -> dict[Any, Any]:
    return type(item.__ctxlocal_local__).__storage__


# -- isolation ----------------------------------------------------------------------------

def test_tasks_of_one_loop_never_share_values(loc: Local, stack: LocalStack) -> None:
    """Concurrent tasks set, yield, read back: each sees only its own (Local, stack, both
    kinds of proxy).  Failed before: all tasks of a loop shared the greenlet's entry."""
    value = LocalProxy(loc, "value")
    top = stack()

    async def worker(n: int) -> tuple[Any, ...]:
        loc.value = n
        stack.push(f"item {n}")
        await asyncio.sleep(0.001 * (n % 3))
        await asyncio.sleep(0)
        return loc.value, stack.top, len(stack), value + 0, str(top)

    async def main() -> list[tuple[Any, ...]]:
        return await asyncio.gather(*(worker(n) for n in range(20)))

    results = asyncio.run(main())
    assert results == [(n, f"item {n}", 1, n, f"item {n}") for n in range(20)]
    assert not hasattr(loc, "value")  # the greenlet outside the loop saw nothing either
    assert stack.top is None


def test_a_task_starts_with_a_copy_of_its_creators_values(loc: Local,
                                                         stack: LocalStack) -> None:
    """Greenlet -> main task -> subtask: each starts with a copy of what its creator held
    (as contextvars copies at task creation); writes never flow back."""
    loc.user = "greenlet"
    stack.push("request")

    async def sub() -> tuple[Any, ...]:
        seen = (loc.user, loc.level, stack.top, len(stack))
        loc.user = "sub"
        stack.push("sub item")
        return seen

    async def main() -> tuple[Any, ...]:
        inherited = (loc.user, stack.top)
        loc.user = "main task"
        loc.level = 1
        seen_by_sub = await asyncio.create_task(sub())
        return inherited, seen_by_sub, loc.user, stack.top, len(stack)

    inherited, seen_by_sub, after_sub, top_after, depth_after = asyncio.run(main())
    assert inherited == ("greenlet", "request")
    assert seen_by_sub == ("main task", 1, "request", 1)
    assert (after_sub, top_after, depth_after) == ("main task", "request", 1)
    assert loc.user == "greenlet"
    assert not hasattr(loc, "level")
    assert stack.top == "request" and len(stack) == 1


def test_copies_go_through_copy_context_hooks(loc: Local) -> None:
    """A value with ``__copy_context__`` is copied through it, as for ``spawn``."""

    class Bag:
        def __init__(self, items: list[str]) -> None:
            self.items = items

        def __copy_context__(self) -> Bag:
            return Bag(list(self.items))

    loc.bag = Bag(["outer"])

    async def main() -> list[str]:
        loc.bag.items.append("task")
        return loc.bag.items

    assert asyncio.run(main()) == ["outer", "task"]
    assert loc.bag.items == ["outer"]


def test_a_task_inherits_from_its_own_greenlet_only(loc: Local) -> None:
    """The creating task, found through contextvars, counts only if it runs in the new
    task's greenlet.  A task's context handed to another thread (as
    ``call_soon_threadsafe`` / ``run_coroutine_threadsafe`` hand a copy) seeds nothing
    there; the same context used for a task of the creator's own loop does (the control)."""
    borrowed: list[contextvars.Context] = []

    async def creator() -> tuple[Any, Any]:
        loc.secret = "of the creating task"
        borrowed.append(contextvars.copy_context())  # carries this task as the origin

        async def read() -> Any:
            return getattr(loc, "secret", None)

        same_loop = await asyncio.get_running_loop().create_task(read(), context=borrowed[0])
        other_thread: list[Any] = []
        thread = threading.Thread(
            target=lambda: other_thread.append(borrowed[0].run(asyncio.run, read())))
        thread.start()
        thread.join(30)
        return same_loop, other_thread[0]

    assert asyncio.run(creator()) == ("of the creating task", None)


def test_a_task_created_outside_any_task_copies_the_greenlets_values(loc: Local) -> None:
    """``asyncio.run`` in a greenlet that holds values (a request greenlet calling async
    code): the tasks see a copy; the greenlet keeps its own."""

    def request_greenlet() -> tuple[Any, Any]:
        loc.user = "request A"

        async def main() -> Any:
            seen = loc.user
            loc.user = "changed in the task"
            return seen

        return asyncio.run(main()), loc.user

    assert greenlet.greenlet(request_greenlet).switch() == ("request A", "request A")


@pytest.mark.parametrize("task_used_ctxlocal_first", [True, False],
                         ids=["task used ctxlocal first", "bystander used it first"])
def test_a_greenlet_running_while_a_task_step_is_suspended_keeps_its_own_context(
        loc: Local, task_used_ctxlocal_first: bool) -> None:
    """A task's step blocks in a gevent call: other greenlets run while asyncio still
    reports that task as current.  They must read and write their own values — whether the
    task had used ctxlocal before (its mark is set) or not (the first use is the
    bystander's, and must not be taken for the task's)."""
    in_step = gevent.event.Event()
    resume = gevent.event.Event()

    def loop_greenlet() -> Any:
        async def task_body() -> Any:
            if task_used_ctxlocal_first:
                loc.owner = "task"
            in_step.set()
            resume.wait()  # a blocking gevent call inside the step: the hub runs others
            seen = getattr(loc, "owner", None)
            loc.owner = "task"
            return seen, loc.owner

        return asyncio.run(task_body())

    def bystander() -> tuple[Any, ...]:
        in_step.wait()
        assert asyncio.current_task(asyncio.get_running_loop()) is not None
        before = getattr(loc, "owner", None)
        loc.owner = "bystander"
        gevent.sleep(0)
        seen = loc.owner
        resume.set()
        gevent.sleep(0.01)
        return before, seen, loc.owner

    looping = gevent.spawn(loop_greenlet)
    other = gevent.spawn(bystander)
    gevent.joinall([looping, other], raise_error=True)
    expected_task_saw = "task" if task_used_ctxlocal_first else None
    assert looping.value == (expected_task_saw, "task")
    assert other.value == (None, "bystander", "bystander")


def test_an_event_loop_per_thread(loc: Local) -> None:
    """Two threads, each with its own loop and tasks: nothing crosses threads or tasks."""
    results: dict[str, list[Any]] = {}
    barrier = threading.Barrier(2, timeout=30)

    def thread_main(name: str) -> None:
        async def worker(n: int) -> Any:
            loc.value = f"{name}-{n}"
            await asyncio.sleep(0.001)
            return loc.value

        async def main() -> list[Any]:
            barrier.wait()
            return await asyncio.gather(*(worker(n) for n in range(5)))

        results[name] = asyncio.run(main())

    threads = [threading.Thread(target=thread_main, args=(name,)) for name in ("a", "b")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert results == {name: [f"{name}-{n}" for n in range(5)] for name in ("a", "b")}
    assert not hasattr(loc, "value")


def test_loop_callbacks_outside_tasks_run_in_the_greenlets_context(loc: Local) -> None:
    """``call_soon`` callbacks belong to no task: they use the loop's greenlet context
    (documented in the README)."""
    loc.value = "greenlet"
    seen: list[Any] = []

    async def main() -> None:
        loop = asyncio.get_running_loop()
        done = loop.create_future()
        loop.call_soon(lambda: (seen.append(loc.value), done.set_result(None)))
        await done

    asyncio.run(main())
    assert seen == ["greenlet"]


def test_get_ident_and_current_context_name_the_task(loc: Local) -> None:
    """Inside a task, ``get_ident()`` is the task's storage key and ``current_context()``
    the task; the task's context is found on this Python (3.11: no Task.get_context)."""
    outer = get_ident()

    async def main() -> tuple[bool, ...]:
        task = asyncio.current_task()
        task.add_done_callback(lambda _: None, context=contextvars.copy_context())
        loc.x = 1
        return (get_ident() != outer, get_ident() in storage(loc),
                ctxlocal.current_context() is task,
                task_context(task) is greenlet.getcurrent().gr_context)

    assert asyncio.run(main()) == (True, True, True, True)
    assert ctxlocal.current_context() is greenlet.getcurrent()


def test_custom_ident_locals_ignore_tasks() -> None:
    """``Local(ident_func=f)`` keys on ``f()`` only, in tasks too (werkzeug 1.x)."""
    shared = Local(ident_func=lambda: "one key")

    async def worker(n: int) -> None:
        shared.value = n

    async def main() -> None:
        await asyncio.gather(*(worker(n) for n in range(3)))

    asyncio.run(main())
    assert shared.__storage__ == {"one key": {"value": 2}}
    release_local(shared)


# -- lifetime -----------------------------------------------------------------------------

def test_entries_go_when_the_task_finishes_though_it_is_kept(loc: Local,
                                                            stack: LocalStack) -> None:
    """``gather`` and the caller keep the finished Task objects; their entries are gone."""
    kept: list[asyncio.Task[None]] = []

    async def worker(n: int) -> None:
        loc.value = n
        stack.push(n)

    async def main() -> int:
        kept.extend(asyncio.create_task(worker(n)) for n in range(10))
        await asyncio.gather(*kept)
        await asyncio.sleep(0)  # done callbacks run on the loop's next turn
        return len(storage(loc)) + len(storage(stack))

    assert asyncio.run(main()) == 0
    assert all(task.done() for task in kept)
    assert storage(loc) == {} and storage(stack) == {}


def test_entries_go_when_an_unfinished_task_is_collected(loc: Local) -> None:
    """A task that never finishes (its loop closed under it) still loses its entries when
    it is collected: the weak reference, not only the done callback."""
    loop = asyncio.new_event_loop()

    async def stuck() -> None:
        loc.value = "stuck"
        await asyncio.Event().wait()

    task = loop.create_task(stuck())
    loop.run_until_complete(asyncio.sleep(0.01))
    assert len(storage(loc)) == 1
    loop.close()
    del task
    loop = None  # type: ignore[assignment]
    gc.collect()
    assert storage(loc) == {}


def test_task_id_reuse_serves_no_stale_data(loc: Local, stack: LocalStack) -> None:
    """Tasks run one after the other reuse addresses; none sees its predecessor's values
    (a naive dict keyed on ``id(task)`` is the negative control)."""
    naive: dict[int, int] = {}
    stale: list[str] = []
    naive_stale: list[str] = []
    ids: list[int] = []

    async def body(n: int) -> None:
        if hasattr(loc, "value"):
            stale.append(f"round {n}: Local had {loc.value!r}")
        if stack.top is not None:
            stale.append(f"round {n}: stack had {stack.top!r}")
        key = id(asyncio.current_task())
        if key in naive:
            naive_stale.append(f"round {n}: naive dict had {naive[key]!r}")
        loc.value = n
        stack.push(n)
        naive[key] = n

    async def main() -> None:
        for n in range(500):
            task = asyncio.create_task(body(n))
            await task
            ids.append(id(task))
            del task
            await asyncio.sleep(0)  # the done callback, then the task is freed

    asyncio.run(main())
    assert len(set(ids)) < len(ids), "ids never repeated: the test would prove nothing"
    assert naive_stale, "negative control: a naive id()-keyed dict must serve stale data"
    assert stale == []
    assert storage(loc) == {} and storage(stack) == {}


@pytest.mark.slow
def test_no_growth_from_100000_tasks(loc: Local, stack: LocalStack) -> None:
    """100,000 tasks set a value and push, then finish without release_local: no entry
    remains, no context is counted live, and memory retained is that of tasks which never
    touched a Local (tracemalloc; slack for dict sizes, not per task)."""
    before = ctxlocal.live_contexts()

    async def plain() -> None:
        pass

    async def touching() -> None:
        loc.value = object()
        stack.push(object())

    async def run(body: Any, count: int) -> None:
        for _ in range(count // BATCH):
            await asyncio.gather(*(body() for _ in range(BATCH)))
        await asyncio.sleep(0)

    async def retained(body: Any) -> int:
        gc.collect()
        start = tracemalloc.get_traced_memory()[0]
        await run(body, N_TASKS)
        gc.collect()
        return tracemalloc.get_traced_memory()[0] - start

    async def main() -> tuple[int, int]:
        await run(touching, 2 * BATCH)  # warm up
        await run(plain, 2 * BATCH)
        tracemalloc.start()
        try:
            return await retained(plain), await retained(touching)
        finally:
            tracemalloc.stop()

    baseline, touched = asyncio.run(main())
    assert storage(loc) == {} and storage(stack) == {}
    assert ctxlocal.stats()["asyncio"] == 0
    assert ctxlocal.stats()["asyncio-stack"] == 0
    assert ctxlocal.live_contexts() == before
    per_task = (touched - baseline) / N_TASKS
    assert per_task < MAX_RETAINED_BYTES_PER_TASK, (
        f"{touched - baseline} bytes retained over the baseline run ({per_task:.1f} per task)")


# -- introspection, release, propagation ---------------------------------------------------

def test_introspection_counts_tasks(loc: Local) -> None:
    """``live_entries``, ``live_contexts`` and ``stats`` count running tasks' entries."""
    before = ctxlocal.live_contexts()

    async def worker(n: int, ready: asyncio.Event, go: asyncio.Event) -> None:
        loc.value = n
        ready.set()
        await go.wait()

    async def main() -> tuple[int, int, int]:
        go = asyncio.Event()
        readies = [asyncio.Event() for _ in range(5)]
        tasks = [asyncio.create_task(worker(n, readies[n], go)) for n in range(5)]
        for ready in readies:
            await ready.wait()
        counts = (ctxlocal.live_entries(loc), ctxlocal.live_contexts() - before,
                  ctxlocal.stats()["asyncio"])
        go.set()
        await asyncio.gather(*tasks)
        return counts

    assert asyncio.run(main()) == (5, 5, 5)
    assert ctxlocal.live_entries(loc) == 0
    assert ctxlocal.live_contexts() == before


def test_release_context_in_a_task_releases_that_task_only(loc: Local,
                                                          stack: LocalStack) -> None:
    loc.value = "greenlet"

    async def sibling(started: asyncio.Event, go: asyncio.Event) -> Any:
        loc.value = "sibling"
        started.set()
        await go.wait()
        return loc.value

    async def main() -> tuple[Any, ...]:
        started, go = asyncio.Event(), asyncio.Event()
        other = asyncio.create_task(sibling(started, go))
        await started.wait()
        loc.value = "main"
        stack.push("main")
        ctxlocal.release_context()
        released = (getattr(loc, "value", None), stack.top)
        go.set()
        return released, await other

    released, sibling_value = asyncio.run(main())
    assert released == (None, None)
    assert sibling_value == "sibling"
    assert loc.value == "greenlet"


def test_spawn_and_copy_context_inside_a_task(loc: Local) -> None:
    """``spawn`` hands a child greenlet a copy of the *task's* values; a snapshot taken in a
    task runs anywhere."""

    async def main() -> tuple[Any, Any]:
        loc.value = "task"
        child = ctxlocal.spawn(lambda: loc.value)
        snapshot = ctxlocal.copy_context(loc)
        loc.value = "changed later"
        return child, snapshot

    child, snapshot = asyncio.run(main())
    assert child.get(timeout=10) == "task"  # copied when spawned, as everywhere
    assert snapshot.run(lambda: loc.value) == "task"
    assert not hasattr(loc, "value")
