"""The servers under test as processes: their command lines, starting, health, the one
correct answer each must give before it is timed, and stopping every one of them.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shlex
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from bench.apps import FLASK_JSON, HELLO
from bench.server.matrix import HEADERS, PATHS, PROBE_TOKEN, PURE_PYTHON_ENV, ROOT
from loadtests import procs
from loadtests.probe_check import check_probe_body, failure_message

READY_TIMEOUT = 30.0
#: granian's Python threads: enough for the I/O-bound scenario's 500 waiting requests (its
#: default, a few per core, would measure the pool size, not the server).
GRANIAN_THREADS = 512
STOP_TIMEOUT = 15.0


def server_command(server: str, app: str, port: int, *, memory_test: bool = False,
                   python: str = sys.executable) -> list[str]:
    """The command line that serves ``app`` with ``server`` on 127.0.0.1:``port``.

    ``memory_test``: keep idle connections open for an hour, with room for 10,000+ of them.
    """
    bind = f"127.0.0.1:{port}"
    if server == "ours":
        command = [python, "-m", "server", "--workers", "1", "--bind", bind,
                   "--access-log", "off", "--log-level", "warning"]
        if memory_test:
            command += ["--keep-alive", "3600", "--worker-connections", "12000"]
        return [*command, app]
    if server == "ours-pure":  # the same server with its C accelerators off
        return ["env", *PURE_PYTHON_ENV,
                *server_command("ours", app, port, memory_test=memory_test, python=python)]
    if server == "gunicorn":
        command = [python, "-m", "gunicorn", "-k", "gevent", "-w", "1", "-b", bind,
                   "--log-level", "warning"]
        if memory_test:
            command += ["--keep-alive", "3600", "--worker-connections", "12000"]
        return [*command, app]
    if server == "granian":  # Rust HTTP, the WSGI app in a pool of Python threads
        target, factory = (app[:-2], ["--factory"]) if app.endswith("()") else (app, [])
        return [python, "-m", "granian", "--interface", "wsgi", "--workers", "1",
                "--host", "127.0.0.1", "--port", str(port), "--blocking-threads",
                str(GRANIAN_THREADS), "--no-ws", "--log-level", "warning", *factory, target]
    if server == "pywsgi":
        return [python, "-m", "bench.pywsgi_runner", bind, app]
    if server == "waitress":
        command = [python, "-m", "waitress", "--threads=4", f"--listen={bind}",
                   "--connection-limit=1000"]
        if app.endswith("()"):
            return [*command, "--call", app[:-2]]
        return [*command, app]
    raise ValueError(f"unknown server {server!r}")


def pinned(command: list[str], cpu: int | None) -> list[str]:
    return command if cpu is None else ["taskset", "-c", str(cpu), *command]


def display(command: Sequence[str]) -> str:
    """A command as one would type it from the repository root."""
    parts = list(command)
    for i, part in enumerate(parts):
        if part == sys.executable:
            with contextlib.suppress(ValueError):
                parts[i] = str(Path(part).relative_to(ROOT))
    return shlex.join(parts)


class Processes:
    """Every server process this benchmark started, so that all of them get stopped."""

    def __init__(self) -> None:
        self.running: list[subprocess.Popen[bytes]] = []

    def start(self, command: list[str], log: Path) -> subprocess.Popen[bytes]:
        env = dict(os.environ, PYTHONPATH=str(ROOT), PYTHONUNBUFFERED="1")
        with open(log, "wb") as out:
            proc = subprocess.Popen(command, cwd=ROOT, env=env, stdout=out,
                                    stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                    start_new_session=True)
        self.running.append(proc)
        return proc

    def stop(self, proc: subprocess.Popen[bytes]) -> None:
        """TERM the process group (master and workers: not every server's workers follow
        their master's TERM), KILL what is left after a while."""
        try:
            procs.stop_process_group(proc, STOP_TIMEOUT, whole_group=True)
        finally:
            if proc in self.running:
                self.running.remove(proc)

    def stop_all(self) -> None:
        for proc in list(self.running):
            self.stop(proc)


def wait_ready(proc: subprocess.Popen[bytes], port: int, log: Path) -> None:
    """Until ``/healthz`` answers 200 (every app here answers it); the log's end if never."""
    try:
        procs.wait_healthy(f"http://127.0.0.1:{port}/healthz", proc, timeout=READY_TIMEOUT,
                           interval=0.1)
    except procs.NotHealthy as exc:
        raise RuntimeError(f"{exc}:\n" + log.read_text(errors="replace")[-3000:]) from None


#: Our C accelerators, as ``/metrics`` names them (``ctxserver_accelerator_active``).
ACCELERATORS = ("arena_cache", "ctxlocal_speedups")
_ACCELERATOR_LINE = re.compile(
    r'^ctxserver_accelerator_active\{name="(\w+)"\}\s+([0-9.eE+-]+)\s*$', re.M)


def accelerators_from_metrics(text: str) -> dict[str, bool]:
    """``ctxserver_accelerator_active{name=...}`` of a /metrics page, by name."""
    return {name: float(value) == 1.0 for name, value in _ACCELERATOR_LINE.findall(text)}


def check_accelerators(server: str, port: int) -> None:
    """"ours" must run both accelerators and "ours-pure" neither, as its worker reports in
    /metrics: run without ``make speedups`` (``python -m bench`` called directly in a fresh
    checkout), the "ours" row would be the pure path under the accelerated label."""
    if server not in ("ours", "ours-pure"):
        return
    status, body = procs.fetch(f"http://127.0.0.1:{port}/metrics")
    active = accelerators_from_metrics(body.decode("utf-8", "replace"))
    wanted = server == "ours"
    if status != 200 or any(active.get(name) is not wanted for name in ACCELERATORS):
        raise RuntimeError(
            f"{server}: expected every accelerator {'on' if wanted else 'off'}, /metrics says "
            f"{active or 'nothing'}" + (" (run `make speedups`; `make bench` does)"
                                        if wanted else ""))


def check_answer(endpoint: str, port: int) -> None:
    """One request before the timed runs: the server must answer the endpoint correctly.

    The probe is judged by the load test's own rules (``loadtests.probe_check``); this one
    request also sends the token as its ``X-Request-ID``, so every value the contract
    promises can be checked. The timed runs send exactly ``HEADERS`` (wrk's load is
    unchanged).
    """
    headers = dict(HEADERS[endpoint])
    if endpoint == "probe":
        headers["X-Request-ID"] = PROBE_TOKEN
    status, body = procs.fetch(f"http://127.0.0.1:{port}{PATHS[endpoint]}", headers=headers)
    if endpoint in ("hello", "io", "flask-hello"):
        if (status, body) != (200, HELLO):
            raise RuntimeError(f"{endpoint}: unexpected answer {status} {body[:300]!r}")
        return
    if endpoint == "flask-json":
        if status != 200 or json.loads(body) != FLASK_JSON:
            raise RuntimeError(f"flask-json: unexpected answer {status} {body[:300]!r}")
        return
    problem = failure_message(check_probe_body(PROBE_TOKEN, status,
                                               body.decode("utf-8", "replace")))
    if problem is not None:
        raise RuntimeError(f"probe answered wrongly: {problem}")
