"""A value set in one context is never visible in another: gevent greenlets, raw greenlets,
OS threads (not monkey-patched), greenlets inside threads, gevent's threadpool, and — in a
subprocess, so this process stays unpatched — everything under ``gevent.monkey.patch_all()``.

Every thread and greenlet a test starts is joined (or run to its end) before it returns.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import gevent
import gevent.event
import gevent.monkey
import greenlet
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import ctxlocal
from ctxlocal import Local, LocalProxy, LocalStack, release_local

ROOT = Path(__file__).resolve().parent.parent
BARRIER_TIMEOUT = 60.0  # only turns a deadlock into a failure; never expected to matter


@pytest.fixture(autouse=True)
def _threads_are_real() -> None:
    """These tests are about real OS threads: make sure nobody patched this process."""
    assert not gevent.monkey.is_module_patched("threading"), \
        "threading is monkey-patched in the test process; the thread tests would be void"


@pytest.fixture
def loc() -> Iterator[Local]:
    """A fresh Local, released after the test."""
    local = Local(name="isolation")
    yield local
    release_local(local)


@pytest.fixture
def stack() -> Iterator[LocalStack]:
    """A fresh LocalStack, released after the test."""
    local_stack = LocalStack(name="isolation-stack")
    yield local_stack
    release_local(local_stack)


def check_own_values(loc: Local, stack: LocalStack, proxy: LocalProxy, me: Any,
                     depth: int, errors: list[str]) -> None:
    """Record an error unless this context sees exactly its own values."""
    if getattr(loc, "owner", None) != me:
        errors.append(f"{me!r}: Local shows {getattr(loc, 'owner', None)!r}")
    if proxy != me:
        errors.append(f"{me!r}: proxy shows {proxy!r}")
    if stack.top != me or len(stack) != depth:
        errors.append(f"{me!r}: stack top {stack.top!r}, depth {len(stack)} != {depth}")


# -- gevent greenlets ------------------------------------------------------------------------

def test_many_interleaving_gevent_greenlets(loc: Local, stack: LocalStack) -> None:
    """500 greenlets set, push, yield and check, interleaved by the hub."""
    proxy = LocalProxy(loc, "owner")
    loc.owner = "main"
    errors: list[str] = []

    def worker(n: int) -> None:
        if hasattr(loc, "owner") or stack.top is not None:
            errors.append(f"{n}: saw values before setting any")
        loc.owner = n
        for depth in range(1, 4):
            stack.push(n)
            gevent.sleep(0)
            check_own_values(loc, stack, proxy, n, depth, errors)
        del loc.owner
        gevent.sleep(0)
        if hasattr(loc, "owner"):
            errors.append(f"{n}: deleted value came back")

    gevent.joinall([gevent.spawn(worker, n) for n in range(500)], raise_error=True)
    assert errors == []
    assert loc.owner == "main"
    assert stack.top is None


# A schedule: per greenlet, a list of steps; each step is an operation then (maybe) a yield.
_STEP = st.tuples(st.sampled_from(["set", "del", "push", "pop", "release", "read"]),
                  st.booleans())
_SCHEDULES = st.lists(st.lists(_STEP, max_size=12), min_size=2, max_size=6)


def _run_script(me: int, script: list[tuple[str, bool]], loc: Local, stack: LocalStack,
                yield_: Any, errors: list[str]) -> None:
    """Apply ``script`` while keeping a model of what this context should see."""
    value: int | None = None
    items: list[tuple[int, int]] = []
    for step, (op, do_yield) in enumerate(script):
        if op == "set":
            value = me * 1000 + step
            loc.value = value
        elif op == "del" and value is not None:
            del loc.value
            value = None
        elif op == "push":
            items.append((me, step))
            stack.push((me, step))
        elif op == "pop":
            expected = items.pop() if items else None
            if stack.pop() != expected:
                errors.append(f"{me}: pop at step {step} != {expected!r}")
        elif op == "release":
            release_local(loc)
            release_local(stack)
            value, items = None, []
        if do_yield:
            yield_()
        if getattr(loc, "value", None) != value:
            errors.append(f"{me}: value {getattr(loc, 'value', None)!r} != {value!r}")
        if stack.top != (items[-1] if items else None):
            errors.append(f"{me}: top {stack.top!r} != {items[-1] if items else None!r}")


@settings(max_examples=60, deadline=None)
@given(schedules=_SCHEDULES)
def test_gevent_schedules(schedules: list[list[tuple[str, bool]]]) -> None:
    """Hypothesis picks the operations and where each greenlet yields; whatever the
    interleaving, every greenlet sees exactly what its own model says."""
    loc, stack = Local(), LocalStack()
    errors: list[str] = []
    workers = [gevent.spawn(_run_script, me, script, loc, stack, lambda: gevent.sleep(0),
                            errors)
               for me, script in enumerate(schedules)]
    gevent.joinall(workers, raise_error=True)
    gevent.sleep(0)
    assert errors == []
    assert type(loc).__storage__ == {}
    assert type(stack._local).__storage__ == {}


@settings(max_examples=60, deadline=None)
@given(schedules=_SCHEDULES, order=st.lists(st.integers(0, 5), max_size=80))
def test_raw_greenlet_schedules(schedules: list[list[tuple[str, bool]]],
                                order: list[int]) -> None:
    """Raw greenlets switched in an order hypothesis chooses (each yield returns control
    to a scheduler that resumes whichever greenlet ``order`` names next)."""
    loc, stack = Local(), LocalStack()
    errors: list[str] = []
    scheduler = greenlet.getcurrent()

    def yield_() -> None:
        scheduler.switch()

    workers = [greenlet.greenlet(_run_script) for _ in schedules]
    for me, (worker, script) in enumerate(zip(workers, schedules, strict=True)):
        worker.switch(me, script, loc, stack, yield_, errors)  # runs to its first yield
    for pick in order:
        worker = workers[pick % len(workers)]
        if not worker.dead:
            worker.switch()
    for worker in workers:  # run every greenlet to its end
        while not worker.dead:
            worker.switch()
    del workers, worker
    assert errors == []
    assert type(loc).__storage__ == {}
    assert type(stack._local).__storage__ == {}


# -- OS threads -------------------------------------------------------------------------------

def test_os_threads(loc: Local, stack: LocalStack) -> None:
    """Real threads (no monkey-patching) set, meet at a barrier, then check: all values
    exist at the same time, and each thread sees only its own."""
    proxy = LocalProxy(loc, "owner")
    loc.owner = "main"
    stack.push("main")
    count = 8
    barrier = threading.Barrier(count, timeout=BARRIER_TIMEOUT)
    errors: list[str] = []

    def worker(n: int) -> None:
        try:
            if hasattr(loc, "owner") or stack.top is not None:
                errors.append(f"thread {n}: saw values before setting any")
            loc.owner = n
            stack.push(n)
            barrier.wait()
            check_own_values(loc, stack, proxy, n, 1, errors)
            barrier.wait()
        except Exception as exc:  # reported through errors: a thread cannot fail the test
            errors.append(f"thread {n}: {exc!r}")

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert loc.owner == "main"
    assert stack.top == "main"


def test_os_threads_hammering_one_local(loc: Local, stack: LocalStack) -> None:
    """Many threads writing and reading the same Local and LocalStack with a tiny switch
    interval, so the GIL changes hands inside ctxlocal's code paths as often as possible
    (entries created, tracked and released concurrently)."""
    errors: list[str] = []
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)

    def worker(n: int) -> None:
        for i in range(2_000):
            loc.value = (n, i)
            stack.push((n, i))
            if loc.value != (n, i) or stack.top != (n, i):
                errors.append(f"thread {n}: read {loc.value!r}/{stack.top!r} "
                              f"after writing {(n, i)!r}")
                return
            if stack.pop() != (n, i) or stack.top is not None:
                errors.append(f"thread {n}: pop at {i} did not empty the stack")
                return
            if i % 100 == 0:
                release_local(loc)

    try:
        threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        sys.setswitchinterval(interval)
    assert errors == []


def test_greenlets_inside_threads(loc: Local, stack: LocalStack) -> None:
    """Raw greenlets switched inside several threads at once: each greenlet of each thread,
    and each thread's main greenlet, sees only its own values."""
    proxy = LocalProxy(loc, "owner")
    threads_count, greenlets_count, rounds = 4, 5, 4
    barrier = threading.Barrier(threads_count, timeout=BARRIER_TIMEOUT)
    errors: list[str] = []

    def in_greenlet(me: tuple[int, int]) -> None:
        loc.owner = me
        for depth in range(1, rounds + 1):
            stack.push(me)
            greenlet.getcurrent().parent.switch()
            check_own_values(loc, stack, proxy, me, depth, errors)

    def thread_main(t: int) -> None:
        try:
            loc.owner = (t, "main")
            stack.push((t, "main"))
            workers = [greenlet.greenlet(in_greenlet) for _ in range(greenlets_count)]
            for g, worker in enumerate(workers):
                worker.switch((t, g))
            barrier.wait()  # every thread has greenlets with values now
            while not all(worker.dead for worker in workers):
                for worker in workers:
                    if not worker.dead:
                        worker.switch()
            check_own_values(loc, stack, proxy, (t, "main"), 1, errors)
        except Exception as exc:  # reported through errors: a thread cannot fail the test
            errors.append(f"thread {t}: {exc!r}")

    threads = [threading.Thread(target=thread_main, args=(t,)) for t in range(threads_count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert not hasattr(loc, "owner")
    assert stack.top is None


def test_gevent_threadpool(loc: Local, stack: LocalStack) -> None:
    """Tasks on gevent's threadpool run in its worker threads: each sees its own values,
    the hub's greenlets see none of them.

    (Tasks run one after another on the same worker thread share that thread's context,
    as with ``threading.local``; so each task releases what it set.)
    """
    pool = gevent.get_hub().threadpool
    count = min(4, pool.maxsize)
    barrier = threading.Barrier(count, timeout=BARRIER_TIMEOUT)
    loc.owner = "hub thread"

    def task(n: int) -> tuple[Any, Any, Any]:
        try:
            before = getattr(loc, "owner", None)
            loc.owner = n
            stack.push(n)
            barrier.wait()  # all tasks hold values at once
            return before, loc.owner, stack.top
        finally:
            release_local(loc)
            release_local(stack)

    results = [pool.spawn(task, n) for n in range(count)]
    assert [result.get() for result in results] == [(None, n, n) for n in range(count)]
    assert loc.owner == "hub thread"
    assert stack.top is None


# -- monkey-patched, in a subprocess ------------------------------------------------------------

PATCHED_SCRIPT = textwrap.dedent("""
    from gevent import monkey
    monkey.patch_all()

    import threading
    import time

    import gevent
    import greenlet

    import ctxlocal

    assert monkey.is_module_patched("threading")
    loc = ctxlocal.Local()
    stack = ctxlocal.LocalStack()
    proxy = loc("owner")
    errors = []

    def worker(me):
        if hasattr(loc, "owner") or stack.top is not None:
            errors.append(f"{me}: saw values before setting any")
        loc.owner = me
        for depth in range(1, 6):
            stack.push(me)
            time.sleep(0)  # patched: yields to the hub
            if loc.owner != me or proxy != me or stack.top != me or len(stack) != depth:
                errors.append(f"{me}: saw {loc.owner!r}/{stack.top!r} at depth {depth}")

    loc.owner = "main"
    threads = [threading.Thread(target=worker, args=(f"thread {n}",)) for n in range(50)]
    greenlets = [gevent.spawn(worker, f"greenlet {n}") for n in range(50)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    gevent.joinall(greenlets, raise_error=True)

    def raw_body():
        worker("raw greenlet")

    for _ in range(20):
        raw = greenlet.greenlet(raw_body)
        while not raw.dead:
            raw.switch()
            gevent.sleep(0)

    # a real OS thread, from gevent's threadpool
    assert gevent.get_hub().threadpool.spawn(worker, "pool thread").get() is None

    assert loc.owner == "main", loc.owner
    assert errors == [], errors[:5]
    release_local = ctxlocal.release_local
    release_local(loc)
    del threads, greenlets, raw
    gevent.sleep(0)
    import gc
    gc.collect()
    # the threadpool worker thread keeps its values (threading.local semantics)
    leftover = {k for k in type(loc).__storage__} | {k for k in type(stack._local).__storage__}
    assert len(leftover) <= 1, leftover
    print("OK")
""")


def test_isolation_under_monkey_patching() -> None:
    """Under ``patch_all()`` threads are greenlets, ``time.sleep`` yields: isolation holds
    across patched threads, gevent greenlets, raw greenlets and the threadpool."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    completed = subprocess.run([sys.executable, "-c", PATCHED_SCRIPT], cwd=ROOT, env=env,
                               capture_output=True, text=True, timeout=120, check=False)
    assert completed.returncode == 0, completed.stderr
    assert completed.stdout.strip() == "OK", completed.stdout + completed.stderr


NO_GROWTH_SCRIPT = textwrap.dedent("""
    import gc

    import gevent
    import greenlet

    import ctxlocal

    loc = ctxlocal.Local(name="subprocess")
    stack = ctxlocal.LocalStack(name="subprocess-stack")

    def body():
        loc.value = object()
        stack.push(object())

    for _ in range(100):
        gevent.joinall([gevent.spawn(body) for _ in range(1000)])
    for _ in range(100_000):
        greenlet.greenlet(body).switch()
    gevent.sleep(0)
    gc.collect()
    assert ctxlocal.live_contexts() == 0, ctxlocal.live_contexts()
    assert set(ctxlocal.stats().values()) == {0}, ctxlocal.stats()
    print("OK")
""")


@pytest.mark.slow
def test_live_contexts_zero_in_a_fresh_process() -> None:
    """In a process nothing else has touched, 200,000 greenlets (gevent and raw) that set
    values and die without releasing leave ``live_contexts() == 0`` exactly."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    completed = subprocess.run([sys.executable, "-c", NO_GROWTH_SCRIPT], cwd=ROOT, env=env,
                               capture_output=True, text=True, timeout=120, check=False)
    assert completed.returncode == 0, completed.stderr
    assert completed.stdout.strip() == "OK", completed.stdout + completed.stderr


def test_live_contexts_counts_running_contexts() -> None:
    """live_contexts() rises with greenlets holding values and falls back as they end."""
    loc = Local()
    before = ctxlocal.live_contexts()
    release = gevent.event.Event()

    def hold() -> None:
        loc.value = 1
        release.wait()

    workers = [gevent.spawn(hold) for _ in range(25)]
    gevent.sleep(0)
    assert ctxlocal.live_contexts() == before + 25
    release.set()
    gevent.joinall(workers)
    gevent.sleep(0)
    assert ctxlocal.live_contexts() == before
