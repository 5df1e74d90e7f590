"""Rounds into a table: medians per (endpoint, concurrency, server), ratios to gunicorn of
the same run, and the verdict on each target — pure functions, no I/O.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from bench.server.matrix import (
    CEILING,
    ENDPOINTS,
    REFERENCE,
    SERVERS,
    TARGET_HELLO,
    TARGET_P99,
    TARGET_PROBE,
    TIMES,
)
from bench.server.wrk import WrkResult


def median(values: Sequence[float | None]) -> float | None:
    """Median of the values that are there; None when none is."""
    present = [v for v in values if v is not None]
    return statistics.median(present) if present else None


def ratio(value: float | None, reference: float | None) -> float | None:
    if value is None or reference is None or reference == 0:
        return None
    return value / reference


@dataclass
class Row:
    """One (endpoint, concurrency, server) cell of the table: medians over the runs."""

    endpoint: str
    concurrency: int
    server: str
    runs: int
    rps: float | None
    p50_ms: float | None
    p99_ms: float | None
    errors: int
    rps_runs: list[float]
    rps_ratio: float | None = None  # rps / gunicorn's rps
    p99_ratio: float | None = None  # p99 / gunicorn's p99
    ceiling_ratio: float | None = None  # rps / granian's rps (the ceiling anchor)


def summarize(runs: Sequence[dict[str, Any]]) -> list[Row]:
    """Medians per (endpoint, concurrency, server) and ratios to the reference server.

    ``runs``: dicts with ``endpoint``, ``concurrency``, ``server`` and ``result`` (a
    :class:`WrkResult` or its ``asdict``), one per timed wrk run.
    """
    groups: dict[tuple[str, int, str], list[WrkResult]] = {}
    for run in runs:
        result = run["result"]
        if isinstance(result, dict):
            result = WrkResult(**result)
        groups.setdefault((run["endpoint"], run["concurrency"], run["server"]), []).append(
            result)

    def order(key: tuple[str, int, str]) -> tuple[int, int, int]:
        endpoint, conc, server = key
        return (ENDPOINTS.index(endpoint) if endpoint in ENDPOINTS else len(ENDPOINTS), conc,
                SERVERS.index(server) if server in SERVERS else len(SERVERS))

    rows = []
    for key in sorted(groups, key=order):
        results = groups[key]
        rows.append(Row(
            endpoint=key[0], concurrency=key[1], server=key[2], runs=len(results),
            rps=median([r.requests_per_sec for r in results]),
            p50_ms=median([r.p50_ms for r in results]),
            p99_ms=median([r.p99_ms for r in results]),
            errors=sum(r.errors for r in results),
            rps_runs=[r.requests_per_sec for r in results],
        ))
    reference = {(r.endpoint, r.concurrency): r for r in rows if r.server == REFERENCE}
    ceiling = {(r.endpoint, r.concurrency): r for r in rows if r.server == CEILING}
    for row in rows:
        ref = reference.get((row.endpoint, row.concurrency))
        if ref is not None:
            row.rps_ratio = ratio(row.rps, ref.rps)
            row.p99_ratio = ratio(row.p99_ms, ref.p99_ms)
        top = ceiling.get((row.endpoint, row.concurrency))
        if top is not None:
            row.ceiling_ratio = ratio(row.rps, top.rps)
    return rows


@dataclass
class Target:
    """One target of the issue and whether the medians of this run meet it."""

    name: str
    wanted: str
    measured: str
    met: bool | None  # None: not measured in this run


def check_targets(rows: Sequence[Row], memory: dict[str, Any] | None) -> list[Target]:
    """Compare the medians with the issue's targets (ours vs gunicorn, same run)."""
    def find(endpoint: str, conc: int) -> Row | None:
        for row in rows:
            if (row.endpoint, row.concurrency, row.server) == (endpoint, conc, "ours"):
                return row
        return None

    def fmt(x: float | None) -> str:
        return "n/a" if x is None else f"{x:.2f}{TIMES}"

    targets = []
    for endpoint, wanted in (("hello", TARGET_HELLO), ("probe", TARGET_PROBE)):
        concs = sorted({r.concurrency for r in rows if r.endpoint == endpoint})
        found = [(c, find(endpoint, c)) for c in concs]
        ratios = [(c, r.rps_ratio) for c, r in found if r is not None]
        met = None if not ratios or any(x is None for _, x in ratios) else \
            all(x >= wanted for _, x in ratios)  # type: ignore[operator]
        targets.append(Target(
            f"{endpoint} throughput vs gunicorn -k gevent",
            f"≥ {wanted:g}{TIMES} at every concurrency",
            ", ".join(f"c{c}: {fmt(x)}" for c, x in ratios) or "not measured", met))
    for endpoint in ("hello", "probe"):  # the latency target; io's p99 is in the table
        row = find(endpoint, 500)
        if row is None:
            continue
        met = None if row.p99_ratio is None else row.p99_ratio <= TARGET_P99
        targets.append(Target(
            f"{endpoint} p99 at 500 connections vs gunicorn", f"≤ {TARGET_P99:g}{TIMES}",
            fmt(row.p99_ratio), met))
    if memory:
        ours = memory.get("ours", {}).get("per_connection_bytes")
        theirs = memory.get(REFERENCE, {}).get("per_connection_bytes")
        met = None if ours is None or theirs is None else ours < theirs
        targets.append(Target(
            "RSS per idle keep-alive connection", "ours < gunicorn's",
            "n/a" if met is None else f"ours {ours / 1024:.1f} KiB, gunicorn "
                                      f"{theirs / 1024:.1f} KiB", met))
    return targets
