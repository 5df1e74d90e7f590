"""When a context ends, its entries go: no stale values on ``id()`` reuse, no growth, and
no finished greenlet kept alive by the storage.

These are the two failure modes ctxlocal exists to avoid (ctxlocal/ident.py): a storage
keyed on ``id(greenlet)`` without cleanup serves a dead greenlet's data to the next one at
the same address, and a storage keyed on the greenlet object grows with every greenlet that
did not call release_local.  The id-reuse tests run a naive id()-keyed dict through the same
loop as a negative control, to show the loop does produce the situation it tests for.
"""

from __future__ import annotations

import gc
import threading
import time
import tracemalloc
import weakref
from collections.abc import Callable, Iterator
from typing import Any

import gevent
import gevent.event
import gevent.monkey
import greenlet
import pytest

import ctxlocal
from ctxlocal import Local, LocalStack, get_ident, ident, release_local

N_GREENLETS = 100_000
BATCH = 1_000
MAX_RETAINED_BYTES_PER_GREENLET = 100


@pytest.fixture
def loc() -> Iterator[Local]:
    """A fresh, named Local, released after the test."""
    local = Local(name="lifecycle")
    yield local
    release_local(local)


@pytest.fixture
def stack() -> Iterator[LocalStack]:
    """A fresh LocalStack, released after the test."""
    local_stack = LocalStack(name="lifecycle-stack")
    yield local_stack
    release_local(local_stack)


def settle() -> None:
    """Let the hub run pending callbacks (gevent.Greenlet link callbacks, which drop a
    finished greenlet's entries, run on the hub's next turn) and collect cycles."""
    gevent.sleep(0)
    gc.collect()
    gevent.sleep(0)


def wait_until(condition: Callable[[], bool], what: str, limit: float = 30.0) -> None:
    """Poll ``condition`` until true; fail after a generous ``limit`` seconds.

    For effects that happen *eventually* by design (greenlet frees the main greenlet of a
    finished OS thread from a pending call), not a timing assertion: the limit only turns
    "never" into a failure instead of a hang.
    """
    deadline = time.monotonic() + limit
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"never happened: {what}")
        time.sleep(0.01)
        gc.collect()


def storage_of(item: Local | LocalStack) -> dict[Any, Any]:
    inner = item._local if isinstance(item, LocalStack) else item
    return type(inner).__storage__


# -- id() reuse ---------------------------------------------------------------------------

def _reuse_loop(make_and_finish: Callable[[Callable[[], None]], int], rounds: int,
                loc: Local, stack: LocalStack) -> tuple[list[int], list[str], list[str]]:
    """Run ``rounds`` greenlets one after the other, each reading then writing ``loc``,
    ``stack`` and a naive id()-keyed dict.  Returns the ids, what ctxlocal served stale,
    and what the naive dict served stale."""
    naive: dict[int, int] = {}
    stale: list[str] = []
    naive_stale: list[str] = []
    ids: list[int] = []

    for n in range(rounds):
        def body(n: int = n) -> None:
            if hasattr(loc, "value"):
                stale.append(f"round {n}: Local had {loc.value!r}")
            if stack.top is not None:
                stale.append(f"round {n}: stack had {stack.top!r}")
            key = id(greenlet.getcurrent())
            if key in naive:
                naive_stale.append(f"round {n}: naive dict had {naive[key]!r}")
            loc.value = n
            stack.push(n)
            naive[key] = n

        ids.append(make_and_finish(body))
    return ids, stale, naive_stale


def test_raw_greenlet_id_reuse(loc: Local, stack: LocalStack) -> None:
    """Sequential raw greenlets reuse one address; none sees its predecessor's values."""

    def make_and_finish(body: Callable[[], None]) -> int:
        worker = greenlet.greenlet(body)
        worker.switch()
        assert worker.dead
        return id(worker)  # the greenlet is freed on return: its address is up for reuse

    ids, stale, naive_stale = _reuse_loop(make_and_finish, 500, loc, stack)
    assert len(set(ids)) < len(ids), "ids never repeated: the test would prove nothing"
    assert naive_stale, "negative control: a naive id()-keyed dict must serve stale data"
    assert stale == []
    assert storage_of(loc) == {}
    assert storage_of(stack) == {}


