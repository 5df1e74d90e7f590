"""``python -m bench.server`` / ``python -m bench server``: the rounds, then the report.
"""

from __future__ import annotations

import argparse
import datetime
import importlib.metadata
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.server.matrix import (
    APPS,
    ENDPOINT_CONCURRENCY,
    ENDPOINT_SERVERS,
    ENDPOINTS,
    RESULTS,
    SERVERS,
)
from bench.server.memory import memory_test, raise_nofile
from bench.server.report import render_markdown, write_chart, write_json
from bench.server.servers import (
    Processes,
    check_accelerators,
    check_answer,
    display,
    pinned,
    server_command,
    wait_ready,
)
from bench.server.stats import check_targets, summarize
from bench.server.wrk import ensure_wrk, parse_wrk, run_wrk, wrk_command
from loadtests import procs


def _version(dist: str) -> str:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def machine_meta(wrk: str) -> dict[str, Any]:
    wrk_version = subprocess.run([wrk, "-v"], capture_output=True, text=True,
                                 check=False).stdout.split("\n")[0]
    match = re.search(r"wrk (\S+)", wrk_version)
    return {
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "nproc": os.cpu_count(),
        "cpu": procs.cpu_model(),
        "kernel": f"{platform.system()} {platform.release()}",
        "loadavg": " ".join(f"{x:.2f}" for x in os.getloadavg()),
        "versions": {
            "python": platform.python_version(),
            "gevent": _version("gevent"), "greenlet": _version("greenlet"),
            "gunicorn": _version("gunicorn"), "granian": _version("granian"),
            "waitress": _version("waitress"), "flask": _version("flask"),
            "httptools": _version("httptools"), "werkzeug": _version("werkzeug"),
            "wrk": match[1] if match else wrk_version.strip(),
        },
    }


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bench.server",
        description="Throughput, latency and idle-connection memory of our server next to "
                    "gunicorn -k gevent, granian, gevent.pywsgi and waitress (wrk on "
                    "127.0.0.1).")
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


def rotated(servers: Sequence[str], round_no: int) -> list[str]:
    """The servers' order in round ``round_no``: rotated by one each round, so that a noisy
    neighbour does not always hit the same server."""
    shift = round_no % len(servers)
    return [*servers[shift:], *servers[:shift]]


