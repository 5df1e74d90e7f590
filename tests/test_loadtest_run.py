"""The load test for real: ``python -m loadtests.run`` against a server it starts itself.

Two short runs, each through the runner as a subprocess, so the runner (server start, health
wait, locust, shutdown, exit code) is tested along with the locustfile and the verdict:

- the real run: 200 concurrent users over every probe variant for 15 s; zero leaks, zero other
  failures, and enough requests to mean something;
- the negative control: the unsafe endpoint under ``--expect-leaks`` for 8 s; it must be
  reported as leaking, or the detector is blind.

Both use ``--processes 2`` (a locust master and two workers), so the verdict that decides is
the master's, over errors merged from the workers.  Together they take about 35 s.
"""

from __future__ import annotations

import csv
import os
import re
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from loadtests.summary import parse_summary

ROOT = Path(__file__).resolve().parents[1]
RUN_TIMEOUT = 50.0
"""Seconds one run may take before the test stops it (it normally needs duration + ~4 s)."""

PROBE_NAMES = {"/probe/[token]", "/probe/[token] (Connection: close)", "/probe/[token]/stream",
               "/probe/[token]/error", "/probe/[token] (after error)",
               "/probe/[token]/fanout?children=4"}


def run_loadtest(*args: str) -> tuple[int, str]:
    """Run the runner to its end; on overrun stop it with SIGTERM so it stops its children."""
    runner = subprocess.Popen(
        [sys.executable, "-m", "loadtests.run", *args], cwd=ROOT, stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True,
        env={k: v for k, v in os.environ.items() if not k.startswith(("LOCUST_", "SERVER_"))})
    try:
        output, _ = runner.communicate(timeout=RUN_TIMEOUT)
    except subprocess.TimeoutExpired:
        runner.send_signal(signal.SIGTERM)  # the runner stops locust and the server
        output, _ = runner.communicate(timeout=30)
        pytest.fail(f"loadtests.run overran {RUN_TIMEOUT:g} s:\n{output[-4000:]}")
    finally:
        if runner.poll() is None:
            runner.kill()
            runner.wait()
    return runner.returncode, output


def assert_server_gone(output: str) -> None:
    """The server the runner started is stopped: its pid gone, its port closed."""
    match = re.search(r"server pid (\d+) on http://127\.0\.0\.1:(\d+)", output)
    assert match, output[-4000:]
    pid, port = int(match[1]), int(match[2])
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    with pytest.raises(ConnectionRefusedError), socket.create_connection(("127.0.0.1", port), 1):
        pass


def requests_by_name(stats_csv: Path) -> dict[str, int]:
    with stats_csv.open(newline="") as f:
        return {row["Name"]: int(row["Request Count"]) for row in csv.DictReader(f)}


@pytest.mark.slow
def test_no_request_sees_another_requests_context(tmp_path: Path) -> None:
    min_requests = 3000
    code, output = run_loadtest("--users", "200", "--spawn-rate", "200", "--duration", "15s",
                                "--processes", "2", "--min-requests", str(min_requests),
                                "--reports", str(tmp_path), "--name", "run")
    summary = parse_summary(output)
    assert summary, output[-4000:]
    assert (code, summary["verdict"]) == (0, "PASS"), output[-6000:]
    assert summary["leaks"] == "0" and summary["other_failures"] == "0"
    assert summary["expect_leaks"] == "0"
    assert int(summary["requests"]) > min_requests
    counts = requests_by_name(tmp_path / "run_stats.csv")
    assert counts.keys() >= PROBE_NAMES, counts
    assert all(counts[name] > 0 for name in PROBE_NAMES), counts
    assert "/unsafe/probe/[token]" not in counts
    assert_server_gone(output)


@pytest.mark.slow
def test_the_negative_control_is_caught_leaking(tmp_path: Path) -> None:
    min_requests = 500
    code, output = run_loadtest("--negative-control", "--users", "100", "--duration", "8s",
                                "--processes", "2", "--min-requests", str(min_requests),
                                "--reports", str(tmp_path), "--name", "control")
    summary = parse_summary(output)
    assert summary, output[-4000:]
    assert (code, summary["verdict"], summary["expect_leaks"]) == (0, "PASS", "1"), output[-6000:]
    assert int(summary["leaks"]) > 0
    assert int(summary["requests"]) > min_requests
    assert set(requests_by_name(tmp_path / "control_stats.csv")) == {
        "/unsafe/probe/[token]", "Aggregated"}
    # Grouped by kind: a handful of rows however many leaks. The unsafe endpoint can show at
    # most 5 kinds: its values another request's, none or its own, with or without a
    # left-over global, less the one clean combination.
    with (tmp_path / "control_failures.csv").open(newline="") as f:
        rows = list(csv.DictReader(f))
    assert 1 <= len(rows) <= 5, [row["Error"] for row in rows]
    assert sum(int(row["Occurrences"]) for row in rows) == int(summary["leaks"])
    assert all(row["Error"].startswith("CatchResponseError('LEAK ") for row in rows), rows
    # The tokens are in the report's leak detail (shipped from the workers to the master).
    report = (tmp_path / "control.html").read_text()
    assert re.search(r'<section id="leak-report"[^>]*>.*token [0-9a-f]{32}: values\.g',
                     report, re.S)
    assert_server_gone(output)
