"""Locust as the background load of the fault cases: ``python -m loadtests.run`` against a
running server, always stopped, its summary and failure table read back."""

from __future__ import annotations

import csv
import os
import re
import subprocess
import sys
import time
from pathlib import Path

from loadtests.procs import stop_process_group
from loadtests.summary import parse_summary
from tests.reliability.framework import Mismatch
from tests.support import (
    ROOT,
    ServerProcess,
    metric_values,
)

LOCUST_USERS = 50
LOAD_SECONDS = 7


class LocustRun:
    """``python -m loadtests.run --host URL`` in the background; always stopped."""

    def __init__(self, url: str, tmp: Path, name: str, seconds: int = LOAD_SECONDS,
                 users: int = LOCUST_USERS) -> None:
        self.out = tmp / f"{name}-locust.out"
        self.name = name
        self.tmp = tmp
        env = {k: v for k, v in os.environ.items() if not k.startswith(("LOCUST_", "SERVER_"))}
        with open(self.out, "wb") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "loadtests.run", "--host", url, "-u", str(users),
                 "-r", str(users), "-t", f"{seconds}s", "-p", "0", "--min-requests", "1",
                 "--reports", str(tmp), "--name", name],
                cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
                start_new_session=True)  # its group: the runner and its locust

    def __enter__(self) -> LocustRun:
        return self

    def __exit__(self, *exc: object) -> None:
        stop_process_group(self.proc, 30.0)  # on TERM the runner stops locust itself

    def wait(self, timeout: float = 60) -> dict[str, str]:
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.__exit__()
        output = self.out.read_text(errors="replace")
        summary = parse_summary(output)
        if not summary:
            raise Mismatch(f"locust gave no summary: {output[-500:]}")
        return summary

    def failures(self) -> list[tuple[int, str]]:
        """(occurrences, error message) rows of locust's failure table."""
        path = self.tmp / f"{self.name}_failures.csv"
        if not path.exists():
            return []
        with path.open(newline="") as f:
            return [(int(r["Occurrences"]), locust_error(r["Error"]))
                    for r in csv.DictReader(f)]


#: ErrorThenProbeUser's own check that its probe reused the connection of the 500. A
#: draining worker rightly answers with ``Connection: close``, so during a reload it fails
#: without any request failing; such rows are counted apart.
REUSE_CHECK = "BAD RESPONSE connection:"


def locust_error(text: str) -> str:
    """The failure message inside locust's repr (``CatchResponseError('...')``)."""
    match = re.fullmatch(r"\w+\((['\"])(.*)\1\)", text.strip(), re.S)
    return match[2] if match else text


def describe_failures(rows: list[tuple[int, str]]) -> str:
    return "; ".join(f"{n}x {error[:70]}" for n, error in rows[:3])


def requests_total(srv: ServerProcess) -> float:
    return sum(metric_values(srv.metrics(), "ctxserver_requests_total").values())


def wait_for_load(srv: ServerProcess, locust: LocustRun, extra: int = 300,
                  timeout: float = 20) -> None:
    """Wait until locust is really sending (its start-up takes a few seconds)."""
    base = requests_total(srv)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if locust.proc.poll() is not None:
            raise Mismatch(f"locust ended early: {locust.out.read_text()[-500:]}")
        if requests_total(srv) - base >= extra:
            return
        time.sleep(0.2)
    raise Mismatch("locust never produced load")


def locust_verdict(summary: dict[str, str]) -> tuple[int, int, int]:
    return int(summary["requests"]), int(summary["leaks"]), int(summary["other_failures"])
