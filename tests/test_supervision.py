"""Supervision with real processes and signals: the watchdog (``--timeout``), the early
warning (``--block-warning``), signals (USR1, TTIN/TTOU, USR2/WINCH/others, HUP/TERM with
``--graceful-timeout``), recycling (``--max-requests``), per-worker import vs ``--preload``,
boot failures. Each fault runs next to a well-behaved client (:class:`Neighbour`) that must
keep being served; timeouts are short (``--timeout 2``) so the module stays fast."""

from __future__ import annotations

import http.client
import json
import os
import re
import signal
import threading
import time
from pathlib import Path

import pytest

from tests.neighbour import Neighbour
from tests.support import free_port, run_cli, running_server, wait_for_workers, worker_pids

BLOCKING = "tests.apps.blocking:app"
TIMEOUT = 2.0
#: The blocking lines of tests/apps/blocking.py a timeout report must point at.
BLOCKING_LINES = {
    "cpu": ("spin", "while time.monotonic() < end:"),
    "c": ("c_sleep", "_libc.sleep(int(seconds))"),
}
HANG_PATH = {"cpu": "/spin?s=60", "c": "/csleep?s=60"}


def _line_of(function: str, code: str) -> int:
    lines = (Path(__file__).parent / "apps" / "blocking.py").read_text().splitlines()
    return next(i for i, line in enumerate(lines, 1) if code in line)


def _send_and_forget(port: int, path: str, request_id: str) -> threading.Thread:
    """A request that will hang its worker; its own outcome does not matter."""

    def run() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=TIMEOUT + 10)
        try:
            conn.request("GET", path, headers={"X-Request-ID": request_id})
            conn.getresponse().read()
        except (OSError, http.client.HTTPException):
            pass
        finally:
            conn.close()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def _pid(srv) -> int:
    return srv.get_json("/pid")["pid"]


def _wait_for_log(srv, pattern: str, timeout: float) -> re.Match[str] | None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = re.search(pattern, srv.log())
        if found:
            return found
        time.sleep(0.05)
    return re.search(pattern, srv.log())


# ------------------------------------------------------------------------------ watchdog


@pytest.mark.parametrize("workers", [1, 2])
@pytest.mark.parametrize("kind", ["cpu", "c"])
def test_hung_worker_is_replaced_within_timeout_with_its_stack_in_the_log(tmp_path, kind,
                                                                        workers):
    with running_server(BLOCKING, "--timeout", str(TIMEOUT), tmp_path=tmp_path,
                        workers=workers) as srv:
        before = {int(p.split('"')[1]) for p in wait_for_workers(srv, workers)}
        with Neighbour(srv.port, timeout=TIMEOUT + 8) as neighbour:
            time.sleep(0.3)
            with neighbour.paused():
                hung_at = time.monotonic()
                _send_and_forget(srv.port, HANG_PATH[kind], f"hang-{kind}")
                time.sleep(0.2)  # the hang has begun: its worker accepts nothing more
            replaced = neighbour.wait_for_new_pid(before, hung_at + TIMEOUT + 5)
            time.sleep(0.3)  # and it keeps serving
        log = srv.log()
    assert replaced is not None, log
    assert replaced.ended - hung_at <= TIMEOUT + 2, (replaced.ended - hung_at, log)
    # Nobody else noticed: with two workers the other one served throughout, with one the
    # neighbour's requests waited in the listen backlog for the replacement.
    assert neighbour.failures == [], neighbour.failures[:3]
    function, code = BLOCKING_LINES[kind]
    report = re.search(r"WORKER TIMEOUT: worker (\d+) stopped answering.*?(?=\n\d{4}-|\Z)",
                       log, re.S)  # up to the next log record
    assert report, log
    assert int(report[1]) in before
    assert f"--timeout {TIMEOUT:g}" in report[0] and f"hang-{kind} (" in report[0]
    line = _line_of(function, code)
    assert f'tests/apps/blocking.py", line {line} in {function}' in report[0], report[0]


def test_timeout_0_disables_the_watchdog(tmp_path):
    with running_server(BLOCKING, "--timeout", "0", tmp_path=tmp_path) as srv:
        pid = _pid(srv)
        started = time.monotonic()
        status, _, _ = srv.get("/spin?s=2.5", timeout=10)
        assert status == 200 and time.monotonic() - started >= 2.5
        assert _pid(srv) == pid
        assert "WORKER TIMEOUT" not in srv.log()


def test_a_worker_stuck_at_import_is_a_boot_failure_with_its_stack(tmp_path):
    result = run_cli("tests.apps.hangs_at_import:app", "--bind", f"127.0.0.1:{free_port()}",
                     "--timeout", "1", timeout=20)
    assert result.returncode == 2, result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert re.fullmatch(r"server: error: worker \d+ did not finish booting within --timeout "
                        r"1 s \(its stack is in the log above\)", last), result.stderr
    assert "did not finish booting" in result.stderr
    assert 'tests/apps/hangs_at_import.py", line' in result.stderr


