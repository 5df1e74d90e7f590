"""ctxlocal's hot paths next to what they replace or compete with, in one process.

Measured: attribute get and set on a Local, LocalStack push+pop and ``top``, and attribute
access through a LocalProxy — for ``ctxlocal``, ``gevent.local.local`` (Cython),
``werkzeug.local`` (the installed release, ContextVar-based since 2.0), ``threading.local``,
``contextvars.ContextVar``, and the floor any greenlet-keyed design pays:
``d[getcurrent()][name]`` (one C call and two dict look-ups, no cleanup, no safety).

How: every case is timed with :class:`timeit.Timer` for ~40 ms at a time, in ``ROUNDS``
rounds; each round times every case once, and a group's reference right before each of the
group's other cases.  Load from elsewhere on the machine comes in bursts: many short rounds
keep one burst from deciding a median, and a ratio taken between two adjacent timings sees
the same burst on both sides.  Reported: the median and the minimum over the rounds, in ns
per operation *net* of the timing loop itself (an empty statement, measured the same way,
is subtracted — which makes ratios stricter, not kinder), and the median of the per-round
ratios to the group's reference.

The same Local get/set is also timed inside a running asyncio task (where ctxlocal keys on
the task), against werkzeug's (per task too) and gevent.local's (not per task).

ctxlocal runs on its C accelerator when built (``make bench`` builds it: ``make speedups``)
and then writes ``results/local.md``; with CTXLOCAL_PURE_PYTHON=1 (or not built) it runs
pure Python and writes ``results/local-pure.md``.  The report names the path it measured.

The targets (design.md §5; the issue): ctxlocal Local get/set ≤ 1.5x gevent.local.local,
LocalProxy attribute access ≤ ½ of werkzeug's.  Whether they are met is computed and
written down, not adjusted.
"""

from __future__ import annotations

import asyncio
import contextvars
import datetime
import importlib.metadata
import os
import platform
import statistics
import sys
import threading
import timeit
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gevent
import gevent.local
import greenlet
import werkzeug.local

import ctxlocal
from ctxlocal.local import ACCELERATED
from loadtests import procs

ROUNDS = 25
TIMING_SECONDS = 0.04  # one timing of one case; many short rounds beat few long ones
RESULTS = Path(__file__).resolve().parent / "results" / (
    "local.md" if ACCELERATED else "local-pure.md")
PATH = ("C accelerator (ctxlocal/_speedups.c)" if ACCELERATED
        else "pure Python (accelerator not built, or CTXLOCAL_PURE_PYTHON=1)")


class Item:
    """What a request stack holds and a proxy reads an attribute of."""

    __slots__ = ("attr",)

    def __init__(self) -> None:
        self.attr = 1


def _namespace() -> dict[str, Any]:
    """The objects the statements below run against, set up in the current greenlet."""
    item = Item()

    ours = ctxlocal.Local()
    ours.x = 1
    ours.obj = item
    ours_stack = ctxlocal.LocalStack()
    ours_stack.push(item)
    ours_empty_stack = ctxlocal.LocalStack()
    ours_var: contextvars.ContextVar[Item] = contextvars.ContextVar("ours_var")
    ours_var.set(item)

    theirs = werkzeug.local.Local()
    theirs.x = 1
    theirs.obj = item
    theirs_stack = werkzeug.local.LocalStack()
    theirs_stack.push(item)
    theirs_empty_stack = werkzeug.local.LocalStack()
    theirs_var: contextvars.ContextVar[Item] = contextvars.ContextVar("theirs_var")
    theirs_var.set(item)

    gevent_local = gevent.local.local()
    gevent_local.x = 1
    thread_local = threading.local()
    thread_local.x = 1
    var: contextvars.ContextVar[int] = contextvars.ContextVar("var")
    var.set(1)
    floor: dict[Any, dict[str, Any]] = {greenlet.getcurrent(): {"x": 1}}

    return {
        "item": item,
        "getcurrent": greenlet.getcurrent,
        "ours": ours,
        "ours_stack": ours_stack,
        "ours_empty_stack": ours_empty_stack,
        "ours_top_proxy": ours_stack(),
        "ours_attr_proxy": ctxlocal.LocalProxy(ours, "obj"),
        "ours_var_proxy": ctxlocal.LocalProxy(ours_var),
        "theirs": theirs,
        "theirs_stack": theirs_stack,
        "theirs_empty_stack": theirs_empty_stack,
        "theirs_top_proxy": theirs_stack(),
        "theirs_attr_proxy": werkzeug.local.LocalProxy(theirs, "obj"),
        "theirs_var_proxy": werkzeug.local.LocalProxy(theirs_var),
        "gevent_local": gevent_local,
        "thread_local": thread_local,
        "var": var,
        "floor": floor,
    }


@dataclass
class Case:
    """One statement to time, and where it goes in the table."""

    group: str
    implementation: str
    statement: str
    reference: bool = False  # the row ratios in this group are taken against
    target: float | None = None  # maximum ratio to the reference, when there is a target
    timings: list[float] = field(default_factory=list)  # net ns/op, one per round
    ratios: list[float] = field(default_factory=list)  # to the reference, one per round

    @property
    def median(self) -> float:
        return statistics.median(self.timings)

    @property
    def best(self) -> float:
        return min(self.timings)

    @property
    def ratio(self) -> float:
        return statistics.median(self.ratios)


