"""Where a worker's time goes on the hello and probe paths: py-spy samples of our one
worker while wrk drives it, folded into the top frames.

``python -m bench.profile [--endpoints hello probe] [--seconds 8]``: for each endpoint it
starts ``python -m server --workers 1`` pinned to core 0 (as ``bench.server`` does), drives
it with ``wrk -c50`` from core 1, and records the worker with ``py-spy record --rate 500
--nonblocking --format raw`` (collapsed stacks; ``--nonblocking``: the worker is never
paused, so the profile does not slow what it measures).  Reported per endpoint: the
throughput under the profiler, then the top frames by *self* time (the sampled leaf: where
the CPU was) and by *inclusive* time (a frame anywhere on the stack), as shares of the
samples that caught the worker running (py-spy leaves out idle ones: waiting in epoll).
Writes ``bench/results/profile.md``.  Needs py-spy (requirements-dev.txt) and ptrace rights.
"""

from __future__ import annotations

import argparse
import datetime
import os
import re
import shutil
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

from bench.server.matrix import APPS, RESULTS
from bench.server.servers import (
    Processes,
    check_accelerators,
    check_answer,
    display,
    pinned,
    server_command,
    wait_ready,
)
from bench.server.wrk import ensure_wrk, parse_wrk, wrk_command
from loadtests import procs

TOP = 25
RATE = 500
#: py-spy from the venv (requirements-dev.txt) when the venv is not on PATH.
PY_SPY = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")


def fold(raw: str) -> tuple[Counter[str], Counter[str], int]:
    """Self and inclusive sample counts per frame from py-spy's collapsed stacks."""
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    for line in raw.splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        total += n
        frames = [_short(f) for f in stack.split(";")]
        own[frames[-1]] += n
        for frame in set(frames):
            inclusive[frame] += n
    return own, inclusive, total


def _short(frame: str) -> str:
    """``function (path:line)`` -> ``function (file)``: lines would split one function."""
    match = re.match(r"(.*) \((.*?)(?::\d+)?\)$", frame)
    if not match:
        return frame
    name, path = match.groups()
    for marker in ("site-packages/", "/work/", "lib/python3"):
        if marker in path:
            path = path.split(marker, 1)[1]
    parts = path.split("/")
    return f"{name} ({'/'.join(parts[-2:])})"


def _worker_pid(master: int, timeout: float = 10.0) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = subprocess.run(["pgrep", "-P", str(master)], capture_output=True, text=True,
                               check=False).stdout.split()
        if found:
            return int(found[0])
        time.sleep(0.1)
    raise RuntimeError(f"no worker of master {master}")


def profile(endpoint: str, seconds: float, processes: Processes, logs: Path) -> dict:
    port = procs.free_port()
    command = pinned(server_command("ours", APPS[endpoint], port), 0)
    log = logs / f"profile-{endpoint}.log"
    proc = processes.start(command, log)
    try:
        wait_ready(proc, port, log)
        check_answer(endpoint, port)
        check_accelerators("ours", port)  # the profile is of the accelerated worker
        worker = _worker_pid(proc.pid)
        load = subprocess.Popen(wrk_command(endpoint, port, 50, seconds + 3, 1),
                                stdout=subprocess.PIPE, text=True)
        time.sleep(1.5)
        out = logs / f"profile-{endpoint}.txt"
        spy = [PY_SPY, "record", "--pid", str(worker), "--duration", str(int(seconds)),
               "--rate", str(RATE), "--nonblocking", "--format", "raw", "--output", str(out)]
        subprocess.run(spy, check=True, capture_output=True)
        wrk_out, _ = load.communicate(timeout=seconds + 30)
        own, inclusive, total = fold(out.read_text())
        return {"endpoint": endpoint, "rps": parse_wrk(wrk_out).requests_per_sec,
                "own": own, "inclusive": inclusive, "total": total,
                "server": display(command).replace(f":{port}", ":PORT"),
                "spy": display(spy).replace(str(worker), "WORKER").replace(str(out), "OUT")}
    finally:
        processes.stop(proc)


def render(results: Sequence[dict], seconds: float, command: str) -> str:
    lines = ["# Profiles of the hot path (py-spy)", "",
             f"- command: `{command}`",
             f"- date: {datetime.datetime.now(datetime.UTC).strftime('%Y-%m-%d %H:%M UTC')}",
             f"- method: one worker pinned to core 0, `wrk -c50` on core 1, py-spy sampling "
             f"the worker at {RATE} Hz for {seconds:g} s without pausing it; shares of the "
             "samples that caught it running (idle ones left out)", ""]
    for res in results:
        lines += [f"## {res['endpoint']}: {res['rps']:,.0f} req/s under the profiler, "
                  f"{res['total']:,} samples", "",
                  f"- server: `{res['server']}`", f"- profiler: `{res['spy']}`", "",
                  "| self % | frame | | inclusive % | frame |", "|---:|---|---|---:|---|"]
        own = res["own"].most_common(TOP)
        inc = res["inclusive"].most_common(TOP)
        for i in range(TOP):
            left = (f"{100 * own[i][1] / res['total']:.1f} | `{own[i][0]}`"
                    if i < len(own) else " | ")
            right = (f"{100 * inc[i][1] / res['total']:.1f} | `{inc[i][0]}`"
                     if i < len(inc) else " | ")
            lines.append(f"| {left} | | {right} |")
        lines.append("")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None, command: str | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.profile", description=__doc__)
    parser.add_argument("--endpoints", nargs="+", default=["hello", "probe"],
                        choices=["hello", "probe"])
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--output", type=Path, default=RESULTS / "profile.md")
    args = parser.parse_args(argv)
    if not Path(PY_SPY).exists():
        print("py-spy is not installed (requirements-dev.txt)", file=sys.stderr)
        return 1
    ensure_wrk()
    logs = Path("/tmp") / f"bench-profile-{os.getpid()}"
    logs.mkdir(parents=True, exist_ok=True)
    processes = Processes()
    try:
        results = [profile(e, args.seconds, processes, logs) for e in args.endpoints]
    finally:
        processes.stop_all()
    command = command or display([sys.executable, "-m", "bench.profile",
                                  *(sys.argv[1:] if argv is None else argv)])
    report = render(results, args.seconds, command)
    args.output.write_text(report)
    print(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