def test_block_warning_logs_the_blocking_stack_and_kills_nothing(tmp_path):
    with running_server(BLOCKING, "--timeout", "10", "--block-warning", "0.3",
                        tmp_path=tmp_path) as srv:
        pid = _pid(srv)
        status, _, _ = srv.get("/spin?s=1", headers={"X-Request-ID": "spinner"}, timeout=10)
        assert status == 200
        found = _wait_for_log(srv, r"blocked for more than 0.3 s", 5)
        assert _pid(srv) == pid  # warned, not killed
        log = srv.log()
    assert found, log
    assert log.count("blocked for more than 0.3 s") == 1, log  # one record per episode
    assert "spinner (" in log
    assert re.search(r'tests/apps/blocking.py", line \d+, in spin', log), log
    assert "WORKER TIMEOUT" not in log


# ------------------------------------------------------------------------------ signals


def test_usr1_reopens_the_access_log_in_master_and_workers(tmp_path):
    access = tmp_path / "access.log"
    rotated = tmp_path / "access.log.1"
    with running_server(BLOCKING, "--access-log", str(access), "--log-format", "json",
                        tmp_path=tmp_path, workers=2) as srv:
        wait_for_workers(srv, 2)
        with Neighbour(srv.port) as neighbour:
            deadline = time.monotonic() + 10
            while len(neighbour.pids()) < 2 and time.monotonic() < deadline:
                time.sleep(0.05)
            access.rename(rotated)  # what logrotate does, then it sends USR1
            srv.signal(signal.SIGUSR1)
            deadline = time.monotonic() + 10
            pids_in_new: set[int] = set()
            while time.monotonic() < deadline and len(pids_in_new) < 2:
                time.sleep(0.1)
                if access.exists():
                    pids_in_new = {json.loads(line)["pid"]
                                   for line in access.read_text().splitlines() if line}
            count_rotated = len(rotated.read_text().splitlines())
            time.sleep(0.3)
        assert len(rotated.read_text().splitlines()) == count_rotated  # nothing new there
        assert pids_in_new == neighbour.pids() and len(pids_in_new) == 2
        assert neighbour.failures == []
        assert srv.proc.poll() is None


def test_ttin_adds_and_ttou_removes_a_worker(tmp_path):
    with running_server(BLOCKING, tmp_path=tmp_path) as srv, Neighbour(srv.port) as neighbour:
        first = wait_for_workers(srv, 1)
        srv.signal(signal.SIGTTIN)
        two = wait_for_workers(srv, 2)
        srv.signal(signal.SIGTTIN)
        wait_for_workers(srv, 3)
        srv.signal(signal.SIGTTOU)  # one at a time: two pending TTOU are one (POSIX)
        wait_for_workers(srv, 2)
        srv.signal(signal.SIGTTOU)
        left = wait_for_workers(srv, 1)
        srv.signal(signal.SIGTTOU)  # never below one
        time.sleep(0.5)
        assert worker_pids(srv) == left
        assert first < two and not left & first  # TTOU removed the oldest first
    assert neighbour.failures == [] and neighbour.replies


def test_usr2_winch_and_other_signals_do_not_stop_master_or_workers(tmp_path):
    with running_server(BLOCKING, tmp_path=tmp_path, workers=2) as srv, \
            Neighbour(srv.port) as neighbour:
        pids = wait_for_workers(srv, 2)
        for signum in (signal.SIGUSR2, signal.SIGWINCH, signal.SIGALRM, signal.SIGPWR,
                       signal.SIGVTALRM, signal.SIGRTMIN + 5, signal.SIGRTMAX):
            srv.signal(signum)
            for pid in pids:
                os.kill(int(pid.split('"')[1]), signum)
        time.sleep(1.0)
        assert srv.proc.poll() is None
        assert worker_pids(srv) == pids  # no worker died of it either
        log = srv.log()
    assert "binary upgrade is not supported" in log
    assert "ignoring signal SIGALRM" in log and "ignoring signal SIGRTMIN+5" in log
    assert "died" not in log
    assert neighbour.failures == []


@pytest.mark.parametrize("how", ["HUP", "TERM"])
def test_old_worker_alive_after_the_graceful_timeout_is_killed(tmp_path, how):
    graceful = 1.0
    with running_server(BLOCKING, "--timeout", "0", "--graceful-timeout", str(graceful),
                        tmp_path=tmp_path) as srv:
        old = _pid(srv)
        _send_and_forget(srv.port, "/spin?s=60", "stuck")  # TERM cannot reach its loop
        time.sleep(0.3)
        signalled = time.monotonic()
        srv.signal(getattr(signal, f"SIG{how}"))
        if how == "TERM":
            code = srv.wait(graceful + 5)
            assert code == 0
        else:
            with Neighbour(srv.port) as neighbour:
                replacement = neighbour.wait_for_new_pid({old}, signalled + 5)
                deadline = signalled + graceful + 5
                while time.monotonic() < deadline and os.path.exists(f"/proc/{old}/stat") \
                        and "Z" not in Path(f"/proc/{old}/stat").read_text().split()[2]:
                    time.sleep(0.05)
            assert replacement is not None and neighbour.failures == []
        gone_after = time.monotonic() - signalled
        log = srv.log()
    stat = Path(f"/proc/{old}/stat")
    assert not stat.exists() or stat.read_text().split()[2] == "Z", log
    # --graceful-timeout, + 1 s for the worker's own clean-up, + the replacement's boot
    assert gone_after <= graceful + 1 + 1.5, (gone_after, log)
    assert f"worker {old} still alive {graceful + 1:.1f} s after it was told to stop" in log, log
