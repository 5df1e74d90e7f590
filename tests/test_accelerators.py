"""The server's optional C accelerator (server._arena, the arena cache) and how the server
reports which accelerators run.

``make test`` builds it (``make speedups``) and runs the suite once more with
CTXSERVER_PURE_PYTHON=1, so the server's tests pass on both paths; the cache's own
behaviour is pinned here whenever it is built (it is installed and removed in this process
around each test, which is safe: see server/_arena.c).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import greenlet
import pytest

import server
from server import accelerators
from tests.support import metric_values, running_server

BUILT = any(Path(server.__file__).parent.glob("_arena*.so"))
PURE_REQUESTED = bool(os.environ.get(accelerators.PURE_ENV))
arena = accelerators.arena_module()

needs_arena = pytest.mark.skipif(not BUILT, reason="server._arena is not built (no C compiler)")


def test_the_extension_is_importable_exactly_when_built() -> None:
    """CTXSERVER_PURE_PYTHON does not hide the module (its tests still run); it keeps the
    worker from installing it."""
    assert (arena is not None) is BUILT


@pytest.fixture
def cache() -> Iterator[object]:
    assert arena is not None
    assert arena.install(limit=4) is True
    try:
        yield arena
    finally:
        assert arena.uninstall() is True
    assert not arena.installed()


def _finish_greenlets(count: int) -> None:
    """Start ``count`` greenlets, keep them all alive at once, then let them all finish."""
    parked = [greenlet.greenlet(lambda: greenlet.getcurrent().parent.switch())
              for _ in range(count)]
    for glet in parked:
        glet.switch()  # runs until it parks: its first frame chunk is allocated now
    for glet in parked:
        glet.switch()  # finishes: greenlet frees the chunk through the arena allocator
    assert all(glet.dead for glet in parked)


@needs_arena
def test_a_finished_greenlets_chunk_is_reused_by_the_next(cache) -> None:
    """The size CPython asks for is CHUNK_SIZE (else nothing would be kept or hit)."""
    greenlet.greenlet(lambda: None).switch()  # one miss, then one block in the cache
    cache.reset_stats()
    for _ in range(100):
        greenlet.greenlet(lambda: None).switch()
    stats = cache.stats()
    assert stats["hits"] == 100, stats
    assert stats["misses"] == 0, stats
    assert stats["kept"] == 100, stats
    assert stats["cached"] == 1, stats


@needs_arena
def test_the_cache_keeps_at_most_its_limit(cache) -> None:
    cache.reset_stats()
    _finish_greenlets(10)
    stats = cache.stats()
    assert stats["limit"] == 4
    assert stats["cached"] == 4, stats
    assert stats["overflow"] >= 6, stats  # the rest went back to the previous allocator


@needs_arena
def test_other_sizes_go_to_the_previous_allocator(cache) -> None:
    cache.reset_stats()
    before = cache.stats()["cached"]
    for size in (4096, cache.CHUNK_SIZE - 1, cache.CHUNK_SIZE + 1, 2 * cache.CHUNK_SIZE,
                 1 << 20):
        address = cache._alloc(size)
        cache._free(address, size)
    stats = cache.stats()
    assert stats["passed"] == 10, stats  # five allocations, five frees
    assert stats["cached"] == before
    assert stats["hits"] == stats["misses"] == stats["kept"] == stats["overflow"] == 0


@needs_arena
def test_a_cached_block_is_handed_out_again(cache) -> None:
    first = cache._alloc(cache.CHUNK_SIZE)
    cache._free(first, cache.CHUNK_SIZE)
    assert cache._alloc(cache.CHUNK_SIZE) == first
    cache._free(first, cache.CHUNK_SIZE)


@needs_arena
def test_uninstall_restores_the_previous_allocator_and_empties_the_cache() -> None:
    assert arena.install(limit=8)
    assert arena.installed()
    assert arena.install(limit=2) is False  # already in: only the limit changes
    _finish_greenlets(5)
    assert arena.stats()["cached"] == 2
    assert arena.uninstall() is True
    assert not arena.installed()
    assert arena.stats()["cached"] == 0
    assert arena.uninstall() is False
    greenlet.greenlet(lambda: None).switch()  # CPython's own allocator again
    assert arena.stats()["cached"] == 0


@needs_arena
def test_install_refuses_a_limit_out_of_range() -> None:
    with pytest.raises(ValueError, match="limit"):
        arena.install(limit=-1)
    with pytest.raises(ValueError, match="limit"):
        arena.install(limit=arena.MAX_LIMIT + 1)
    assert not arena.installed()


def test_the_summary_names_both_accelerators_and_why_one_is_off() -> None:
    line = accelerators.summary()
    expected = "on" if BUILT and not PURE_REQUESTED else "off"
    assert line.startswith(f"accelerators: arena_cache {expected} (")
    assert "ctxlocal_speedups " in line
    if PURE_REQUESTED:
        assert "CTXSERVER_PURE_PYTHON is set" in line


@pytest.mark.parametrize("pure", [False, True], ids=["accelerated", "pure"])
def test_the_server_reports_and_serves_on_both_paths(pure: bool, tmp_path: Path) -> None:
    """One start-up line names the accelerators; /metrics says what the worker runs; the
    app answers the same either way."""
    env = {accelerators.PURE_ENV: "1" if pure else ""}
    on = BUILT and not pure
    with running_server(tmp_path=tmp_path, env=env) as srv:
        bodies = {srv.get("/")[2] for _ in range(20)}
        gauge = metric_values(srv.metrics(), "ctxserver_accelerator_active")
        log = srv.log()
    assert bodies == {b"Hello, World!"}
    assert gauge['{name="arena_cache"}'] == (1.0 if on else 0.0), gauge
    assert '{name="ctxlocal_speedups"}' in gauge
    lines = [line for line in log.splitlines() if "accelerators:" in line]
    assert len(lines) == 1, log
    assert f"arena_cache {'on' if on else 'off'}" in lines[0]
