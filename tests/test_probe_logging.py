"""The error probe's deliberate 500s cost one DEBUG line each; real app errors stay loud.

Under load the error probe raises hundreds of times a second; one traceback each buried every
real error (130,000 lines a minute in the compose web-UI flow).  Checked on a real server: the
log at the default level has no trace of them, at debug one line each, and a real exception
taking the same path through the server is still logged with its whole traceback.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.support import ServerProcess, running_server

APP = "tests.apps.probe_and_bug:app"
ERROR_PROBES = 5


def provoke(server: ServerProcess) -> None:
    for n in range(ERROR_PROBES):
        assert server.get(f"/probe/{n:032x}/error")[0] == 500
    assert server.get("/bug", {"X-Request-ID": "real-bug-1"})[0] == 500
    assert server.get("/probe/" + "f" * 32)[0] == 200  # and the worker serves on


def log_after(server: ServerProcess, needle: str) -> str:
    """The log once ``needle`` is in it (the worker writes it asynchronously)."""
    deadline = time.monotonic() + 10
    while needle not in (text := server.log()) and time.monotonic() < deadline:
        time.sleep(0.05)
    return text


@pytest.mark.parametrize("level", ["info", "warning"])
def test_deliberate_failures_leave_no_trace_at_normal_levels(tmp_path: Path, level: str) -> None:
    with running_server(APP, "--log-level", level, tmp_path=tmp_path) as server:
        provoke(server)
        log = log_after(server, "RealBug: a real bug")
    assert "ProbeFailure" not in log and "deliberate failure" not in log, log
    # The real bug: its message and its whole traceback, once.
    assert log.count("Traceback (most recent call last)") == 1, log
    assert "RealBug: a real bug" in log and 'raise RealBug("a real bug")' in log
    assert "GET /bug (request_id=real-bug-1)" in log, log  # logged with its request id


def test_at_debug_each_deliberate_failure_is_one_line(tmp_path: Path) -> None:
    with running_server(APP, "--log-level", "debug", tmp_path=tmp_path) as server:
        provoke(server)
        log = log_after(server, "RealBug: a real bug")
    lines = [line for line in log.splitlines() if "deliberate failure" in line]
    assert len(lines) == ERROR_PROBES, log
    assert all("DEBUG" in line and "/probe/" in line for line in lines), lines
    assert "ProbeFailure" not in log  # no traceback of it anywhere
    assert log.count("Traceback (most recent call last)") == 1, log
