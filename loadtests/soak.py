"""``python -m loadtests.soak`` (``make soak``): a million probe requests, then a clean server.

On demand, never in CI.  It starts the server (2 workers), runs every probe variant with
``--users`` concurrent users until the server has answered ``--requests`` requests (or
``--max-duration`` passed), and then requires, besides locust's own verdict (zero leaks, zero
failures):

* zero live ctxlocal entries in ``/metrics`` once the load stopped — nothing leaked into
  storage that outlives requests;
* every worker's RSS grew less than ``--max-rss-growth`` (5 %) between the end of the warm-up
  (10 % of the requests) and the end — memory is flat;
* the workers are the ones measured at the start (none was restarted, which would hide growth).

The server runs with ``--log-level critical``: the error-then-probe users make the app raise on
purpose, and a million logged tracebacks would fill the disk.  Failures are still counted by
locust.
"""

from __future__ import annotations

import argparse
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from . import run
from .procs import fetch, wait_for_zero
from .server_metrics import parse_samples

POLL_SECONDS = 5.0
SETTLE_SECONDS = 15.0


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m loadtests.soak", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-u", "--users", type=int, default=1000,
                        help="concurrent users (default: 1000)")
    parser.add_argument("-n", "--requests", type=int, default=1_000_000,
                        help="requests the server must answer (default: 1,000,000)")
    parser.add_argument("--max-duration", default="60m",
                        help="locust's run-time cap, e.g. 60m (default: 60m)")
    parser.add_argument("-p", "--processes", type=int, default=2,
                        help="locust worker processes (default: 2)")
    parser.add_argument("--server-workers", type=int, default=2)
    parser.add_argument("--max-rss-growth", type=float, default=0.05,
                        help="allowed RSS growth per worker after warm-up (default: 0.05)")
    parser.add_argument("--reports", type=Path, default=run.REPORTS)
    args = parser.parse_args(argv)
    # what run.running_server / run.locust_command expect
    args.name = "soak"
    args.spawn_rate = min(float(args.users), 200.0)
    args.duration = args.max_duration
    args.min_requests = args.requests
    args.negative_control = False
    args.ready_timeout = 30.0
    args.locust_args = ["--loglevel", "WARNING"]
    args.server_args = ["--log-level", "critical"]
    return args


def scrape(url: str) -> dict[str, dict[str, float]]:
    """``{sample: {labels: value}}`` from the server's ``/metrics``."""
    status, body = fetch(f"{url}/metrics", timeout=10)
    if status != 200:
        raise OSError(f"/metrics answered {status}")
    return parse_samples(body.decode())


def live_entries(samples: dict[str, dict[str, float]]) -> float:
    """Live ctxlocal entries summed over every Local and worker (0: nothing outlived its
    request)."""
    return sum(samples.get("ctxserver_ctxlocal_live_entries", {}).values())


def answered(samples: dict[str, dict[str, float]]) -> int:
    return int(sum(samples.get("ctxserver_requests_total", {}).values()))


def rss_problems(baseline: dict[str, float] | None, rss: dict[str, float],
                 max_growth: float) -> list[str]:
    """What is wrong with the workers' RSS at the end against the warm-up's baseline."""
    if baseline is None:
        return ["never got past the warm-up; no RSS baseline"]
    problems = []
    if set(baseline) != set(rss):
        problems.append(f"workers changed during the soak: {sorted(baseline)} → {sorted(rss)}")
    for worker, before in baseline.items():
        after = rss.get(worker)
        if after is not None:
            growth = after / before - 1
            print(f"soak: worker {worker}: RSS {before / 2**20:.1f} → {after / 2**20:.1f} "
                  f"MiB ({growth:+.2%})", flush=True)
            if growth >= max_growth:
                problems.append(f"worker {worker} RSS grew {growth:.2%}")
    return problems


def load(args: argparse.Namespace, url: str, command: list[str]
         ) -> tuple[int, dict[str, float] | None]:
    """Run locust until the server answered ``args.requests``; (locust's exit code, the
    workers' RSS at the end of the warm-up, None if it never ended)."""
    locust = subprocess.Popen([part.replace("{host}", url) for part in command], cwd=run.ROOT)
    baseline: dict[str, float] | None = None
    try:
        while locust.poll() is None:
            time.sleep(POLL_SECONDS)
            samples = scrape(url)
            count = answered(samples)
            if baseline is None and count >= args.requests // 10:
                baseline = dict(samples.get("ctxserver_worker_rss_bytes", {}))
                print(f"soak: warm-up done at {count} requests; RSS baseline "
                      f"{ {k: round(v / 2**20, 1) for k, v in baseline.items()} } MiB",
                      flush=True)
            if count >= args.requests:
                print(f"soak: {count} requests answered; stopping the load", flush=True)
                locust.send_signal(signal.SIGTERM)
                break
        return locust.wait(), baseline
    except BaseException:
        run.finish_locust(locust, signal.SIGTERM)
        raise


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    args.reports.mkdir(parents=True, exist_ok=True)
    command = run.locust_command(args, "{host}")
    problems: list[str] = []
    started = time.monotonic()
    with run.running_server(args) as url:
        code, baseline = load(args, url, command)
        if code != 0:
            problems.append(f"locust verdict: exit code {code}")
        # In-flight requests end and the gauges refresh within the settle time.
        entries = wait_for_zero(lambda: live_entries(scrape(url)), timeout=SETTLE_SECONDS,
                                interval=1.0)
        final = scrape(url)
    count = answered(final)
    if count < args.requests:
        problems.append(f"only {count} requests answered (< {args.requests})")
    if entries != 0:
        problems.append(f"{entries:g} live ctxlocal entries after the load stopped")
    problems += rss_problems(baseline, final.get("ctxserver_worker_rss_bytes", {}),
                             args.max_rss_growth)
    minutes = (time.monotonic() - started) / 60
    verdict = "PASS" if not problems else "FAIL"
    print(f"SOAK SUMMARY verdict={verdict} requests={count} users={args.users} "
          f"live_entries={entries:g} minutes={minutes:.1f}", flush=True)
    for problem in problems:
        print(f"soak: FAIL: {problem}", file=sys.stderr)
    return 0 if not problems else 1


if __name__ == "__main__":
    sys.exit(main())
