"""Rounds into medians and same-run ratios, and the results files (``docker.md``,
``docker.json``): pure functions apart from the two writes.

Ratios, all of medians from the one run:

* *÷ host*: a server in a container over the same server on the host (the project's .venv);
* *÷ host, same Python*: over the same server on the host run by the very interpreter build
  the image has (the host-syspython rows, when measured) — the container's own cost;
* *x gunicorn*: a server over gunicorn -k gevent in the same place (host with host,
  container with container);
* *on ÷ off*: ours over ours with the accelerators off, in the same place;
* *published ÷ --network host*: ours behind a published port over ours in a container on
  the host's network: what Docker's networking alone costs.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from bench.container.commands import LABELS, PLACE_LABELS, PLACES, SERVERS, Config
from bench.server.matrix import ENDPOINTS, TIMES
from bench.server.stats import median, ratio
from bench.server.wrk import WrkResult

NONE = "\u2013"


@dataclass
class Row:
    """One (endpoint, config): medians over the rounds and the ratios of this run."""

    endpoint: str
    config: str
    rps: float | None
    p50_ms: float | None
    p99_ms: float | None
    errors: int
    rps_runs: list[float]
    vs_host: float | None = None
    vs_same_python: float | None = None  # containers: over host-syspython, same server
    vs_container: float | None = None  # published only: over the --network host container
    vs_gunicorn: float | None = None
    on_off: float | None = None


def _order(key: tuple[str, str]) -> tuple[int, int, int]:
    endpoint, config = key
    parsed = Config.parse(config)
    return (ENDPOINTS.index(endpoint) if endpoint in ENDPOINTS else len(ENDPOINTS),
            PLACES.index(parsed.place), SERVERS.index(parsed.server))


def summarize(samples: Sequence[dict[str, Any]]) -> list[Row]:
    """``samples``: dicts with ``endpoint``, ``config`` (a key) and ``result`` (a
    :class:`WrkResult` or its ``asdict``), one per timed run."""
    groups: dict[tuple[str, str], list[WrkResult]] = {}
    for sample in samples:
        result = sample["result"]
        if isinstance(result, dict):
            result = WrkResult(**result)
        groups.setdefault((sample["endpoint"], sample["config"]), []).append(result)
    rows = {key: Row(endpoint=key[0], config=key[1],
                     rps=median([r.requests_per_sec for r in results]),
                     p50_ms=median([r.p50_ms for r in results]),
                     p99_ms=median([r.p99_ms for r in results]),
                     errors=sum(r.errors for r in results),
                     rps_runs=[r.requests_per_sec for r in results])
            for key, results in groups.items()}

    def rps(endpoint: str, place: str, server: str) -> float | None:
        row = rows.get((endpoint, f"{place}/{server}"))
        return None if row is None else row.rps

    for (endpoint, key), row in rows.items():
        config = Config.parse(key)
        if config.place != "host":
            row.vs_host = ratio(row.rps, rps(endpoint, "host", config.server))
        if config.place in ("container", "published"):
            row.vs_same_python = ratio(row.rps, rps(endpoint, "host-syspython", config.server))
        if config.place == "published":
            row.vs_container = ratio(row.rps, rps(endpoint, "container", config.server))
        if config.server != "gunicorn":
            row.vs_gunicorn = ratio(row.rps, rps(endpoint, config.place, "gunicorn"))
        if config.server == "ours":
            row.on_off = ratio(row.rps, rps(endpoint, config.place, "ours-pure"))
    return [rows[key] for key in sorted(rows, key=_order)]


def _fmt(value: float | None, spec: str, suffix: str = "") -> str:
    return NONE if value is None else f"{value:{spec}}{suffix}"


def _find(rows: Sequence[Row], endpoint: str, config: str) -> Row | None:
    return next((r for r in rows if (r.endpoint, r.config) == (endpoint, config)), None)


#: The ratios a reader wants first: (what, config, which ratio of its row).
HEADLINE = (
    ("container ÷ host (.venv): ours", "container/ours", "vs_host"),
    ("… ours, accelerators off", "container/ours-pure", "vs_host"),
    ("… gunicorn -k gevent", "container/gunicorn", "vs_host"),
    ("container ÷ host with the image's Python build: ours", "container/ours",
     "vs_same_python"),
    ("… ours, accelerators off", "container/ours-pure", "vs_same_python"),
    ("… gunicorn -k gevent", "container/gunicorn", "vs_same_python"),
    ("host: the image's Python build ÷ .venv's: ours", "host-syspython/ours", "vs_host"),
    ("published port ÷ --network host: ours", "published/ours", "vs_container"),
    ("accelerators on ÷ off: host", "host/ours", "on_off"),
    ("… container", "container/ours", "on_off"),
    (f"ours {TIMES} gunicorn -k gevent: host", "host/ours", "vs_gunicorn"),
    ("… container", "container/ours", "vs_gunicorn"),
)


def headline(rows: Sequence[Row]) -> list[str]:
    """The HEADLINE ratios, one line each (those measured), one column per endpoint."""
    endpoints = list(dict.fromkeys(r.endpoint for r in rows))
    lines = ["| ratio (medians, same run) | " + " | ".join(endpoints) + " |",
             "|---|" + "---:|" * len(endpoints)]
    for what, config, field in HEADLINE:
        values = [getattr(_find(rows, e, config), field, None) for e in endpoints]
        if any(v is not None for v in values):
            lines.append(f"| {what} | "
                         + " | ".join(_fmt(v, ".2f", TIMES) for v in values) + " |")
    return lines


def render_markdown(rows: Sequence[Row], meta: dict[str, Any]) -> str:
    versions = ", ".join(f"{k} {v}" for k, v in meta["versions"].items())
    inside = ", ".join(f"{k} {v}" for k, v in meta.get("container", {}).items())
    lines = [
        "# The server in its Docker image next to the same server on the host",
        "",
        f"- command: `{meta['command']}`",
        f"- date: {meta['date']}",
        f"- machine: nproc {meta['nproc']}, {meta['cpu']}, {meta['kernel']}; load average "
        f"at start {meta['loadavg']} (a shared machine: only ratios from one run mean much)",
        f"- host: {versions}",
        f"- image: `{meta.get('image', '?')}` — {inside}",
        *(f"- Python build, {name}: `{build}`"
          for name, build in meta.get("interpreters", {}).items()),
        f"- docker: {meta.get('docker', '?')}",
        f"- method: one worker; the server pinned to core {meta['server_cpu']} (host: "
        "`taskset`; container: `--cpuset-cpus`), wrk (1 thread, "
        f"{meta['concurrency']} connections) to core {meta['client_cpu']}; per measurement "
        f"the server started afresh, its answer and its accelerators (`/metrics`) checked, "
        f"{meta['warmup']:g} s of warm-up, {meta['settle']:g} s of quiet, {meta['duration']:g} s "
        f"timed; {meta['runs']} round(s), the configs' order rotated each round; medians over the "
        "rounds, every ratio between medians of this run",
        "- the container rows use host networking (`--network host`): wrk reaches the server "
        "on 127.0.0.1 exactly as on the host, so *÷ host* is the container's own cost, not "
        "Docker's networking; the *published port* row is the Compose way (`-p "
        "127.0.0.1:PORT:8000`, the default bridge, docker-proxy in the path — unpinned, it "
        "runs on either core)",
        "",
        "## Ratios (same run)",
        "",
        *headline(rows),
        "",
        "## Every row",
        "",
        f"| endpoint | where | server | req/s (median) | ÷ host | {TIMES} gunicorn "
        "| on ÷ off | p50 ms | p99 ms | errors | req/s per round |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for row in rows:
        config = Config.parse(row.config)
        lines.append(
            f"| {row.endpoint} | {PLACE_LABELS[config.place]} | {LABELS[config.server]} "
            f"| {_fmt(row.rps, ',.0f')} | {_fmt(row.vs_host, '.2f', TIMES)} "
            f"| {_fmt(row.vs_gunicorn, '.2f', TIMES)} | {_fmt(row.on_off, '.2f', TIMES)} "
            f"| {_fmt(row.p50_ms, '.2f')} | {_fmt(row.p99_ms, '.2f')} | {row.errors} "
            f"| {', '.join(f'{x:,.0f}' for x in row.rps_runs)} |")
    lines += ["", "## Exact commands", ""]
    for name, text in meta.get("commands", {}).items():
        lines.append(f"- {name}: `{text}`")
    lines.append(f"- load: `{meta.get('wrk_command', '')}`")
    lines += ["", "Raw numbers (every run, wrk's own output): `bench/results/docker.json`.", ""]
    return "\n".join(lines)


def write_results(results: Path, meta: dict[str, Any],
                  samples: Sequence[dict[str, Any]]) -> Path:
    """``docker.md`` and ``docker.json`` under ``results``; the .md's path."""
    rows = summarize(samples)
    md = results / "docker.md"
    md.write_text(render_markdown(rows, meta))

    def plain(sample: dict[str, Any]) -> dict[str, Any]:
        out = dict(sample)
        if isinstance(out.get("result"), WrkResult):
            out["result"] = asdict(out["result"])
        return out

    data = {"meta": meta, "summary": [asdict(r) for r in rows],
            "runs": [plain(s) for s in samples]}
    (results / "docker.json").write_text(json.dumps(data, indent=1) + "\n")
    return md
