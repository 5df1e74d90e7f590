"""What the arena cache (server/_arena.c) saves: a new greenlet created, entered and
finished, with the cache installed and without, in one process, the two interleaved.

Each of ``ROUNDS`` rounds times ``greenlet.greenlet(f).switch()`` ``LOOPS`` times with the
cache installed, then the same without (the order alternates from round to round, so a
burst of load from elsewhere hits both sides alike); reported are the medians in µs per
greenlet and the median of the per-round ratios, plus ``gevent.spawn(f).join()`` the same
way (what a request greenlet costs the server: the hub switch included).  The request-rate
side (hello with and without) is in ``bench/results/server.md``: its "ours, pure Python"
row.  Writes ``bench/results/arena.md``.
"""

from __future__ import annotations

import datetime
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import gevent
import greenlet

from bench.server.matrix import TIMES
from loadtests import procs
from server import accelerators

ROUNDS = 11
LOOPS = 20_000
RESULTS = Path(__file__).resolve().parent / "results" / "arena.md"


def _nothing() -> None:
    return None


def _greenlet_switch() -> None:
    greenlet.greenlet(_nothing).switch()


def _gevent_spawn_join() -> None:
    gevent.spawn(_nothing).join()


CASES: dict[str, Callable[[], None]] = {
    "greenlet.greenlet(f).switch()": _greenlet_switch,
    "gevent.spawn(f).join()": _gevent_spawn_join,
}


def _time(case: Callable[[], None]) -> float:
    """µs per call of ``case`` over LOOPS calls."""
    started = time.perf_counter()
    for _ in range(LOOPS):
        case()
    return (time.perf_counter() - started) / LOOPS * 1e6


def _timed(case: Callable[[], None], on: bool) -> float:
    arena = accelerators.arena_module()
    if on:
        arena.install()
    try:
        return _time(case)
    finally:
        if on:
            arena.uninstall()


def measure() -> dict[str, dict[str, list[float]]]:
    results: dict[str, dict[str, list[float]]] = {}
    for name, case in CASES.items():
        on_times, off_times = [], []
        _timed(case, True)  # warm both paths up
        _timed(case, False)
        for round_no in range(ROUNDS):
            for on in ((True, False) if round_no % 2 == 0 else (False, True)):
                (on_times if on else off_times).append(_timed(case, on))
        results[name] = {"on": on_times, "off": off_times}
    return results


def render(results: dict[str, dict[str, list[float]]], command: str) -> str:
    lines = [
        "# Arena cache: a new greenlet with and without server/_arena.c",
        "",
        f"- command: `{command}` (part of `make bench`)",
        f"- date: {datetime.datetime.now(datetime.UTC).strftime('%Y-%m-%d %H:%M UTC')}",
        f"- machine: nproc {os.cpu_count()}, {procs.cpu_model()}, "
        f"{platform.system()} {platform.release()}; python {platform.python_version()}",
        f"- method: {ROUNDS} rounds of {LOOPS:,} calls per side, cache on and off "
        "interleaved in one process (order alternating); medians",
        "",
        "| operation | µs, cache on | µs, cache off (CPython's mmap) | off / on (median of "
        "rounds) |",
        "|---|---:|---:|---:|",
    ]
    for name, sides in results.items():
        ratios = [off / on for on, off in zip(sides["on"], sides["off"], strict=True)]
        lines.append(f"| `{name}` | {statistics.median(sides['on']):.2f} | "
                     f"{statistics.median(sides['off']):.2f} | "
                     f"{statistics.median(ratios):.2f}{TIMES} |")
    return "\n".join(lines) + "\n"


def main(command: str = "python -m bench arena") -> int:
    arena = accelerators.arena_module()
    if arena is None:
        print("server._arena is not built (make speedups): nothing to compare",
              file=sys.stderr)
        return 1
    if arena.installed():
        print("the arena cache is already installed in this process", file=sys.stderr)
        return 1
    report = render(measure(), command)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(report, encoding="utf-8")
    print(report)
    return 0


if __name__ == "__main__":
    sys.exit(main("python -m bench.arena"))
