"""Our server next to gunicorn -k gevent, gevent.pywsgi and waitress, driven by wrk.

``python -m bench server`` (part of ``make bench``) runs it with the defaults below;
``python -m bench.server --help`` takes flags, e.g. ``--duration 2 --warmup 1 --runs 1``
for a quick look. Never part of CI's pass/fail.

How (design.md sections 4-5):

* every server is started by this module on 127.0.0.1 (a free port), pinned to one core
  (``taskset -c 0``); ``wrk`` (one thread) is pinned to the other (``taskset -c 1``);
* servers: ours (``python -m server --workers 1 --access-log off``), ``gunicorn -k gevent
  -w 1`` (default worker_connections), ``gevent.pywsgi`` with TCP_NODELAY
  (``bench/pywsgi_runner.py``), waitress with 4 threads (connection limit raised to 1000 so
  that 500 connections are served at all — its default is 100);
* endpoints: *hello* — the same minimal WSGI callable for every server
  (``bench/apps.py:hello``) — and *probe* — the reference app's ``/probe/<token>?yields=0``
  with an ``X-Probe-Token`` header (``server.probe:create_app()`` for every server: full
  request context, werkzeug Request, JSON), each checked once for a correct answer first;
* concurrency 50 and 500 (``wrk -c``), each measurement a warm-up, a second of quiet
  (run straight after the warm-up, with its 500 connections still closing, every server
  showed a p99 tail of 0.5-3 s at 500 connections), then a timed run with ``--latency``;
  ``--runs`` rounds, each starting every server afresh, the servers' order rotating from
  round to round so that a noisy neighbour does not always hit the same one;
* reported: the median over the rounds of req/s, p50 and p99, and ratios to gunicorn
  -k gevent *from the same run* — absolute numbers on a shared machine mean little;
* memory: RSS of the one worker process before and after 10,000 idle keep-alive
  connections (one request made on each), for ours and gunicorn, both with keep-alive long
  enough and worker_connections ≥ 10,000.

Every process started here is stopped again (process group TERM, then KILL), also on
Ctrl-C or TERM. Results: ``bench/results/server.md`` (table, targets, machine, versions,
exact commands), ``server.json`` (every raw number and wrk's output) and ``server.png``.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import importlib.metadata
import json
import os
import platform
import re
import resource
import shlex
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from loadtests.run import free_port

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"

SERVERS = ("ours", "gunicorn", "pywsgi", "waitress")
REFERENCE = "gunicorn"  # ratios are taken against gunicorn -k gevent
LABELS = {
    "ours": "ours (python -m server)",
    "gunicorn": "gunicorn -k gevent",
    "pywsgi": "gevent.pywsgi + TCP_NODELAY",
    "waitress": "waitress, 4 threads",
}
ENDPOINTS = ("hello", "probe")
APPS = {"hello": "bench.apps:hello", "probe": "server.probe:create_app()"}
PROBE_TOKEN = "0123456789abcdef0123456789abcdef"
PATHS = {"hello": "/", "probe": f"/probe/{PROBE_TOKEN}?yields=0"}
HEADERS = {"hello": {}, "probe": {"X-Probe-Token": PROBE_TOKEN}}

#: The targets of the issue (design.md §5), checked against the medians, never adjusted.
TARGET_HELLO = 4.0  # hello req/s ≥ 4x gunicorn
TARGET_PROBE = 3.0  # probe req/s ≥ 3x gunicorn
TARGET_P99 = 0.5  # p99 at 500 connections ≤ ½ of gunicorn's

TIMES = "\u00d7"  # the multiplication sign of "4.00x" in the report
NONE = "\u2013"  # an en dash: no value
READY_TIMEOUT = 30.0
STOP_TIMEOUT = 15.0


# --------------------------------------------------------------------------- wrk output


@dataclass
class WrkResult:
    """The numbers of one wrk run (latencies in milliseconds)."""

    requests_per_sec: float
    requests: int
    duration_s: float
    latency_avg_ms: float | None = None
    p50_ms: float | None = None
    p75_ms: float | None = None
    p90_ms: float | None = None
    p99_ms: float | None = None
    socket_errors: dict[str, int] = field(default_factory=dict)
    non_2xx: int = 0

    @property
    def errors(self) -> int:
        """Failed requests: socket errors of every kind plus non-2xx/3xx answers."""
        return sum(self.socket_errors.values()) + self.non_2xx


_UNITS_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0, "h": 3_600_000.0}


def parse_duration_ms(text: str) -> float:
    """``"950.00us"``, ``"8.18ms"``, ``"1.02s"``, ``"2.00m"`` → milliseconds."""
    match = re.fullmatch(r"\s*([0-9.]+)\s*(us|ms|s|m|h)\s*", text)
    if match is None:
        raise ValueError(f"not a wrk duration: {text!r}")
    return float(match[1]) * _UNITS_MS[match[2]]


def parse_wrk(text: str) -> WrkResult:
    """Parse what ``wrk --latency`` prints; raises ValueError when it is not there."""
    rps = re.search(r"^Requests/sec:\s+([0-9.]+)", text, re.M)
    done = re.search(r"^\s*(\d+) requests in ([0-9.]+\w+),", text, re.M)
    if rps is None or done is None:
        raise ValueError("no wrk summary in the output:\n" + text[-2000:])
    result = WrkResult(
        requests_per_sec=float(rps[1]),
        requests=int(done[1]),
        duration_s=parse_duration_ms(done[2]) / 1000.0,
    )
    avg = re.search(r"^\s*Latency\s+([0-9.]+\w+)\s", text, re.M)
    if avg is not None:
        result.latency_avg_ms = parse_duration_ms(avg[1])
    for pct in (50, 75, 90, 99):
        match = re.search(rf"^\s*{pct}%\s+([0-9.]+\w+)\s*$", text, re.M)
        if match is not None:
            setattr(result, f"p{pct}_ms", parse_duration_ms(match[1]))
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)",
                       text)
    if errors is not None:
        result.socket_errors = {kind: int(n) for kind, n in
                                zip(("connect", "read", "write", "timeout"), errors.groups(),
                                    strict=True)}
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    if non_2xx is not None:
        result.non_2xx = int(non_2xx[1])
    return result


# --------------------------------------------------------------------------- statistics


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
    for row in rows:
        ref = reference.get((row.endpoint, row.concurrency))
        if ref is not None:
            row.rps_ratio = ratio(row.rps, ref.rps)
            row.p99_ratio = ratio(row.p99_ms, ref.p99_ms)
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
    for endpoint in ENDPOINTS:
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


# --------------------------------------------------------------------------- reporting


def _fmt(value: float | None, spec: str, suffix: str = "") -> str:
    return NONE if value is None else f"{value:{spec}}{suffix}"


def render_markdown(rows: Sequence[Row], targets: Sequence[Target], meta: dict[str, Any],
                    memory: dict[str, Any] | None) -> str:
    """The results file: how it was run, the table, the targets, the memory test."""
    lines = [
        "# Server benchmark: ours vs gunicorn -k gevent, gevent.pywsgi, waitress",
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
        f"| endpoint | conns | server | req/s (median) | {TIMES} gunicorn | p50 ms | p99 ms "
        "| p99 / gunicorn | errors | req/s per run |",
        "|---|---:|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for row in rows:
        lines.append(
            f"| {row.endpoint} | {row.concurrency} | {LABELS.get(row.server, row.server)} "
            f"| {_fmt(row.rps, ',.0f')} | {_fmt(row.rps_ratio, '.2f', TIMES)} "
            f"| {_fmt(row.p50_ms, '.2f')} | {_fmt(row.p99_ms, '.2f')} "
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
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cells = sorted({(r.endpoint, r.concurrency) for r in rows},
                   key=lambda c: (ENDPOINTS.index(c[0]) if c[0] in ENDPOINTS else 9, c[1]))
    servers = [s for s in SERVERS if any(r.server == s for r in rows)]
    by_key = {(r.endpoint, r.concurrency, r.server): r for r in rows}
    panels = 3 if memory else 2
    fig, axes = plt.subplots(1, panels, figsize=(6 * panels, 4.8))
    width = 0.8 / max(len(servers), 1)
    colors = {"ours": "#1f77b4", "gunicorn": "#d62728", "pywsgi": "#7f7f7f",
              "waitress": "#2ca02c"}
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


# --------------------------------------------------------------------------- processes


def server_command(server: str, app: str, port: int, *, memory_test: bool = False,
                   python: str = sys.executable) -> list[str]:
    """The command line that serves ``app`` with ``server`` on 127.0.0.1:``port``.

    ``memory_test``: keep idle connections open for an hour, with room for 10,000+ of them.
    """
    bind = f"127.0.0.1:{port}"
    if server == "ours":
        command = [python, "-m", "server", "--workers", "1", "--bind", bind,
                   "--access-log", "off", "--log-level", "warning"]
        if memory_test:
            command += ["--keep-alive", "3600", "--worker-connections", "12000"]
        return [*command, app]
    if server == "gunicorn":
        command = [python, "-m", "gunicorn", "-k", "gevent", "-w", "1", "-b", bind,
                   "--log-level", "warning"]
        if memory_test:
            command += ["--keep-alive", "3600", "--worker-connections", "12000"]
        return [*command, app]
    if server == "pywsgi":
        return [python, "-m", "bench.pywsgi_runner", bind, app]
    if server == "waitress":
        command = [python, "-m", "waitress", "--threads=4", f"--listen={bind}",
                   "--connection-limit=1000"]
        if app.endswith("()"):
            return [*command, "--call", app[:-2]]
        return [*command, app]
    raise ValueError(f"unknown server {server!r}")


def pinned(command: list[str], cpu: int | None) -> list[str]:
    return command if cpu is None else ["taskset", "-c", str(cpu), *command]


def display(command: Sequence[str]) -> str:
    """A command as one would type it from the repository root."""
    parts = list(command)
    for i, part in enumerate(parts):
        if part == sys.executable:
            with contextlib.suppress(ValueError):
                parts[i] = str(Path(part).relative_to(ROOT))
    return shlex.join(parts)


class Processes:
    """Every server process this benchmark started, so that all of them get stopped."""

    def __init__(self) -> None:
        self.running: list[subprocess.Popen[bytes]] = []

    def start(self, command: list[str], log: Path) -> subprocess.Popen[bytes]:
        env = dict(os.environ, PYTHONPATH=str(ROOT), PYTHONUNBUFFERED="1")
        with open(log, "wb") as out:
            proc = subprocess.Popen(command, cwd=ROOT, env=env, stdout=out,
                                    stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                    start_new_session=True)
        self.running.append(proc)
        return proc

    def stop(self, proc: subprocess.Popen[bytes]) -> None:
        """TERM the process group (master and workers), KILL what is left after a while."""
        try:
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGTERM)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(STOP_TIMEOUT)
            # Workers may outlive their master; the group is gone only when all are.
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(5)
        finally:
            if proc in self.running:
                self.running.remove(proc)

    def stop_all(self) -> None:
        for proc in list(self.running):
            self.stop(proc)


def http_get(port: int, path: str, headers: dict[str, str] | None = None,
             timeout: float = 5.0) -> tuple[int, bytes]:
    import http.client

    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", path, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def wait_ready(proc: subprocess.Popen[bytes], port: int, log: Path) -> None:
    deadline = time.monotonic() + READY_TIMEOUT
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}:\n"
                               + log.read_text(errors="replace")[-3000:])
        try:
            http_get(port, "/healthz", timeout=1.0)
            return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"server not answering on port {port} after {READY_TIMEOUT:g} s:\n"
                       + log.read_text(errors="replace")[-3000:])


def check_answer(endpoint: str, port: int) -> None:
    """One request before the timed runs: the server must answer the endpoint correctly."""
    status, body = http_get(port, PATHS[endpoint], HEADERS[endpoint])
    if status != 200:
        raise RuntimeError(f"{endpoint}: status {status}: {body[:300]!r}")
    if endpoint == "hello":
        if body != b"Hello, World!":
            raise RuntimeError(f"hello: unexpected body {body[:300]!r}")
        return
    payload = json.loads(body)
    values = payload["values"]
    wanted = {k: PROBE_TOKEN for k in ("path", "header", "g", "local", "stack", "threadlocal")}
    if payload["stale"] or {k: values.get(k) for k in wanted} != wanted:
        raise RuntimeError(f"probe answered wrongly: {payload}")


def wrk_command(endpoint: str, port: int, concurrency: int, seconds: float,
                cpu: int | None) -> list[str]:
    command = ["wrk", "-t1", f"-c{concurrency}", f"-d{seconds:g}s", "--timeout", "10s",
               "--latency"]
    for name, value in HEADERS[endpoint].items():
        command += ["-H", f"{name}: {value}"]
    return pinned([*command, f"http://127.0.0.1:{port}{PATHS[endpoint]}"], cpu)


def run_wrk(command: list[str], seconds: float) -> str:
    done = subprocess.run(command, capture_output=True, text=True, timeout=seconds + 60,
                          check=False)
    if done.returncode != 0:
        raise RuntimeError(f"wrk failed ({done.returncode}): {done.stderr or done.stdout}")
    return done.stdout


def ensure_wrk() -> str:
    """Path to wrk; installed with apt-get (as root) when missing."""
    found = shutil.which("wrk")
    if found:
        return found
    if os.geteuid() == 0 and shutil.which("apt-get"):
        print("wrk not found: installing it with apt-get", flush=True)
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        install = ["apt-get", "install", "-y", "--no-install-recommends", "wrk"]
        if subprocess.run(install, env=env, check=False).returncode != 0:
            subprocess.run(["apt-get", "update"], env=env, check=False)
            subprocess.run(install, env=env, check=False)
        found = shutil.which("wrk")
        if found:
            return found
    raise SystemExit("bench server: wrk is needed (apt-get install wrk) and could not be "
                     "installed")


# --------------------------------------------------------------------------- memory test


def worker_pid(server: str, proc: subprocess.Popen[bytes]) -> int:
    """The process that serves connections: the one child of a master, or the process."""
    if server not in ("ours", "gunicorn"):
        return proc.pid
    deadline = time.monotonic() + READY_TIMEOUT
    while time.monotonic() < deadline:
        children = Path(f"/proc/{proc.pid}/task/{proc.pid}/children").read_text().split()
        if children:
            return int(children[0])
        time.sleep(0.1)
    raise RuntimeError(f"{server}: no worker process")


def vm_rss(pid: int) -> int:
    """VmRSS of ``pid`` in bytes, from /proc/<pid>/status."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for {pid}")


