"""Logs with real processes: --error-log and --access-log files reopened on USR1 by the
master and every worker, --capture-output, gunicorn's access-log atoms, and the JSON access
log naming the worker that served the request."""

from __future__ import annotations

import base64
import json
import os
import re
import signal
import time
from pathlib import Path

from tests.support import running_server, wait_for_workers

APP = "tests.apps.hooked:app"


def _wait_for(path: Path, pattern: str, timeout: float = 10.0) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        text = path.read_text() if path.exists() else ""
        if re.search(pattern, text):
            return text
        time.sleep(0.05)
    raise AssertionError(f"{pattern!r} never appeared in {path}:\n"
                         f"{path.read_text() if path.exists() else '(missing)'}")


def test_usr1_reopens_both_logs_in_the_master_and_every_worker(tmp_path):
    error_log, access_log = tmp_path / "error.log", tmp_path / "access.log"
    with running_server(APP, "--error-log", str(error_log), "--access-log", str(access_log),
                        tmp_path=tmp_path, workers=2) as srv:
        pids = {int(p.split('"')[1]) for p in wait_for_workers(srv, 2)}
        assert srv.get("/", {"X-Request-ID": "before-rotation"})[0] == 200
        _wait_for(access_log, "before-rotation")
        assert "worker" in error_log.read_text() and srv.log() == ""  # all in the file
        error_log.rename(tmp_path / "error.log.1")
        access_log.rename(tmp_path / "access.log.1")
        srv.signal(signal.SIGUSR1)
        text = _wait_for(error_log, "USR1: logs reopened")
        for pid in pids:
            text = _wait_for(error_log, f"worker {pid}: logs reopened")
        # every worker writes its access lines to the new file: ask each of them
        served: set[int] = set()
        deadline = time.monotonic() + 10
        while served != pids and time.monotonic() < deadline:
            served.add(srv.get_json("/", {"X-Request-ID": f"after-{len(served)}"})["pid"])
        assert served == pids
        _wait_for(access_log, "after-")
        assert "after-" not in (tmp_path / "access.log.1").read_text()
        assert "reopened" not in (tmp_path / "error.log.1").read_text()
        assert text


def test_capture_output_sends_the_apps_stdout_and_stderr_to_the_error_log(tmp_path):
    error_log = tmp_path / "error.log"
    with running_server(APP, "--error-log", str(error_log), "--capture-output",
                        tmp_path=tmp_path, workers=1) as srv:
        srv.get("/print", {"X-Request-ID": "cap-1"})
        _wait_for(error_log, "printed by the app cap-1")
        _wait_for(error_log, "written to fd 2 cap-1")
        assert "cap-1" not in srv.log()
        (error_log).rename(tmp_path / "error.log.1")
        srv.signal(signal.SIGUSR1)
        # the worker's line, not the master's (which it writes before it signals them)
        _wait_for(error_log, r"worker \d+: logs reopened")
        srv.get("/print", {"X-Request-ID": "cap-2"})
        _wait_for(error_log, "printed by the app cap-2")  # fds 1 and 2 follow the reopen


def test_without_capture_output_print_goes_to_stdout(tmp_path):
    error_log = tmp_path / "error.log"
    with running_server(APP, "--error-log", str(error_log), tmp_path=tmp_path) as srv:
        srv.get("/print", {"X-Request-ID": "nocap"})
        deadline = time.monotonic() + 5
        while "printed by the app nocap" not in srv.log() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert "printed by the app nocap" in srv.log()
        assert "nocap" not in error_log.read_text()


GUNICORN_DEFAULT = '%(h)s %(l)s %(u)s %(t)s "%(r)s" %(s)s %(b)s "%(f)s" "%(a)s"'


def test_access_log_format_with_gunicorn_atoms(tmp_path):
    access_log = tmp_path / "access.log"
    fmt = (GUNICORN_DEFAULT + " D=%(D)s L=%(L)s M=%(M)s T=%(T)s rid=%(request_id)s p=%(p)s"
           " m=%(m)s U=%(U)s q=%(q)s H=%(H)s B=%(B)s x=%({X-Custom}i)s host=%({HTTP_HOST}e)s"
           " o=%({Content-Type}o)s orid=%({x-request-id}o)s nope=%(nope)s")
    with running_server(APP, "--access-log", str(access_log), "--access-log-format", fmt,
                        tmp_path=tmp_path, workers=1) as srv:
        content_type = srv.get("/stream")[1]["Content-Type"]  # logged before atoms-1's line
        auth = base64.b64encode(b"alice:secret").decode()
        _, _, body = srv.get("/stream?a=1", {
            "X-Request-ID": "atoms-1", "Authorization": f"Basic {auth}",
            "Referer": "http://ref.example/", "User-Agent": "atom-agent/1.0",
            "X-Custom": "custom-value"})
        pid = json.loads(body)["pid"]
        line = _wait_for(access_log, "atoms-1").strip().splitlines()[-1]
    pattern = (r'127\.0\.0\.1 - alice \[\d\d/\w{3}/\d{4}:\d\d:\d\d:\d\d [+-]\d{4}\] '
               r'"GET /stream\?a=1 HTTP/1\.1" 200 (\d+) "http://ref\.example/" '
               r'"atom-agent/1\.0" D=(\d+) L=(\d+)\.(\d{6}) M=(\d+) T=0 rid=atoms-1 '
               rf'p=<{pid}> m=GET U=/stream q=a=1 H=HTTP/1\.1 B=(\d+) x=custom-value '
               rf'host=127\.0\.0\.1:{srv.port} o={re.escape(content_type)} '
               r'orid=atoms-1 nope=-')
    match = re.fullmatch(pattern, line)
    assert match, line
    size, micros, seconds, fraction, millis, size_b = match.groups()
    assert int(size) == int(size_b) == len(body)
    assert int(micros) == int(seconds) * 1_000_000 + int(fraction)
    assert int(millis) == int(micros) // 1000


def test_json_access_log_names_the_worker_that_served(tmp_path):
    access_log = tmp_path / "access.log"
    with running_server(APP, "--access-log", str(access_log), "--log-format", "json",
                        tmp_path=tmp_path, workers=2) as srv:
        served = {}
        for i in range(8):
            rid = f"json-{i}"
            served[rid] = srv.get_json("/", {"X-Request-ID": rid})["pid"]
        _wait_for(access_log, "json-7")
        lines = [json.loads(line) for line in access_log.read_text().splitlines()]
    logged = {entry["request_id"]: entry["pid"] for entry in lines
              if entry["request_id"] in served}
    assert logged == served and os.getpid() not in logged.values()
    assert srv.proc.pid not in logged.values()