def test_gevent_greenlet_id_reuse(loc: Local, stack: LocalStack) -> None:
    """The same with gevent.Greenlet, joined and dropped before the next one is spawned."""

    def make_and_finish(body: Callable[[], None]) -> int:
        worker = gevent.spawn(body)
        worker.join()
        ident = id(worker)
        del worker
        gevent.sleep(0)  # the hub drops its last reference after the link callbacks
        return ident

    ids, stale, naive_stale = _reuse_loop(make_and_finish, 500, loc, stack)
    assert len(set(ids)) < len(ids), "ids never repeated: the test would prove nothing"
    assert naive_stale, "negative control: a naive id()-keyed dict must serve stale data"
    assert stale == []
    settle()
    assert storage_of(loc) == {}
    assert storage_of(stack) == {}


def test_id_reuse_after_a_suspended_greenlet_is_collected(loc: Local) -> None:
    """A greenlet dropped while suspended is killed by its deallocation (GreenletExit),
    also then its entries go before its address can be reused, including values set by
    its own ``finally`` while it was being killed."""
    ids: list[int] = []
    stale: list[Any] = []

    def body(n: int) -> None:
        if hasattr(loc, "value") or hasattr(loc, "cleanup"):
            stale.append((getattr(loc, "value", None), getattr(loc, "cleanup", None)))
        loc.value = n
        try:
            greenlet.getcurrent().parent.switch()  # suspended, never resumed
        finally:
            loc.cleanup = n  # runs inside the dealloc-time kill

    for n in range(300):
        worker = greenlet.greenlet(body)
        worker.switch(n)
        ids.append(id(worker))
        del worker  # dealloc: throws GreenletExit into it, then frees it
    assert len(set(ids)) < len(ids), "ids never repeated: the test would prove nothing"
    assert stale == []
    assert storage_of(loc) == {}


# -- no growth ----------------------------------------------------------------------------

