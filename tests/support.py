"""Running real server processes for tests: start on a free 127.0.0.1 port, wait until
healthy, always stop (TERM, then KILL of the whole process group) and reap — no test leaves a
process behind, not even a worker that outlived its master."""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from loadtests import procs
from loadtests.procs import free_port
from loadtests.server_metrics import parse_samples

__all__ = [
    "ROOT",
    "ServerProcess",
    "free_port",
    "live_entries",
    "metric_values",
    "run_cli",
    "running_server",
    "wait_for_workers",
    "wait_healthy",
    "wait_no_live_entries",
    "worker_pids",
]

ROOT = Path(__file__).resolve().parent.parent


@dataclass
class ServerProcess:
    proc: subprocess.Popen[bytes]
    port: int
    log_path: Path
    args: list[str] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def connection(self, timeout: float = 10.0) -> http.client.HTTPConnection:
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)

    def get(self, path: str, headers: dict[str, str] | None = None,
            timeout: float = 10.0) -> tuple[int, dict[str, str], bytes]:
        conn = self.connection(timeout)
        try:
            conn.request("GET", path, headers=headers or {})
            resp = conn.getresponse()
            return resp.status, dict(resp.getheaders()), resp.read()
        finally:
            conn.close()

    def get_json(self, path: str, headers: dict[str, str] | None = None) -> Any:
        status, _, body = self.get(path, headers)
        assert status == 200, (status, body[:300])
        return json.loads(body)

    def metrics(self) -> str:
        return self.get("/metrics")[2].decode()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def signal(self, signum: int) -> None:
        self.proc.send_signal(signum)

    def wait(self, timeout: float) -> int:
        return self.proc.wait(timeout)

    def stop(self) -> int:
        """SIGTERM the master, SIGKILL its group after 20 s; the master's exit code."""
        return procs.stop_process_group(self.proc, 20.0)


def wait_healthy(server: ServerProcess, timeout: float = 20.0) -> None:
    try:
        procs.wait_healthy(f"{server.url}/healthz", server.proc, timeout=timeout)
    except procs.NotHealthy as exc:
        raise AssertionError(f"{exc}:\n{server.log()}") from None


@contextlib.contextmanager
def running_server(*args: str, tmp_path: Path, env: dict[str, str] | None = None,
                   workers: int = 1, port: int | None = None) -> Iterator[ServerProcess]:
    """``python -m server --bind 127.0.0.1:<free> --workers N *args`` for the block."""
    port = port or free_port()
    argv = [sys.executable, "-m", "server", "--bind", f"127.0.0.1:{port}",
            "--workers", str(workers), *args]
    with server_from_argv(argv, port, tmp_path, env=env) as server:
        yield server


@contextlib.contextmanager
def server_from_argv(argv: list[str], port: int, tmp_path: Path,
                     env: dict[str, str] | None = None, cwd: Path = ROOT,
                     unset: tuple[str, ...] = ()) -> Iterator[ServerProcess]:
    """A server started with exactly ``argv``, expected to answer on ``port``; ``unset``
    names variables of this environment it must not inherit (unless ``env`` sets them)."""
    log_path = tmp_path / f"server-{port}.log"
    full_env = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}
    for name in unset:
        if env is None or name not in env:
            full_env.pop(name, None)
    with open(log_path, "wb") as log:  # a session of its own: its group is its workers
        proc = subprocess.Popen(argv, cwd=cwd, stdout=log, stderr=subprocess.STDOUT,
                                env=full_env, start_new_session=True)
    server = ServerProcess(proc, port, log_path, argv)
    try:
        wait_healthy(server)
        yield server
    finally:
        server.stop()


def run_cli(*args: str, timeout: float = 20.0,
            env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run ``python -m server ARGS`` to completion (for start-up errors)."""
    return subprocess.run([sys.executable, "-m", "server", *args], cwd=ROOT, text=True,
                          capture_output=True, timeout=timeout,
                          env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})})


def metric_values(text: str, name: str) -> dict[str, float]:
    """``{labels: value}`` of one sample name from Prometheus text."""
    return parse_samples(text).get(name, {})


def worker_pids(server: ServerProcess) -> set[str]:
    """The worker pids /metrics reports (each worker samples itself at start)."""
    return set(metric_values(server.metrics(), "ctxserver_worker_rss_bytes"))


def wait_for_workers(server: ServerProcess, count: int, timeout: float = 10.0) -> set[str]:
    deadline = time.monotonic() + timeout
    pids = worker_pids(server)
    while len(pids) != count and time.monotonic() < deadline:
        time.sleep(0.05)
        pids = worker_pids(server)
    assert len(pids) == count, pids
    return pids


def live_entries(server: ServerProcess) -> float:
    """Live ctxlocal entries summed over every Local and worker (0 = nothing leaked)."""
    return sum(metric_values(server.metrics(), "ctxserver_ctxlocal_live_entries").values())


def wait_no_live_entries(server: ServerProcess, timeout: float = 5.0) -> float:
    """The live entries once they reached 0, or after ``timeout`` (the gauge lags a little)."""
    return procs.wait_for_zero(lambda: live_entries(server), timeout=timeout)