@dataclass
class Bench:
    """One benchmark run: its options, the processes it started, where logs go, and the
    metadata of the results file (which every step adds its exact commands to)."""

    args: argparse.Namespace
    processes: Processes
    logs: Path
    meta: dict[str, Any]
    server_cpu: int | None
    client_cpu: int | None
    done: int = 0

    def servers(self, endpoint: str, round_no: int = 0) -> list[str]:
        """The servers measured on ``endpoint`` in round ``round_no``, in their order."""
        wanted = ENDPOINT_SERVERS.get(endpoint, SERVERS)
        return [s for s in rotated(self.args.servers, round_no) if s in wanted]

    def concurrency(self, endpoint: str) -> list[int]:
        return list(ENDPOINT_CONCURRENCY.get(endpoint, self.args.concurrency))

    @property
    def total(self) -> int:
        return self.args.runs * sum(len(self.servers(e)) * len(self.concurrency(e))
                                    for e in self.args.endpoints)

    def measure(self, round_no: int, endpoint: str, server: str) -> list[dict[str, Any]]:
        """Start ``server`` afresh, check its answer, then warm-up + timed wrk runs at every
        concurrency; the server is stopped again whatever happens."""
        args = self.args
        port = procs.free_port()
        server_cmd = pinned(server_command(server, APPS[endpoint], port), self.server_cpu)
        self.meta["server_commands"][f"{server}, {endpoint}"] = \
            display(server_cmd).replace(f":{port}", ":PORT").replace(f" {port} ", " PORT ")
        log = self.logs / f"{server}-{endpoint}-{round_no}.log"
        proc = self.processes.start(server_cmd, log)
        runs = []
        try:
            wait_ready(proc, port, log)
            check_answer(endpoint, port)
            check_accelerators(server, port)
            for conc in self.concurrency(endpoint):
                if args.warmup > 0:
                    run_wrk(wrk_command(endpoint, port, conc, args.warmup, self.client_cpu),
                            args.warmup)
                    time.sleep(args.settle)
                cmd = wrk_command(endpoint, port, conc, args.duration, self.client_cpu)
                self.meta["wrk_command"] = display(cmd).replace(f":{port}", ":PORT")
                output = run_wrk(cmd, args.duration)
                result = parse_wrk(output)
                self.done += 1
                print(f"[{self.done}/{self.total}] round {round_no + 1} {endpoint:5} "
                      f"c{conc:<4} {server:9} {result.requests_per_sec:10,.0f} "
                      f"req/s  p50 {result.p50_ms or 0:7.2f} ms  p99 "
                      f"{result.p99_ms or 0:7.2f} ms  errors {result.errors}", flush=True)
                runs.append({"round": round_no + 1, "endpoint": endpoint,
                             "concurrency": conc, "server": server,
                             "result": result, "wrk_output": output})
        finally:
            self.processes.stop(proc)
        return runs

    def rounds(self) -> list[dict[str, Any]]:
        runs: list[dict[str, Any]] = []
        for round_no in range(self.args.runs):
            for endpoint in self.args.endpoints:
                for server in self.servers(endpoint, round_no):
                    runs += self.measure(round_no, endpoint, server)
        return runs

    def memory(self) -> dict[str, Any]:
        """RSS per idle keep-alive connection for ours and gunicorn (a failure is recorded,
        not raised: the throughput results stand without it)."""
        wanted = self.args.idle_connections
        memory: dict[str, Any] = {"_connections": wanted}
        limit = raise_nofile(wanted + 1000)
        count = min(wanted, max(limit - 1000, 0))
        if count < wanted:
            print(f"warning: RLIMIT_NOFILE allows only {count} idle connections", flush=True)
            memory["_connections"] = count
        for server in ("ours", "gunicorn"):
            try:
                entry, self.meta["memory_commands"][server] = memory_test(
                    server, count, self.processes, self.server_cpu, self.logs)
            except (OSError, RuntimeError) as exc:
                entry = {"error": str(exc).splitlines()[0]}
            memory[server] = entry
            print(f"memory {server:9} {entry}", flush=True)
        return memory


def write_results(results: Path, meta: dict[str, Any], runs: list[dict[str, Any]],
                  memory: dict[str, Any] | None) -> Path:
    """``server.md``, ``server.json`` and ``server.png`` under ``results``; the .md's path."""
    rows = summarize(runs)
    targets = check_targets(rows, memory)
    md = results / "server.md"
    md.write_text(render_markdown(rows, targets, meta, memory))
    write_json(results / "server.json", meta, runs, rows, targets, memory)
    write_chart(results / "server.png", rows, memory,
                f"{meta['date']} · nproc {meta['nproc']} · {meta['cpu']} · "
                f"median of {meta['runs']} runs")
    return md


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
    bench = Bench(args, Processes(), logs, meta, server_cpu, client_cpu)
    # Ctrl-C and TERM stop the run (and every server) even where SIGINT came in ignored,
    # as it does for a background job of a non-interactive shell.
    previous = signal.signal(signal.SIGTERM, _on_term)
    previous_int = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        runs = bench.rounds()
        memory = bench.memory() if args.idle_connections > 0 else None
    except KeyboardInterrupt:
        print("interrupted: stopping every server started", file=sys.stderr, flush=True)
        return 130
    finally:
        bench.processes.stop_all()
        signal.signal(signal.SIGTERM, previous)
        signal.signal(signal.SIGINT, previous_int)
    print(write_results(args.results, meta, runs, memory).read_text())
    return 0
