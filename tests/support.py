"""Running real server processes for tests: start on a free 127.0.0.1 port, wait until
healthy, always stop (TERM, then KILL) and reap — no test leaves a process behind."""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from loadtests.run import free_port
from loadtests.server_metrics import parse_samples

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

    def stop(self) -> int | None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        return self.proc.returncode


def wait_healthy(server: ServerProcess, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.proc.poll() is not None:
            raise AssertionError(f"server exited with {server.proc.returncode}:\n{server.log()}")
        with contextlib.suppress(OSError, http.client.HTTPException):
            if server.get("/healthz", timeout=2)[0] == 200:
                return
        time.sleep(0.05)
    raise AssertionError(f"server not healthy after {timeout}s:\n{server.log()}")


@contextlib.contextmanager
def running_server(*args: str, tmp_path: Path, env: dict[str, str] | None = None,
                   workers: int = 1, port: int | None = None) -> Iterator[ServerProcess]:
    """``python -m server --bind 127.0.0.1:<free> --workers N *args`` for the block."""
    port = port or free_port()
    log_path = tmp_path / f"server-{port}.log"
    argv = [sys.executable, "-m", "server", "--bind", f"127.0.0.1:{port}",
            "--workers", str(workers), *args]
    full_env = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(argv, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
                                env=full_env)
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
