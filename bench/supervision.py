"""``python -m bench supervision``: what an operator sees under two faults, ours next to
gunicorn -k gevent, same app, same machine, same run.

* **Hang recovery**: one worker, ``--timeout T``; a view blocks the event loop — a CPU loop,
  or ``sleep(3)`` from libc through ctypes (a blocking C call gevent did not patch). A
  client polls with a fresh connection every 10 ms (0.5 s timeout each); the figure is the
  time from the blocking request to the first answer from a new worker.
* **Recycling**: one worker, ``--max-requests 100``; 10 clients on kept-alive connections
  (reconnecting only when told ``Connection: close``, or after an error) for D seconds;
  the figures are failed requests, worker pids seen, and the most requests one worker
  served — how far past its limit it went.

The app is ``tests/apps/blocking.py`` (what the supervision tests use). Results:
``bench/results/supervision.md``. ``python -m bench.supervision --help`` for the knobs.
"""

from __future__ import annotations

import argparse
import datetime
import http.client
import importlib.metadata
import json
import os
import platform
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench.server import ROOT, Processes, display
from loadtests.procs import cpu_model, free_port

RESULTS = ROOT / "bench" / "results"
APP = "tests.apps.blocking:app"
SERVERS = ("ours", "gunicorn")
LABELS = {"ours": "ctxserver", "gunicorn": "gunicorn -k gevent"}
HANGS = {"cpu loop": "/spin?s=120", "blocking C call": "/csleep?s=120"}
MAX_REQUESTS = 100
CLIENTS = 10


def command(server: str, port: int, *extra: str) -> list[str]:
    bind = f"127.0.0.1:{port}"
    if server == "ours":
        return [sys.executable, "-m", "server", APP, "--bind", bind, "--workers", "1",
                "--log-level", "warning", *extra]
    return [sys.executable, "-m", "gunicorn", "-k", "gevent", "-w", "1", "-b", bind,
            "--log-level", "warning", *extra, APP]


def _get_pid(port: int, timeout: float) -> int | None:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", "/pid", headers={"Connection": "close"})
        return json.loads(conn.getresponse().read())["pid"]
    except (OSError, http.client.HTTPException, ValueError):
        return None
    finally:
        conn.close()


def _wait_pid(port: int, timeout: float = 30.0) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pid = _get_pid(port, 1.0)
        if pid is not None:
            return pid
        time.sleep(0.05)
    raise RuntimeError(f"no answer on port {port} within {timeout:g} s")


def _fire(port: int, path: str) -> None:
    def run() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=300)
        try:
            conn.request("GET", path, headers={"X-Request-ID": "bench-hang"})
            conn.getresponse().read()
        except (OSError, http.client.HTTPException):
            pass
        finally:
            conn.close()

    threading.Thread(target=run, daemon=True).start()


def hang_recovery(server: str, path: str, timeout: int, port: int, processes: Processes,
                  log: Path, limit: float) -> float | None:
    """Seconds from the blocking request to the first answer from a new worker."""
    proc = processes.start(command(server, port, "--timeout", str(timeout)), log)
    try:
        before = _wait_pid(port)
        hung_at = time.monotonic()
        _fire(port, path)
        time.sleep(0.05)
        while time.monotonic() < hung_at + limit:
            pid = _get_pid(port, 0.5)
            if pid is not None and pid != before:
                return time.monotonic() - hung_at
            time.sleep(0.01)
        return None
    finally:
        processes.stop(proc)


def _client(port: int, until: float, out: list[tuple[int | None, bool]]) -> None:
    conn = None
    while time.monotonic() < until:
        if conn is None:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        try:
            conn.request("GET", "/pid")
            resp = conn.getresponse()
            pid = json.loads(resp.read())["pid"]
            out.append((pid, True))
            if (resp.getheader("Connection") or "").lower() == "close":
                conn.close()
                conn = None
        except (OSError, http.client.HTTPException, ValueError):
            out.append((None, False))
            conn.close()
            conn = None
    if conn is not None:
        conn.close()