GET, SET = "Local attribute get", "Local attribute set"
PUSH_POP_EMPTY = "LocalStack push+pop (empty stack: entry created and released)"
PUSH_POP = "LocalStack push+pop (on a non-empty stack)"
TOP = "LocalStack .top"
PROXY_TOP = "LocalProxy attribute, proxy to a stack's top"
PROXY_ATTR = "LocalProxy attribute, LocalProxy(local, name)"
PROXY_VAR = "LocalProxy attribute, proxy over a ContextVar"

CASES = [
    Case(GET, "gevent.local.local", "gevent_local.x", reference=True),
    Case(GET, "ctxlocal.Local", "ours.x", target=1.5),
    Case(GET, "werkzeug.local.Local", "theirs.x"),
    Case(GET, "threading.local", "thread_local.x"),
    Case(GET, "contextvars.ContextVar.get", "var.get()"),
    Case(GET, "floor: d[getcurrent()][name]", "floor[getcurrent()]['x']"),
    Case(SET, "gevent.local.local", "gevent_local.x = 1", reference=True),
    Case(SET, "ctxlocal.Local", "ours.x = 1", target=1.5),
    Case(SET, "werkzeug.local.Local", "theirs.x = 1"),
    Case(SET, "threading.local", "thread_local.x = 1"),
    Case(SET, "contextvars.ContextVar.set", "var.set(1)"),
    Case(SET, "floor: d[getcurrent()][name] = v", "floor[getcurrent()]['x'] = 1"),
    Case(PUSH_POP_EMPTY, "werkzeug.local.LocalStack", "theirs_empty_stack.push(item); "
         "theirs_empty_stack.pop()", reference=True),
    Case(PUSH_POP_EMPTY, "ctxlocal.LocalStack", "ours_empty_stack.push(item); "
         "ours_empty_stack.pop()"),
    Case(PUSH_POP, "werkzeug.local.LocalStack", "theirs_stack.push(item); theirs_stack.pop()",
         reference=True),
    Case(PUSH_POP, "ctxlocal.LocalStack", "ours_stack.push(item); ours_stack.pop()"),
    Case(TOP, "werkzeug.local.LocalStack", "theirs_stack.top", reference=True),
    Case(TOP, "ctxlocal.LocalStack", "ours_stack.top"),
    Case(PROXY_TOP, "werkzeug.local.LocalProxy", "theirs_top_proxy.attr", reference=True),
    Case(PROXY_TOP, "ctxlocal.LocalProxy", "ours_top_proxy.attr", target=0.5),
    Case(PROXY_TOP, "plain attribute (no proxy)", "item.attr"),
    Case(PROXY_ATTR, "werkzeug.local.LocalProxy", "theirs_attr_proxy.attr", reference=True),
    Case(PROXY_ATTR, "ctxlocal.LocalProxy", "ours_attr_proxy.attr", target=0.5),
    Case(PROXY_VAR, "werkzeug.local.LocalProxy", "theirs_var_proxy.attr", reference=True),
    Case(PROXY_VAR, "ctxlocal.LocalProxy", "ours_var_proxy.attr"),
]

TASK_GET = "Local attribute get, in an asyncio task"
TASK_SET = "Local attribute set, in an asyncio task"
TASK_CASES = [
    Case(TASK_GET, "gevent.local.local (not per task)", "gevent_local.x", reference=True),
    Case(TASK_GET, "ctxlocal.Local", "ours.x"),
    Case(TASK_GET, "werkzeug.local.Local", "theirs.x"),
    Case(TASK_SET, "gevent.local.local (not per task)", "gevent_local.x = 1", reference=True),
    Case(TASK_SET, "ctxlocal.Local", "ours.x = 1"),
    Case(TASK_SET, "werkzeug.local.Local", "theirs.x = 1"),
]


async def _measure_in_a_task(cases: list[Case], rounds: int) -> float:
    """:func:`_measure` run inside an asyncio task's step (the objects are set up there)."""
    return _measure(cases, rounds)