def raise_nofile(wanted: int) -> int:
    """Raise this process's RLIMIT_NOFILE soft limit towards ``wanted``; children inherit it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft != resource.RLIM_INFINITY and soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        soft = target
    return soft


_REQUEST = b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"


def read_response(sock: socket.socket) -> bytes:
    """Read one Content-Length-framed response; returns its body."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("closed before the response head")
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = re.search(rb"(?im)^content-length:\s*(\d+)", head)
    if not head.startswith(b"HTTP/1.1 200") or length is None:
        raise ConnectionError(f"unexpected response {head[:200]!r}")
    while len(body) < int(length[1]):
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("closed in the middle of the body")
        body += chunk
    return body


@contextlib.contextmanager
def idle_connections(port: int, count: int) -> Iterator[list[socket.socket]]:
    """Open ``count`` connections, one request answered on each, and keep them open."""
    socks: list[socket.socket] = []
    try:
        for _ in range(count):
            sock = socket.create_connection(("127.0.0.1", port), timeout=30)
            socks.append(sock)
            sock.sendall(_REQUEST)
            read_response(sock)
        yield socks
    finally:
        for sock in socks:
            with contextlib.suppress(OSError):
                sock.close()


def memory_test(server: str, count: int, processes: Processes, cpu: int | None,
                logs: Path) -> tuple[dict[str, Any], str]:
    port = free_port()
    command = pinned(server_command(server, APPS["hello"], port, memory_test=True), cpu)
    log = logs / f"memory-{server}.log"
    proc = processes.start(command, log)
    try:
        wait_ready(proc, port, log)
        pid = worker_pid(server, proc)
        with idle_connections(port, 20):  # warm-up: first connections and requests
            pass
        time.sleep(1.0)
        before = vm_rss(pid)
        with idle_connections(port, count) as socks:
            time.sleep(2.0)
            after = vm_rss(pid)
            # Still real keep-alive connections? A second request on a spread sample.
            sample = socks[:: max(1, len(socks) // 100)]
            alive = 0
            for sock in sample:
                with contextlib.suppress(OSError):
                    sock.sendall(_REQUEST)
                    read_response(sock)
                    alive += 1
        return ({"connections": count, "worker_pid": pid, "rss_before": before,
                 "rss_after": after, "per_connection_bytes": (after - before) / count,
                 "alive_checked": len(sample), "alive_checked_ok": alive},
                display(command).replace(f":{port}", ":PORT"))
    finally:
        processes.stop(proc)


# --------------------------------------------------------------------------- the run


def _version(dist: str) -> str:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def _cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown CPU"


def machine_meta(wrk: str) -> dict[str, Any]:
    wrk_version = subprocess.run([wrk, "-v"], capture_output=True, text=True,
                                 check=False).stdout.split("\n")[0]
    match = re.search(r"wrk (\S+)", wrk_version)
    return {
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "nproc": os.cpu_count(),
        "cpu": _cpu_model(),
        "kernel": f"{platform.system()} {platform.release()}",
        "loadavg": " ".join(f"{x:.2f}" for x in os.getloadavg()),
        "versions": {
            "python": platform.python_version(),
            "gevent": _version("gevent"), "greenlet": _version("greenlet"),
            "gunicorn": _version("gunicorn"), "waitress": _version("waitress"),
            "httptools": _version("httptools"), "werkzeug": _version("werkzeug"),
            "wrk": match[1] if match else wrk_version.strip(),
        },
    }


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bench.server",
        description="Throughput, latency and idle-connection memory of our server next to "
                    "gunicorn -k gevent, gevent.pywsgi and waitress (wrk on 127.0.0.1).")
    parser.add_argument("--duration", type=float, default=6.0,
                        help="seconds of each timed wrk run (default: 6)")
    parser.add_argument("--warmup", type=float, default=2.0,
                        help="seconds of wrk before each timed run (default: 2)")
    parser.add_argument("--settle", type=float, default=1.0,
                        help="seconds of quiet after the warm-up, before the timed run "
                             "(default: 1)")
    parser.add_argument("--runs", type=int, default=3,
                        help="rounds; every server is measured once per round (default: 3)")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[50, 500],
                        help="wrk connection counts (default: 50 500)")
    parser.add_argument("--servers", nargs="+", choices=SERVERS, default=list(SERVERS),
                        help="servers to run (default: all; gunicorn is needed for ratios)")
    parser.add_argument("--endpoints", nargs="+", choices=ENDPOINTS, default=list(ENDPOINTS))
    parser.add_argument("--idle-connections", type=int, default=10_000,
                        help="connections of the memory test; 0 skips it (default: 10000)")
    parser.add_argument("--server-cpu", type=int, default=0)
    parser.add_argument("--client-cpu", type=int, default=1)
    parser.add_argument("--results", type=Path, default=RESULTS,
                        help="directory for server.md/.json/.png (default: bench/results)")
    return parser


