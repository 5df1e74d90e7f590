"""Group ``startup``: every start-up error is one line on stderr and exit code 2."""

from __future__ import annotations

import socket
import subprocess
from pathlib import Path

from tests.reliability.framework import case, expect, group
from tests.reliability.session import Session
from tests.reliability.wire import (
    HOST,
    fresh_probe,
)
from tests.support import (
    free_port,
    run_cli,
    running_server,
)

group("startup", "Start-up errors (one line on stderr, exit 2)", None)


def _one_line_exit_2(result: subprocess.CompletedProcess[str], must_contain: str) -> str:
    line = result.stderr.strip()
    got = f"exit {result.returncode}: {line[:150]!r}"
    expect(result.returncode == 2 and result.stderr.count("\n") == 1, got)
    expect(line.startswith("server: error: ") and must_contain in line, got)
    return got


@case("startup", "app raises at import", "one line, exit 2",
      covered_by="tests/test_server_lifecycle.py::test_app_that_fails_to_import_is_one_line_"
                 "and_exit_2")
def _import_error(sess: Session) -> str:
    result = run_cli("tests.apps.broken:app", "--bind", f"{HOST}:{free_port()}")
    return _one_line_exit_2(result, "RuntimeError: database unreachable")


@case("startup", "app raises at import with a multi-line message", "one line, exit 2")
def _import_error_multiline(sess: Session) -> str:
    result = run_cli("tests.apps.hostile_import_error:app", "--bind", f"{HOST}:{free_port()}")
    return _one_line_exit_2(result, "ValueError: first line")


@case("startup", "app factory raises with a multi-line message", "one line, exit 2")
def _factory_error_multiline(sess: Session) -> str:
    result = run_cli("tests.apps.hostile:broken_factory()", "--bind", f"{HOST}:{free_port()}")
    return _one_line_exit_2(result, "RuntimeError: first line")


@case("startup", "port in use (by a plain socket)", "one line, exit 2",
      covered_by="tests/test_server_lifecycle.py::test_port_in_use_is_a_clear_error")
def _port_in_use(sess: Session) -> str:
    with socket.socket() as taken:
        taken.bind((HOST, 0))
        taken.listen()
        result = run_cli("--bind", f"{HOST}:{taken.getsockname()[1]}")
    return _one_line_exit_2(result, "address already in use")


@case("startup", "port in use by a running server", "one line, exit 2; the first keeps serving")
def _port_in_use_by_server(sess: Session) -> str:
    with running_server(tmp_path=sess.tmp) as srv:
        result = run_cli("--bind", f"{HOST}:{srv.port}")
        got = _one_line_exit_2(result, "address already in use")
        expect("pid" in fresh_probe(srv.port), got + "; the first server stopped serving")
    return got + "; first server still serving"


@case("startup", "access log in a missing directory", "one line, exit 2",
      covered_by="tests/test_server_lifecycle.py::test_unwritable_access_log_is_a_clear_error")
def _log_missing_dir(sess: Session) -> str:
    result = run_cli("--access-log", str(sess.tmp / "missing-dir" / "access.log"))
    return _one_line_exit_2(result, "cannot open access log")


@case("startup", "access log path is a directory / read-only file system",
      "one line, exit 2 each")
def _log_unwritable(sess: Session) -> str:
    got = [_one_line_exit_2(run_cli("--access-log", str(sess.tmp)), "cannot open access log")]
    if Path("/proc/version").exists():  # read-only even for root
        got.append(_one_line_exit_2(run_cli("--access-log", "/proc/version"),
                                    "cannot open access log"))
    return "; ".join(got)