def _measure(cases: list[Case], rounds: int) -> float:
    """Fill every case's timings and ratios; return the empty statement's cost (ns).

    Within a round, a group's reference is timed right before each of the group's other
    cases, and each case's ratio for that round is taken against that adjacent timing: load
    from elsewhere on the machine comes in bursts, and two timings a few milliseconds apart
    see the same burst.  The reported ratio is the median of the per-round ratios.
    """
    namespace = _namespace()
    empty = Case("", "empty statement", "pass")
    timers: dict[int, tuple[timeit.Timer, int]] = {}
    for case in [empty, *cases]:
        timer = timeit.Timer(case.statement, globals=namespace)
        timer.timeit(1)  # a statement that fails must fail here, not halfway through
        number, elapsed = timer.autorange()  # >= 0.2 s; scale down to ~TIMING_SECONDS
        timers[id(case)] = (timer, max(1, int(number * TIMING_SECONDS / elapsed)))

    def time_one(case: Case) -> float:
        timer, number = timers[id(case)]
        return timer.timeit(number) / number * 1e9

    references = {case.group: case for case in cases if case.reference}
    raw: dict[int, list[float]] = {id(case): [] for case in [empty, *cases]}
    reference_raw: dict[int, list[float]] = {id(case): [] for case in cases}
    for _ in range(rounds):
        raw[id(empty)].append(time_one(empty))
        for case in cases:
            reference = references[case.group]
            if case is not reference:
                reference_raw[id(case)].append(time_one(reference))
            raw[id(case)].append(time_one(case))
    overhead = statistics.median(raw[id(empty)])
    for case in cases:
        case.timings = [max(t - overhead, 0.0) for t in raw[id(case)]]
        if case.reference:
            case.ratios = [1.0] * rounds
        else:
            case.ratios = [max(t - overhead, 0.0) / max(r - overhead, 1e-9)
                           for t, r in zip(raw[id(case)], reference_raw[id(case)],
                                           strict=True)]
    return overhead


def _versions() -> dict[str, str]:
    return {
        "python": platform.python_version(),
        "gevent": gevent.__version__,
        "greenlet": greenlet.__version__,
        "werkzeug": importlib.metadata.version("werkzeug"),
    }


def _verdicts(cases: list[Case]) -> list[tuple[str, float, float, bool]]:
    """``(what, ratio, target, met)`` for every case that has a target."""
    return [(f"{case.implementation}: {case.group}", case.ratio, case.target,
             case.ratio <= case.target)
            for case in cases if case.target is not None]


def render(cases: list[Case], overhead: float, rounds: int, command: str,
           task_cases: list[Case] | None = None, task_overhead: float = 0.0) -> str:
    """The Markdown report."""
    versions = _versions()
    nproc = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    lines = [
        "# ctxlocal micro-benchmarks",
        "",
        f"- command: `{command}` (what `make bench` runs)",
        f"- date: {datetime.datetime.now(datetime.UTC).strftime('%Y-%m-%d %H:%M UTC')}",
        f"- machine: nproc {nproc}, {procs.cpu_model()}, {platform.system()} {platform.release()}",
        f"- ctxlocal path: {PATH}",
        "- versions: " + ", ".join(f"{name} {version}" for name, version in versions.items()),
        f"- method: {rounds} interleaved rounds, each timing every case once for "
        f"~{TIMING_SECONDS * 1000:.0f} ms (timeit); ns per operation net of the timing loop "
        f"(empty statement: {overhead:.1f} ns, subtracted); ratio = median over the rounds of "
        "(case / the group's reference row, marked ◆, timed right before it in the same "
        "round)",
        "",
        "| operation | implementation | median ns/op | min ns/op | ratio |",
        "|---|---|---:|---:|---:|",
    ]
    for case in cases:
        marker = " ◆" if case.reference else ""
        lines.append(f"| {case.group} | {case.implementation}{marker} | {case.median:.1f} "
                     f"| {case.best:.1f} | {case.ratio:.2f}x |")
    if task_cases:
        lines += ["", f"Inside a running asyncio task (empty statement: {task_overhead:.1f} ns):",
                  "", "| operation | implementation | median ns/op | min ns/op | ratio |",
                  "|---|---|---:|---:|---:|"]
        for case in task_cases:
            marker = " ◆" if case.reference else ""
            lines.append(f"| {case.group} | {case.implementation}{marker} | {case.median:.1f} "
                         f"| {case.best:.1f} | {case.ratio:.2f}x |")
    lines += ["", "## Targets", "", "| target | ratio | limit | met |", "|---|---:|---:|---|"]
    for what, ratio, target, met in _verdicts(cases):
        lines.append(f"| {what} | {ratio:.2f}x | ≤ {target:g}x | {'yes' if met else '**no**'} |")
    lines.append("")
    return "\n".join(lines)


def main(command: str = "python -m bench local") -> int:
    """Run the benchmark, print the report and write it to ``bench/results/local.md``
    (``local-pure.md`` on the pure-Python path).

    Returns 0 whether or not the targets are met: the report says so, and a benchmark is
    not a test (CI does not gate on numbers from a noisy machine).
    """
    if greenlet.getcurrent().parent is not None:
        raise RuntimeError("run the benchmark in the main greenlet")
    cases = [Case(c.group, c.implementation, c.statement, c.reference, c.target)
             for c in CASES]
    print(f"ctxlocal micro-benchmarks: {len(cases)} cases x {ROUNDS} rounds ...",
          file=sys.stderr)
    overhead = _measure(cases, ROUNDS)
    task_cases = [Case(c.group, c.implementation, c.statement, c.reference, c.target)
                  for c in TASK_CASES]
    task_overhead = asyncio.run(_measure_in_a_task(task_cases, ROUNDS))
    report = render(cases, overhead, ROUNDS, command, task_cases, task_overhead)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(report, encoding="utf-8")
    print(report)
    print(f"written to {RESULTS}", file=sys.stderr)
    return 0
