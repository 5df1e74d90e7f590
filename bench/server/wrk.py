"""Driving wrk and reading what it prints: one timed run, parsed into :class:`WrkResult`.

wrk is a system tool, not a Python package: when it is missing the benchmark says how to
install it (``apt-get install -y wrk``) and stops; it never installs anything itself.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import dataclass, field

from bench.server.matrix import HEADERS, PATHS
from bench.server.servers import pinned


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


INSTALL_WRK = "apt-get install -y wrk"
"""What to run when wrk is missing (Debian and Ubuntu package it as ``wrk``)."""


def ensure_wrk() -> str:
    """Path to wrk; when it is missing, exit non-zero with the command that installs it.

    Installing system packages is the operator's decision (it needs root, a package mirror,
    and changes the machine): a benchmark that runs apt-get by itself does all three behind
    one's back.
    """
    found = shutil.which("wrk")
    if found is None:
        raise SystemExit(f"bench server: wrk is not installed; install it with: {INSTALL_WRK}")
    return found
