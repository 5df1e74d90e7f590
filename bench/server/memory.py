"""RSS per idle keep-alive connection: the worker's VmRSS before and after thousands of
connections, each with one answered request, held open.
"""

from __future__ import annotations

import contextlib
import resource
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from bench.server.matrix import APPS
from bench.server.servers import (
    READY_TIMEOUT,
    Processes,
    display,
    pinned,
    server_command,
    wait_ready,
)
from loadtests import procs


def worker_pid(server: str, proc: subprocess.Popen[bytes]) -> int:
    """The process that serves connections: the one child of a master, or the process."""
    if server not in ("ours", "gunicorn"):
        return proc.pid
    deadline = time.monotonic() + READY_TIMEOUT
    while time.monotonic() < deadline:
        children = procs.children_of(proc.pid)
        if children:
            return min(children)
        time.sleep(0.1)
    raise RuntimeError(f"{server}: no worker process")


def vm_rss(pid: int) -> int:
    """VmRSS of ``pid`` in bytes, from /proc/<pid>/status."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for {pid}")


def raise_nofile(wanted: int) -> int:
    """Raise this process's RLIMIT_NOFILE soft limit towards ``wanted``; children inherit it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft != resource.RLIM_INFINITY and soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        soft = target
    return soft


_REQUEST = b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"


def answered(sock: socket.socket) -> None:
    """Read the answer to :data:`_REQUEST`; it must be a 200."""
    response = procs.read_response(sock)
    if response.status != 200:
        raise ConnectionError(f"unexpected response {response.head[:200]!r}")


@contextlib.contextmanager
def idle_connections(port: int, count: int) -> Iterator[list[socket.socket]]:
    """Open ``count`` connections, one request answered on each, and keep them open."""
    socks: list[socket.socket] = []
    try:
        for _ in range(count):
            sock = socket.create_connection(("127.0.0.1", port), timeout=30)
            socks.append(sock)
            sock.sendall(_REQUEST)
            answered(sock)
        yield socks
    finally:
        for sock in socks:
            with contextlib.suppress(OSError):
                sock.close()


def memory_test(server: str, count: int, processes: Processes, cpu: int | None,
                logs: Path) -> tuple[dict[str, Any], str]:
    port = procs.free_port()
    command = pinned(server_command(server, APPS["hello"], port, memory_test=True), cpu)
    log = logs / f"memory-{server}.log"
    proc = processes.start(command, log)
    try:
        wait_ready(proc, port, log)
        pid = worker_pid(server, proc)
        with idle_connections(port, 20):  # warm-up: first connections and requests
            pass
        time.sleep(1.0)
        before = vm_rss(pid)
        with idle_connections(port, count) as socks:
            time.sleep(2.0)
            after = vm_rss(pid)
            # Still real keep-alive connections? A second request on a spread sample.
            sample = socks[:: max(1, len(socks) // 100)]
            alive = 0
            for sock in sample:
                with contextlib.suppress(OSError):
                    sock.sendall(_REQUEST)
                    answered(sock)
                    alive += 1
        return ({"connections": count, "worker_pid": pid, "rss_before": before,
                 "rss_after": after, "per_connection_bytes": (after - before) / count,
                 "alive_checked": len(sample), "alive_checked_ok": alive},
                display(command).replace(f":{port}", ":PORT"))
    finally:
        processes.stop(proc)
