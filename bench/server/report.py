"""The results files: ``server.md`` (table, targets, memory, exact commands), ``server.json``
(every raw number and wrk's output) and ``server.png`` (bar charts).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from bench.server.matrix import ENDPOINTS, LABELS, SERVERS, TIMES
from bench.server.stats import Row, Target
from bench.server.wrk import WrkResult

NONE = "\u2013"  # an en dash: no value


def _fmt(value: float | None, spec: str, suffix: str = "") -> str:
    return NONE if value is None else f"{value:{spec}}{suffix}"


def render_markdown(rows: Sequence[Row], targets: Sequence[Target], meta: dict[str, Any],
                    memory: dict[str, Any] | None) -> str:
    """The results file: how it was run, the table, the targets, the memory test."""
    lines = [
        "# Server benchmark: ours vs gunicorn -k gevent, granian, gevent.pywsgi, waitress",
        "",
        f"- command: `{meta['command']}`" + (" (what `make bench` runs)"
                                             if meta.get("defaults") else ""),
        f"- date: {meta['date']}",
        f"- machine: nproc {meta['nproc']}, {meta['cpu']}, {meta['kernel']}; load average "
        f"at start {meta['loadavg']} (a shared machine: only ratios from one run mean much)",
        "- versions: " + ", ".join(f"{k} {v}" for k, v in meta["versions"].items()),
        f"- method: each server pinned to core {meta['server_cpu']}, wrk (1 thread) to core "
        f"{meta['client_cpu']}; per measurement a {meta['warmup']:g} s warm-up, "
        f"{meta.get('settle', 0):g} s of quiet (the warm-up's connections close: run "
        "straight after it, every server showed a p99 tail at 500 connections), then "
        f"{meta['duration']:g} s with `--latency`; {meta['runs']} rounds, every server "
        "started afresh in each and their order rotated; the table shows medians over the "
        "rounds, ratios are median / gunicorn's median of the same run",
        "",
        "## Throughput and latency",
        "",
        f"| endpoint | conns | server | req/s (median) | {TIMES} gunicorn | {TIMES} granian "
        "| p50 ms | p99 ms | p99 / gunicorn | errors | req/s per run |",
        "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for row in rows:
        lines.append(
            f"| {row.endpoint} | {row.concurrency} | {LABELS.get(row.server, row.server)} "
            f"| {_fmt(row.rps, ',.0f')} | {_fmt(row.rps_ratio, '.2f', TIMES)} "
            f"| {_fmt(row.ceiling_ratio, '.2f', TIMES)} | {_fmt(row.p50_ms, '.2f')} "
            f"| {_fmt(row.p99_ms, '.2f')} "
            f"| {_fmt(row.p99_ratio, '.2f', TIMES)} | {row.errors} "
            f"| {', '.join(f'{x:,.0f}' for x in row.rps_runs)} |")
    lines += ["", "## Targets (design.md §5, the issue)", "",
              "| target | wanted | measured | met |", "|---|---|---|---|"]
    for target in targets:
        verdict = "not measured" if target.met is None else ("yes" if target.met else "**no**")
        lines.append(f"| {target.name} | {target.wanted} | {target.measured} | {verdict} |")
    if memory:
        lines += ["", "## Memory: RSS per idle keep-alive connection", "",
                  f"{memory.get('_connections', '?')} connections opened from the benchmark "
                  "process, one request made on each (so each is a real keep-alive "
                  "connection), then held open idle; VmRSS of the worker process from "
                  "`/proc/<pid>/status` before and after.", "",
                  "| server | RSS before | RSS after | connections alive after | per connection |",
                  "|---|---:|---:|---:|---:|"]
        for name in SERVERS:
            entry = memory.get(name)
            if not entry:
                continue
            if entry.get("error"):
                lines.append(f"| {LABELS[name]} | {NONE} | {NONE} | {NONE} "
                             f"| failed: {entry['error']} |")
                continue
            lines.append(
                f"| {LABELS[name]} | {entry['rss_before'] / 2**20:.1f} MiB "
                f"| {entry['rss_after'] / 2**20:.1f} MiB "
                f"| {entry['alive_checked_ok']}/{entry['alive_checked']} checked "
                f"| {entry['per_connection_bytes'] / 1024:.1f} KiB |")
    lines += ["", "## Exact commands", ""]
    for name, command in meta.get("server_commands", {}).items():
        lines.append(f"- {name}: `{command}`")
    for name, command in meta.get("memory_commands", {}).items():
        lines.append(f"- memory test, {name}: `{command}`")
    lines.append(f"- load: `{meta.get('wrk_command', '')}`")
    lines += ["", "Raw numbers (every run, wrk's own output): `bench/results/server.json`; "
              "chart: `bench/results/server.png`.", ""]
    return "\n".join(lines)


def write_json(path: Path, meta: dict[str, Any], runs: Sequence[dict[str, Any]],
               rows: Sequence[Row], targets: Sequence[Target],
               memory: dict[str, Any] | None) -> None:
    def plain(run: dict[str, Any]) -> dict[str, Any]:
        out = dict(run)
        if isinstance(out.get("result"), WrkResult):
            out["result"] = asdict(out["result"])
        return out

    data = {"meta": meta, "summary": [asdict(r) for r in rows],
            "targets": [asdict(t) for t in targets], "memory": memory,
            "runs": [plain(r) for r in runs]}
    path.write_text(json.dumps(data, indent=1) + "\n")


def write_chart(path: Path, rows: Sequence[Row], memory: dict[str, Any] | None,
                title: str) -> None:
    """Bar charts: req/s and p99 per (endpoint, concurrency), one bar per server."""
    # Here, not at the top: the Agg backend (no display) must be chosen before pyplot is
    # imported, and only the chart needs matplotlib (half a second to import).
    import matplotlib  # noqa: PLC0415 - see above

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415 - after matplotlib.use

    cells = sorted({(r.endpoint, r.concurrency) for r in rows},
                   key=lambda c: (ENDPOINTS.index(c[0]) if c[0] in ENDPOINTS else 9, c[1]))
    servers = [s for s in SERVERS if any(r.server == s for r in rows)]
    by_key = {(r.endpoint, r.concurrency, r.server): r for r in rows}
    panels = 3 if memory else 2
    fig, axes = plt.subplots(1, panels, figsize=(6 * panels, 4.8))
    width = 0.8 / max(len(servers), 1)
    colors = {"ours": "#1f77b4", "ours-pure": "#9ecae1", "gunicorn": "#d62728",
              "granian": "#ff7f0e", "pywsgi": "#7f7f7f", "waitress": "#2ca02c"}
    for ax, metric, label in ((axes[0], "rps", "requests/s (median)"),
                              (axes[1], "p99_ms", "p99 latency, ms (median, log)")):
        for i, server in enumerate(servers):
            values = [getattr(by_key.get((e, c, server)), metric, None) or 0 for e, c in cells]
            xs = [j + (i - (len(servers) - 1) / 2) * width for j in range(len(cells))]
            bars = ax.bar(xs, values, width, label=LABELS.get(server, server),
                          color=colors.get(server))
            if metric == "rps" and server == "ours":
                for bar, (e, c) in zip(bars, cells, strict=True):
                    row = by_key.get((e, c, server))
                    if row is not None and row.rps_ratio is not None:
                        top = (bar.get_x() + bar.get_width() / 2, bar.get_height())
                        ax.annotate(f"{row.rps_ratio:.1f}{TIMES}", top, ha="center",
                                    va="bottom", fontsize=8)
        ax.set_xticks(range(len(cells)))
        ax.set_xticklabels([f"{e}\nc{c}" for e, c in cells])
        ax.set_ylabel(label)
        if metric == "p99_ms":
            ax.set_yscale("log")
        ax.grid(axis="y", alpha=0.3)
    axes[0].legend(fontsize=8)
    if memory:
        names = [s for s in SERVERS if memory.get(s, {}).get("per_connection_bytes")]
        axes[2].bar([LABELS[s] for s in names],
                    [memory[s]["per_connection_bytes"] / 1024 for s in names],
                    color=[colors[s] for s in names])
        axes[2].set_ylabel("RSS per idle keep-alive connection, KiB")
        axes[2].tick_params(axis="x", labelsize=8)
        axes[2].grid(axis="y", alpha=0.3)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
