"""``python -m loadtests.run``: the leak-probe load test in one command (``make loadtest``).

Without ``--host`` it starts the server itself on a free port of 127.0.0.1 (with
``--unsafe-probe`` for the negative control), waits for ``/healthz``, runs locust headless
against it and stops the server again — always, also on Ctrl-C, SIGTERM or an error — so a
run never leaves a process behind.  It exits with locust's exit code, which the verdict in
``loadtests/verdict.py`` sets (0 = pass).  Reports land in ``reports/<name>*``.

    python -m loadtests.run                                  # 200 users, 30 s, 2 processes
    python -m loadtests.run --users 1000 --duration 10m      # a soak
    python -m loadtests.run --negative-control               # the detector must fire
    python -m loadtests.run --host http://127.0.0.1:8000     # an already running server

Arguments after ``--`` go to locust unchanged.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from types import FrameType

from .procs import NotHealthy, fetch, free_port, stop_process_group, wait_for_zero, wait_healthy
from .server_metrics import live_after_run

ROOT = Path(__file__).resolve().parents[1]
LOCUSTFILE = ROOT / "loadtests" / "locustfile.py"
REPORTS = ROOT / "reports"

PROBE_USERS = ("KeepAliveProbeUser", "ConnectionCloseProbeUser", "StreamProbeUser",
               "ErrorThenProbeUser", "FanoutProbeUser", "RawProbeUser")
"""The user classes of a normal run (locust's class selection; a test keeps it in sync)."""
NEGATIVE_CONTROL_USERS = ("NegativeControlUser",)

SERVER_GRACE = 5.0
"""Seconds the server gets to stop after SIGTERM before its process group is killed."""
LOCUST_GRACE = 15.0
"""Seconds locust gets to write its reports after being told to stop."""
SETTLE_SECONDS = 5.0
"""After the load, how long ``/metrics``' live ctxlocal gauges get to return to 0 (they are
sampled once a second; orphan children of the last probes live a few ms more)."""


class ServerError(RuntimeError):
    """The server we started did not come up."""


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Options of the runner; everything after ``--`` is passed to locust."""
    parser = argparse.ArgumentParser(prog="python -m loadtests.run", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-u", "--users", type=int, default=200,
                        help="concurrent users, spread over the probe variants (default: 200)")
    parser.add_argument("-r", "--spawn-rate", type=float, default=None,
                        help="users started per second (default: all within one second)")
    parser.add_argument("-t", "--duration", default="30s",
                        help="locust run time, e.g. 15s, 10m (default: 30s)")
    parser.add_argument("-H", "--host", default=None,
                        help="base URL of a running server; default: start one on 127.0.0.1")
    parser.add_argument("-p", "--processes", type=int, default=2,
                        help="locust worker processes (0 = a single process; default: 2)")
    parser.add_argument("--negative-control", action="store_true",
                        help="probe /unsafe/probe/ with --expect-leaks: pass only if leaks "
                             "are found (the server must run with --unsafe-probe)")
    parser.add_argument("--min-requests", type=int, default=1000,
                        help="fail when fewer requests were made (default: 1000)")
    parser.add_argument("--server-workers", type=int, default=2,
                        help="workers of the server started here (default: 2)")
    parser.add_argument("--ready-timeout", type=float, default=30.0,
                        help="seconds to wait for the started server's /healthz (default: 30)")
    parser.add_argument("--name", default=None,
                        help="report name (default: loadtest or negative-control)")
    parser.add_argument("--reports", type=Path, default=REPORTS,
                        help="directory for the reports and the server log (default: reports/)")
    parser.add_argument("locust_args", nargs="*", metavar="-- LOCUST_ARGS",
                        help="extra arguments for locust")
    args = parser.parse_args(argv)
    args.name = args.name or ("negative-control" if args.negative_control else "loadtest")
    args.spawn_rate = args.spawn_rate or float(args.users)
    return args


def server_command(port: int, workers: int, unsafe_probe: bool) -> list[str]:
    """``python -m server`` serving the reference app on ``127.0.0.1:port``."""
    command = [sys.executable, "-m", "server", "--workers", str(workers),
               "--bind", f"127.0.0.1:{port}", "--graceful-timeout", str(SERVER_GRACE)]
    return command + (["--unsafe-probe"] if unsafe_probe else [])


def locust_command(args: argparse.Namespace, host: str) -> list[str]:
    """The headless locust run, reports under ``reports/<name>``."""
    command = [sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--headless",
               "--users", str(args.users), "--spawn-rate", str(args.spawn_rate),
               "--run-time", args.duration, "--host", host, "--only-summary",
               "--html", str(args.reports / f"{args.name}.html"),
               "--csv", str(args.reports / args.name),
               "--min-requests", str(args.min_requests)]
    if args.processes:
        command += ["--processes", str(args.processes)]
    if args.negative_control:
        command.append("--expect-leaks")
    users = NEGATIVE_CONTROL_USERS if args.negative_control else PROBE_USERS
    return command + list(args.locust_args) + list(users)


def healthz_ok(body: bytes) -> bool:
    """Our ``/healthz`` answers ``{"status": "ok"}``; anything else is not our server (yet)."""
    try:
        return json.loads(body).get("status") == "ok"
    except (ValueError, AttributeError):
        return False


def stop_server(server: subprocess.Popen[bytes]) -> None:
    """SIGTERM the master, wait, then SIGKILL whatever is left of its process group."""
    if stop_process_group(server, SERVER_GRACE + 5) == -signal.SIGKILL:
        print("loadtest: server ignored SIGTERM, killed it", file=sys.stderr)


@contextmanager
def running_server(args: argparse.Namespace) -> Iterator[str]:
    """Start the server for this run and yield its base URL; stop it on the way out."""
    port = free_port()
    log_path = args.reports / f"{args.name}-server.log"
    # SERVER_* settings of the caller's shell must not change which app or probe runs.
    env = {key: value for key, value in os.environ.items() if not key.startswith("SERVER_")}
    with open(log_path, "wb") as log:
        server = subprocess.Popen(
            server_command(port, args.server_workers, args.negative_control)
            + list(getattr(args, "server_args", ())),
            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        url = f"http://127.0.0.1:{port}"
        print(f"loadtest: server pid {server.pid} on {url} (log: {log_path})", flush=True)
        try:
            wait_healthy(f"{url}/healthz", server, timeout=args.ready_timeout,
                         accept=healthz_ok, interval=0.1)
        except NotHealthy as exc:
            raise ServerError(str(exc)) from None
        yield url
    finally:
        stop_server(server)


def live_after_load(url: str, timeout: float = SETTLE_SECONDS) -> float:
    """What ``/metrics`` still shows live once the load stopped (0 = nothing outlived its
    request); -1 when ``/metrics`` cannot be read (it is off, or not our server)."""
    def read() -> float:
        status, body = fetch(f"{url}/metrics")
        return live_after_run(body.decode()) if status == 200 else -1

    try:
        return wait_for_zero(read, timeout=timeout, interval=0.25)
    except (OSError, ValueError):
        return -1


def judge_after_load(code: int, live: float) -> int:
    """The run's exit code once ``/metrics`` was read after the load: a pass turns into a
    fail when values of ended requests are still held (locust could not see that)."""
    if live > 0:
        print(f"loadtest: FAIL: {live:g} live ctxlocal entries/contexts in /metrics after the "
              f"load stopped (values that outlived their request)", flush=True)
        return code or 1
    if live == 0:
        print("loadtest: /metrics after the load: 0 live ctxlocal entries/contexts", flush=True)
    else:
        print("loadtest: /metrics not readable after the load: not checked", flush=True)
    return code


class Terminated(Exception):
    """The runner got SIGTERM (CI, a test's timeout): stop everything it started."""


def finish_locust(locust: subprocess.Popen[bytes], forward: signal.Signals | None) -> None:
    """Let an interrupted locust write its reports and exit; kill it if it takes too long."""
    if forward is not None and locust.poll() is None:
        locust.send_signal(forward)
    try:
        locust.wait(LOCUST_GRACE)
    except subprocess.TimeoutExpired:
        locust.kill()
        locust.wait()


def run_locust(command: list[str]) -> int:
    """Run locust to the end and return its exit code; an interrupted runner stops it too.

    Ctrl-C in a terminal reaches locust directly (same process group), so locust is only
    waited for; SIGTERM reached the runner alone and is forwarded.
    """
    locust = subprocess.Popen(command, cwd=ROOT)
    try:
        return locust.wait()
    except KeyboardInterrupt:
        finish_locust(locust, None)
        raise
    except BaseException:
        finish_locust(locust, signal.SIGTERM)
        raise


def _interrupted(signum: int, _frame: FrameType | None) -> None:
    """First SIGINT/SIGTERM: raise, so every ``finally`` runs; ignore the ones that follow.

    A second Ctrl-C would otherwise abort the clean-up half-way and orphan the server, which
    runs in a session of its own; the clean-up is bounded in time anyway.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    if signum == signal.SIGINT:
        raise KeyboardInterrupt
    raise Terminated(f"signal {signum}")


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    args.reports.mkdir(parents=True, exist_ok=True)
    signal.signal(signal.SIGINT, _interrupted)
    signal.signal(signal.SIGTERM, _interrupted)
    started = time.monotonic()
    try:
        if args.host:
            code = run_locust(locust_command(args, args.host))
            if not args.negative_control:
                code = judge_after_load(code, live_after_load(args.host.rstrip("/")))
        else:
            with running_server(args) as url:
                code = run_locust(locust_command(args, url))
                if not args.negative_control:
                    code = judge_after_load(code, live_after_load(url))
    except ServerError as exc:
        log = args.reports / f"{args.name}-server.log"
        tail = log.read_text(errors="replace").splitlines()[-20:]
        print(f"loadtest: {exc}; the end of {log}:", *tail, sep="\n", file=sys.stderr)
        return 3
    except (KeyboardInterrupt, Terminated):
        print("loadtest: interrupted; locust and the server are stopped", file=sys.stderr)
        return 130
    code = code if code >= 0 else 128 - code  # killed by a signal → shell convention
    report = args.reports / args.name
    print(f"loadtest: locust exited with {code} after {time.monotonic() - started:.1f} s wall "
          f"time; reports in {report}.html and {report}_*.csv", flush=True)
    return code


if __name__ == "__main__":
    sys.exit(main())