def _on_term(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def main(command: str | None = None, argv: Sequence[str] | None = None) -> int:
    """Run the benchmark. ``python -m bench server`` calls ``main(command)`` (defaults);
    ``python -m bench.server [flags]`` parses its flags."""
    if command is None:
        argv = sys.argv[1:] if argv is None else argv
        command = display([sys.executable, "-m", "bench.server", *argv])
    args = build_parser().parse_args(list(argv or []))
    defaults = not argv
    wrk = ensure_wrk()
    pin = (os.cpu_count() or 1) >= 2 and shutil.which("taskset") is not None
    server_cpu = args.server_cpu if pin else None
    client_cpu = args.client_cpu if pin else None
    if not pin:
        print("warning: fewer than 2 cores or no taskset: server and wrk are not pinned",
              flush=True)
    meta = machine_meta(wrk)
    meta.update(command=command, defaults=defaults, duration=args.duration,
                warmup=args.warmup, settle=args.settle, runs=args.runs, server_cpu=server_cpu,
                client_cpu=client_cpu, server_commands={}, memory_commands={})
    args.results.mkdir(parents=True, exist_ok=True)
    logs = Path(os.environ.get("TMPDIR", "/tmp")) / f"bench-server-{os.getpid()}"
    logs.mkdir(parents=True, exist_ok=True)
    processes = Processes()
    # Ctrl-C and TERM stop the run (and every server) even where SIGINT came in ignored,
    # as it does for a background job of a non-interactive shell.
    previous = signal.signal(signal.SIGTERM, _on_term)
    previous_int = signal.signal(signal.SIGINT, signal.default_int_handler)
    runs: list[dict[str, Any]] = []
    memory: dict[str, Any] | None = None
    try:
        total = args.runs * len(args.endpoints) * len(args.servers) * len(args.concurrency)
        done = 0
        for round_no in range(args.runs):
            shift = round_no % len(args.servers)
            order = args.servers[shift:] + args.servers[:shift]
            for endpoint in args.endpoints:
                for server in order:
                    port = free_port()
                    server_cmd = pinned(server_command(server, APPS[endpoint], port),
                                        server_cpu)
                    meta["server_commands"][f"{server}, {endpoint}"] = \
                        display(server_cmd).replace(f":{port}", ":PORT")
                    log = logs / f"{server}-{endpoint}-{round_no}.log"
                    proc = processes.start(server_cmd, log)
                    try:
                        wait_ready(proc, port, log)
                        check_answer(endpoint, port)
                        for conc in args.concurrency:
                            if args.warmup > 0:
                                run_wrk(wrk_command(endpoint, port, conc, args.warmup,
                                                    client_cpu), args.warmup)
                                time.sleep(args.settle)
                            cmd = wrk_command(endpoint, port, conc, args.duration, client_cpu)
                            meta["wrk_command"] = display(cmd).replace(f":{port}", ":PORT")
                            output = run_wrk(cmd, args.duration)
                            result = parse_wrk(output)
                            done += 1
                            print(f"[{done}/{total}] round {round_no + 1} {endpoint:5} "
                                  f"c{conc:<4} {server:9} {result.requests_per_sec:10,.0f} "
                                  f"req/s  p50 {result.p50_ms or 0:7.2f} ms  p99 "
                                  f"{result.p99_ms or 0:7.2f} ms  errors {result.errors}",
                                  flush=True)
                            runs.append({"round": round_no + 1, "endpoint": endpoint,
                                         "concurrency": conc, "server": server,
                                         "result": result, "wrk_output": output})
                    finally:
                        processes.stop(proc)
        if args.idle_connections > 0:
            memory = {"_connections": args.idle_connections}
            limit = raise_nofile(args.idle_connections + 1000)
            count = min(args.idle_connections, max(limit - 1000, 0))
            if count < args.idle_connections:
                print(f"warning: RLIMIT_NOFILE allows only {count} idle connections",
                      flush=True)
                memory["_connections"] = count
            for server in ("ours", "gunicorn"):
                try:
                    entry, meta["memory_commands"][server] = memory_test(
                        server, count, processes, server_cpu, logs)
                except (OSError, RuntimeError) as exc:
                    entry = {"error": str(exc).splitlines()[0]}
                memory[server] = entry
                print(f"memory {server:9} {entry}", flush=True)
    except KeyboardInterrupt:
        print("interrupted: stopping every server started", file=sys.stderr, flush=True)
        return 130
    finally:
        processes.stop_all()
        signal.signal(signal.SIGTERM, previous)
        signal.signal(signal.SIGINT, previous_int)
    rows = summarize(runs)
    targets = check_targets(rows, memory)
    md = args.results / "server.md"
    md.write_text(render_markdown(rows, targets, meta, memory))
    write_json(args.results / "server.json", meta, runs, rows, targets, memory)
    write_chart(args.results / "server.png", rows, memory,
                f"{meta['date']} · nproc {meta['nproc']} · {meta['cpu']} · "
                f"median of {args.runs} runs")
    print(md.read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