def _spawn_batches(body: Callable[[], None], count: int) -> None:
    for _ in range(count // BATCH):
        gevent.joinall([gevent.spawn(body) for _ in range(BATCH)])
    settle()


def _raw_greenlets(body: Callable[[], None], count: int) -> None:
    for _ in range(count):
        greenlet.greenlet(body).switch()
    settle()


def _retained_bytes(run: Callable[[Callable[[], None], int], None],
                    body: Callable[[], None]) -> int:
    """Traced memory still allocated after ``run(body, N_GREENLETS)`` finished."""
    gc.collect()
    before = tracemalloc.get_traced_memory()[0]
    run(body, N_GREENLETS)
    return tracemalloc.get_traced_memory()[0] - before


@pytest.mark.slow
@pytest.mark.parametrize("run", [_spawn_batches, _raw_greenlets],
                         ids=["gevent.spawn", "raw greenlet"])
def test_no_growth_without_release(run: Callable[[Callable[[], None], int], None],
                                   loc: Local, stack: LocalStack) -> None:
    """100,000 greenlets set a value and push, then die without release_local: no entry
    remains, no context is counted live, and memory retained is that of a run which never
    touched a Local (tracemalloc; slack for dict sizes, not per greenlet)."""
    before = ctxlocal.live_contexts()  # the main greenlet may hold other tests' values

    def plain() -> None:
        pass

    def touching() -> None:
        loc.value = object()
        stack.push(object())

    run(touching, 2 * BATCH)  # warm up: dict sizes, free lists, gevent internals
    run(plain, 2 * BATCH)
    tracemalloc.start()
    try:
        baseline = _retained_bytes(run, plain)
        retained = _retained_bytes(run, touching)
    finally:
        tracemalloc.stop()
    assert storage_of(loc) == {}
    assert storage_of(stack) == {}
    assert ctxlocal.stats()["lifecycle"] == 0
    assert ctxlocal.stats()["lifecycle-stack"] == 0
    assert ctxlocal.live_contexts() == before
    per_greenlet = (retained - baseline) / N_GREENLETS
    assert per_greenlet < MAX_RETAINED_BYTES_PER_GREENLET, (
        f"{retained - baseline} bytes retained over the baseline run "
        f"({per_greenlet:.1f} per greenlet)")


def test_no_growth_from_threads(loc: Local, stack: LocalStack) -> None:
    """OS threads that set values and exit leave nothing once greenlet has freed their
    main greenlets (which it may do from a pending call, shortly after join)."""
    assert not gevent.monkey.is_module_patched("threading")

    def body() -> None:
        loc.value = threading.get_ident()
        stack.push(threading.get_ident())
        inner = greenlet.greenlet(lambda: setattr(loc, "inner", 1))
        inner.switch()

    for _ in range(5):
        threads = [threading.Thread(target=body) for _ in range(20)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    wait_until(lambda: not storage_of(loc) and not storage_of(stack),
               "entries of finished threads dropped")


def test_finished_greenlet_is_not_kept_alive(loc: Local, stack: LocalStack) -> None:
    """Storage holds no reference to a greenlet: once finished and dropped it is freed —
    by reference counting alone, so ctxlocal adds no reference cycle through it either."""
    gc.disable()
    try:
        raw = greenlet.greenlet(lambda: (setattr(loc, "v", 1), stack.push(1)))
        raw.switch()
        raw_ref = weakref.ref(raw)
        del raw
        assert raw_ref() is None

        spawned = gevent.spawn(lambda: (setattr(loc, "v", 1), stack.push(1)))
        spawned.join()
        spawned_ref = weakref.ref(spawned)
        del spawned
        gevent.sleep(0)
        assert spawned_ref() is None
    finally:
        gc.enable()
    assert storage_of(loc) == {}
    assert storage_of(stack) == {}


def test_values_of_a_finished_greenlet_are_freed(loc: Local) -> None:
    """The values themselves go with the entry, not only the entry."""

    class Value:
        pass

    refs: list[weakref.ref[Value]] = []

    def body() -> None:
        value = Value()
        refs.append(weakref.ref(value))
        loc.value = value

    gevent.joinall([gevent.spawn(body) for _ in range(50)])
    settle()
    assert [ref() for ref in refs] == [None] * 50


# -- finished, killed, failed --------------------------------------------------------------

def test_finished_gevent_greenlet_still_referenced(loc: Local, stack: LocalStack) -> None:
    """A gevent.Greenlet that finished but is still referenced (a pool, a result list)
    loses its entries anyway: rawlink fires on finish, not on collection."""
    workers = [gevent.spawn(lambda n=n: (setattr(loc, "v", n), stack.push(n)))
               for n in range(10)]
    gevent.joinall(workers)
    gevent.sleep(0)
    assert all(worker.dead for worker in workers)
    assert storage_of(loc) == {}
    assert storage_of(stack) == {}
    assert len(workers) == 10  # still referenced, on purpose


def test_killed_gevent_greenlet(loc: Local, stack: LocalStack) -> None:
    """``Greenlet.kill()`` (GreenletExit inside it) drops its entries."""
    started = gevent.event.Event()

    def body() -> None:
        loc.v = "set"
        stack.push("pushed")
        started.set()
        gevent.sleep(60)  # killed long before

    worker = gevent.spawn(body)
    started.wait()
    assert len(storage_of(loc)) == 1
    worker.kill()
    assert worker.dead
    assert isinstance(worker.value, greenlet.GreenletExit)
    gevent.sleep(0)
    assert storage_of(loc) == {}
    assert storage_of(stack) == {}


def test_gevent_greenlet_that_raised(loc: Local) -> None:
    """A greenlet that failed loses its entries like one that returned."""

    def body() -> None:
        loc.v = "set"
        raise ValueError("expected by the test")

    worker = gevent.spawn(body)
    worker.join()
    gevent.sleep(0)
    assert isinstance(worker.exception, ValueError)
    assert storage_of(loc) == {}


def test_raw_greenlet_killed_with_greenlet_exit(loc: Local) -> None:
    """A raw greenlet killed by ``throw()``: dead, and once dropped its entries are gone.

    A raw greenlet has no finish notification, so its entries go when it is collected (its
    address cannot be reused before that, so nothing stale can be served meanwhile)."""

    def body() -> None:
        loc.v = "set"
        greenlet.getcurrent().parent.switch()

    worker = greenlet.greenlet(body)
    worker.switch()
    worker.throw(greenlet.GreenletExit)
    assert worker.dead
    del worker
    assert storage_of(loc) == {}


def test_raw_greenlet_collected_while_suspended(loc: Local) -> None:
    """Dropping a suspended raw greenlet kills and frees it: its entries go."""

    def body() -> None:
        loc.v = "set"
        greenlet.getcurrent().parent.switch()

    worker = greenlet.greenlet(body)
    worker.switch()
    assert len(storage_of(loc)) == 1
    del worker
    assert storage_of(loc) == {}


def test_finished_greenlet_in_a_reference_cycle(loc: Local) -> None:
    """A finished greenlet reachable only through a cycle is freed by the cycle collector,
    which runs ctxlocal's weakref callback before freeing it: its entries go then, and not
    before (until then its address cannot be reused).

    (A *suspended* greenlet in a cycle is never collected — greenlet treats it as a root —
    so its entries stay exactly as long as it does.)
    """

    def body() -> None:
        loc.v = "set"

    gc.disable()
    try:
        worker = greenlet.greenlet(body)
        worker.cycle = worker  # type: ignore[attr-defined]
        worker.switch()
        ref = weakref.ref(worker)
        del worker
        assert ref() is not None
        assert len(storage_of(loc)) == 1
    finally:
        gc.enable()
    gc.collect()
    assert ref() is None
    assert storage_of(loc) == {}


def test_release_then_set_again_in_a_long_lived_greenlet(loc: Local) -> None:
    """A context that sets and releases in a loop (a thread's main greenlet, a keep-alive
    connection) holds one entry at most and is watched once."""

    def body() -> int:
        for n in range(1_000):
            loc.v = n
            release_local(loc)
            assert get_ident() not in storage_of(loc)
        return len(ident._watches[get_ident()].owners)

    loc.keep_main_watched = True
    assert gevent.spawn(body).get() == 1


class CountingGreenlet(gevent.Greenlet):
    """A gevent.Greenlet that counts ``rawlink`` calls (ctxlocal's watch uses one)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.rawlinks = 0

    def rawlink(self, callback: Callable[[Any], Any]) -> None:
        self.rawlinks += 1
        super().rawlink(callback)


def test_release_context_drops_every_entry_and_keeps_the_watch(loc: Local,
                                                                stack: LocalStack) -> None:
    """``release_context()`` empties every Local of the current greenlet; a greenlet that
    stores and releases in a loop is still watched once (one rawlink), not once per round.

    Regression: release_context used to forget the watch, so every later store re-watched
    the greenlet and added another callback to its link list.
    """
    other = Local()

    def body() -> tuple[int, int]:
        current = gevent.getcurrent()
        assert isinstance(current, CountingGreenlet)
        links_before = current.rawlinks  # get() below may have linked already
        for n in range(1_000):
            loc.v = n
            other.v = n
            stack.push(n)
            ctxlocal.release_context()
            if hasattr(loc, "v") or hasattr(other, "v") or stack.top is not None:
                raise AssertionError(f"round {n}: values survived release_context")
        loc.v = "last"  # left for the finish callback
        return current.rawlinks - links_before, ctxlocal.live_entries(loc)

    worker = CountingGreenlet(body)
    worker.start()
    assert worker.get() == (1, 1)
    gevent.sleep(0)
    assert storage_of(loc) == {}
    assert type(other).__storage__ == {}
    assert storage_of(stack) == {}


def test_release_context_leaves_other_greenlets_alone(loc: Local) -> None:
    """Only the calling greenlet's entries go."""
    loc.v = "main"
    gevent.spawn(lambda: (setattr(loc, "v", "child"), ctxlocal.release_context())).join()
    assert loc.v == "main"
    ctxlocal.release_context()
    assert not hasattr(loc, "v")