def recycling(server: str, seconds: float, port: int, processes: Processes,
              log: Path) -> dict[str, Any]:
    proc = processes.start(command(server, port, "--max-requests", str(MAX_REQUESTS)), log)
    try:
        _wait_pid(port)
        results: list[tuple[int | None, bool]] = []
        until = time.monotonic() + seconds
        threads = [threading.Thread(target=_client, args=(port, until, results))
                   for _ in range(CLIENTS)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(seconds + 30)
    finally:
        processes.stop(proc)
    per_pid: dict[int, int] = {}
    for pid, ok in results:
        if ok and pid is not None:
            per_pid[pid] = per_pid.get(pid, 0) + 1
    return {"requests": len(results), "failed": sum(not ok for _, ok in results),
            "pids": len(per_pid), "max_per_pid": max(per_pid.values(), default=0)}


def _machine() -> dict[str, Any]:
    cpu = cpu_model()
    return {"date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
            "machine": f"{os.cpu_count()} x {cpu}, load {os.getloadavg()[0]:.2f}",
            "versions": {d: importlib.metadata.version(d)
                         for d in ("gevent", "greenlet", "gunicorn")}
            | {"python": platform.python_version()}}


def render(meta: dict[str, Any], hangs: dict[str, dict[str, list[float | None]]],
           recycle: dict[str, dict[str, Any]], args: argparse.Namespace) -> str:
    def fmt(values: list[float | None]) -> str:
        done = [v for v in values if v is not None]
        shown = ", ".join("—" if v is None else f"{v:.2f}" for v in values)
        median = f"**{statistics.median(done):.2f} s**" if len(done) == len(values) else \
            f"{len(values) - len(done)} of {len(values)} never recovered"
        return f"{median} ({shown})"

    lines = [f"# Supervision under faults: {LABELS['ours']} vs {LABELS['gunicorn']}", "",
             f"Run {meta['date']} on {meta['machine']} — `{meta['command']}` "
             f"({', '.join(f'{k} {v}' for k, v in meta['versions'].items())}).", "",
             f"## Hang recovery (one worker, `--timeout {args.timeout}`)", "",
             f"Seconds from a request that blocks the event loop to the first answer from a "
             f"new worker; median of {args.runs} (each run).", "",
             "| block | " + " | ".join(LABELS[s] for s in SERVERS) + " |",
             "|---|" + "---|" * len(SERVERS)]
    for kind in HANGS:
        lines.append(f"| {kind} | " + " | ".join(fmt(hangs[s][kind]) for s in SERVERS) + " |")
    lines += ["", f"## Recycling (one worker, `--max-requests {MAX_REQUESTS}`, {CLIENTS} "
                  f"keep-alive clients, {args.recycle_seconds:g} s)", "",
              "| | requests | failed | worker pids | most served by one worker |",
              "|---|---|---|---|---|"]
    for s in SERVERS:
        r = recycle[s]
        lines.append(f"| {LABELS[s]} | {r['requests']:,} | {r['failed']} | {r['pids']} | "
                     f"{r['max_per_pid']:,} |")
    lines += ["", "Servers (port chosen per run): " + "; ".join(
        f"`{display(c)}`" for c in meta["servers"]), ""]
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench.supervision", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--timeout", type=int, default=5, help="the servers' --timeout")
    parser.add_argument("--runs", type=int, default=3, help="hang runs per server and kind")
    parser.add_argument("--recycle-seconds", type=float, default=10.0)
    parser.add_argument("--servers", nargs="+", choices=SERVERS, default=list(SERVERS))
    parser.add_argument("--results", type=Path, default=RESULTS)
    return parser


def main(command_line: str | None = None, argv: Sequence[str] | None = None) -> int:
    """``python -m bench supervision`` passes its command line (and no options)."""
    if argv is None and command_line is not None:
        argv = []
    args = build_parser().parse_args(argv)
    processes = Processes()
    logs = Path(tempfile.mkdtemp(prefix="bench-supervision-"))  # the servers' output
    print(f"server logs in {logs}", flush=True)
    hangs: dict[str, dict[str, list[float | None]]] = {s: {} for s in SERVERS}
    recycle: dict[str, dict[str, Any]] = {}
    try:
        for kind, path in HANGS.items():
            for server in args.servers:
                hangs[server][kind] = [
                    hang_recovery(server, path, args.timeout, free_port(), processes,
                                  logs / f"{server}-hang.log", limit=args.timeout + 30)
                    for _ in range(args.runs)]
                print(f"hang ({kind}), {LABELS[server]}: {hangs[server][kind]}", flush=True)
        for server in args.servers:
            recycle[server] = recycling(server, args.recycle_seconds, free_port(), processes,
                                        logs / f"{server}-recycle.log")
            print(f"recycling, {LABELS[server]}: {recycle[server]}", flush=True)
    finally:
        processes.stop_all()
    if set(args.servers) != set(SERVERS):
        return 0  # a partial run prints, it does not overwrite the results
    meta = _machine()
    meta.update(command=command_line or display([sys.executable, "-m", "bench.supervision",
                                                 *(argv or sys.argv[1:])]),
                servers=[command(s, 0, *extra) for extra in
                         (("--timeout", str(args.timeout)), ("--max-requests", str(MAX_REQUESTS)))
                         for s in SERVERS])
    (args.results / "supervision.md").write_text(render(meta, hangs, recycle, args))
    (args.results / "supervision.json").write_text(json.dumps(
        {"meta": {k: v for k, v in meta.items() if k != "servers"}, "hangs": hangs,
         "recycling": recycle, "timeout": args.timeout}, indent=2, default=str) + "\n")
    print(f"wrote {args.results / 'supervision.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
