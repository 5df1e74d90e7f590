"""Supervision with real processes and signals: the watchdog (``--timeout``), the early
warning (``--block-warning``), signals (USR1, TTIN/TTOU, USR2/WINCH/others, HUP/TERM with
``--graceful-timeout``), recycling (``--max-requests``), per-worker import vs ``--preload``,
boot failures. Each fault runs next to a well-behaved client (:class:`Neighbour`) that must
keep being served; timeouts are short (``--timeout 2``) so the module stays fast."""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from loadtests.procs import children_of
from tests.neighbour import Neighbour
from tests.support import (
    ROOT,
    free_port,
    run_cli,
    running_server,
    wait_for_workers,
    worker_pids,
)

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
        # 2 s: the monitor thread checks every 0.3 s, but on a busy machine it may wait for
        # the CPU, and the report must come while the block lasts.
        status, _, _ = srv.get("/spin?s=2", headers={"X-Request-ID": "spinner"}, timeout=10)
        assert status == 200
        found = _wait_for_log(srv, r"blocked for more than 0.3 s", 5)
        assert _pid(srv) == pid  # warned, not killed
        log = srv.log()
    assert found, log
    assert log.count("blocked for more than 0.3 s") == 1, log  # one record per episode
    assert "spinner (" in log, log
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


# ------------------------------------------------------------------------------ recycling


def _keep_alive_client(port: int, until: float, out: list, stop: threading.Event) -> None:
    """One kept-alive connection, reopened only when the server says Connection: close (an
    error is a failure, and the client goes on with a new connection)."""
    conn = None
    while time.monotonic() < until and not stop.is_set():
        if conn is None:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        try:
            conn.request("GET", "/pid")
            resp = conn.getresponse()
            pid = json.loads(resp.read())["pid"]
            closes = (resp.getheader("Connection") or "").lower() == "close"
            out.append((pid, closes, None))
            if closes:
                conn.close()
                conn = None
        except (OSError, http.client.HTTPException, ValueError) as exc:
            out.append((None, False, repr(exc)))
            conn.close()
            conn = None
    if conn is not None:
        conn.close()


def test_max_requests_recycles_workers_without_failing_a_request(tmp_path):
    with running_server(BLOCKING, "--max-requests", "100", tmp_path=tmp_path) as srv:
        results: list = []
        stop = threading.Event()
        until = time.monotonic() + 30
        clients = [threading.Thread(target=_keep_alive_client,
                                    args=(srv.port, until, results, stop)) for _ in range(10)]
        for client in clients:
            client.start()
        while time.monotonic() < until and len({p for p, _, _ in results if p}) < 7:
            time.sleep(0.05)
        stop.set()
        for client in clients:
            client.join(15)
        log = srv.log()
    failed = [error for pid, _, error in results if pid is None]
    served_by = {}
    for pid, _, _ in results:
        if pid is not None:
            served_by[pid] = served_by.get(pid, 0) + 1
    assert failed == [], (len(failed), failed[:3])
    assert len(served_by) >= 6, served_by
    # Every worker that handed over told its kept-alive clients to move on (the clients only
    # reconnect when told; the newest worker may have reached its limit as they stopped).
    told = {pid for pid, closes, _ in results if closes}
    retired = {int(p) for p in re.findall(r"worker (\d+) served \d+ requests", log)}
    newest = list(dict.fromkeys(pid for pid, _, _ in results if pid))[-1]
    assert retired and retired - {newest} <= told, (retired, told, newest)
    assert "died" not in log and "WORKER TIMEOUT" not in log


def test_max_requests_jitter_gives_each_worker_its_own_limit(tmp_path):
    with running_server(BLOCKING, "--max-requests", "20", "--max-requests-jitter", "30",
                        tmp_path=tmp_path) as srv:
        conn = srv.connection()
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and \
                len(re.findall(r"served \d+ requests", srv.log())) < 5:
            conn.request("GET", "/pid", headers={"Connection": "close"})
            conn.getresponse().read()
            conn.close()
        limits = [int(n) for n in re.findall(r"served (\d+) requests", srv.log())]
    assert len(limits) >= 5 and all(20 <= n <= 50 for n in limits), limits
    assert len(set(limits)) > 1, limits  # all equal: p = 31 ** -4


# ------------------------------------------------------------------------------ preload


def _write_app(path: Path, version: str, *, broken: bool = False) -> None:
    path.write_text(
        "import os\n"
        f"VERSION = {version!r}\n"
        + ("raise RuntimeError('half-deployed')\n" if broken else "")
        + "IMPORTED_IN = os.getpid()\n"
        "def app(environ, start_response):\n"
        "    import json\n"
        "    body = json.dumps({'version': VERSION, 'pid': os.getpid(),\n"
        "                       'imported_in': IMPORTED_IN}).encode()\n"
        "    start_response('200 OK', [('Content-Length', str(len(body)))])\n"
        "    return [body]\n")


def _app_env(tmp_path: Path) -> dict[str, str]:
    # The app lives in tmp_path; no .pyc, so a rewrite within the same second is seen.
    return {"PYTHONPATH": f"{tmp_path}{os.pathsep}{Path(__file__).resolve().parent.parent}",
            "PYTHONDONTWRITEBYTECODE": "1"}


def _wait_for_version(srv, version: str, timeout: float = 10) -> dict:
    deadline = time.monotonic() + timeout
    seen = {}
    while time.monotonic() < deadline:
        seen = srv.get_json("/")
        if seen["version"] == version:
            return seen
        time.sleep(0.05)
    raise AssertionError(f"still {seen} after {timeout} s")


@pytest.mark.parametrize("preload", [False, True])
def test_app_is_imported_in_each_worker_unless_preload(tmp_path, preload):
    args = [BLOCKING, *(["--preload"] if preload else [])]
    with running_server(*args, tmp_path=tmp_path, workers=2) as srv:
        wait_for_workers(srv, 2)
        seen = {}
        deadline = time.monotonic() + 10
        while len(seen) < 2 and time.monotonic() < deadline:
            reply = srv.get_json("/pid")
            seen[reply["pid"]] = reply
    assert len(seen) == 2
    for pid, reply in seen.items():
        expected = reply["master"] if preload else pid
        assert reply["imported_in"] == expected, (preload, reply)


def test_hup_loads_new_code_unless_preload(tmp_path):
    module = tmp_path / "deployed_app.py"
    _write_app(module, "v1")
    with running_server("deployed_app:app", tmp_path=tmp_path, env=_app_env(tmp_path)) as srv:
        assert srv.get_json("/")["version"] == "v1"
        _write_app(module, "v2")
        srv.signal(signal.SIGHUP)
        assert _wait_for_version(srv, "v2")["imported_in"] != srv.proc.pid
    _write_app(module, "v1")
    with running_server("deployed_app:app", "--preload", tmp_path=tmp_path,
                        env=_app_env(tmp_path)) as srv:
        before = srv.get_json("/")
        _write_app(module, "v2")
        srv.signal(signal.SIGHUP)
        deadline = time.monotonic() + 10
        while srv.get_json("/")["pid"] == before["pid"] and time.monotonic() < deadline:
            time.sleep(0.05)
        after = srv.get_json("/")
    assert after["pid"] != before["pid"] and after["version"] == "v1"  # new process, old code


def test_a_reload_with_code_that_fails_to_import_keeps_the_running_workers(tmp_path):
    module = tmp_path / "deployed_app.py"
    _write_app(module, "v1")
    with running_server("deployed_app:app", tmp_path=tmp_path, env=_app_env(tmp_path),
                        workers=2) as srv, Neighbour(srv.port, path="/") as neighbour:
        wait_for_workers(srv, 2)
        before = worker_pids(srv)
        _write_app(module, "v2", broken=True)
        srv.signal(signal.SIGHUP)
        found = _wait_for_log(srv, r"reload failed: importing 'deployed_app' failed: "
                                   r"RuntimeError: half-deployed \(.*deployed_app.py, line 3\)"
                                   r"; the 2 running worker\(s\) keep serving", 10)
        assert found, srv.log()
        time.sleep(0.5)
        assert worker_pids(srv) == before and srv.get_json("/")["version"] == "v1"
        _write_app(module, "v3")  # fixed: the next HUP goes through
        srv.signal(signal.SIGHUP)
        _wait_for_version(srv, "v3")
    assert neighbour.failures == []


# ------------------------------------------------------------------------------ boot failures


@pytest.mark.parametrize("extra", [[], ["--workers", "3"], ["--preload"]])
def test_an_app_failing_at_import_is_one_line_with_its_file_and_line_and_exit_2(extra):
    result = run_cli("tests.apps.nested_import_error:app", "--bind",
                     f"127.0.0.1:{free_port()}", *extra)
    assert result.returncode == 2
    assert result.stderr == (
        "server: error: importing 'tests.apps.nested_import_error' failed: KeyError: "
        "'CTXSERVER_TEST_SURELY_UNSET_DATABASE_URL' (tests/apps/nested_settings.py, "
        "line 5)\n")


# ------------------------------------------------------------------------------ sockets, port 0


def _unix_exchange(path: Path, request: bytes) -> bytes:
    with socket.socket(socket.AF_UNIX) as sock:
        sock.settimeout(10)
        sock.connect(str(path))
        sock.sendall(request)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def _body(raw: bytes):
    return json.loads(raw.split(b"\r\n\r\n", 1)[1])


@pytest.mark.parametrize("umask, mode", [([], 0o777), (["--umask", "007"], 0o770)])
def test_unix_socket_mode_follows_umask_and_server_port_is_never_empty(tmp_path, umask, mode):
    sock = tmp_path / "s.sock"
    with running_server(BLOCKING, "--bind", f"unix:{sock}", *umask, tmp_path=tmp_path) as srv:
        assert sock.stat().st_mode & 0o777 == mode
        with_port = _unix_exchange(sock, b"GET /server HTTP/1.1\r\nHost: example.com:8080\r\n"
                                         b"Connection: close\r\n\r\n")
        without = _unix_exchange(sock, b"GET /server HTTP/1.1\r\nHost: example.com\r\n"
                                       b"Connection: close\r\n\r\n")
        no_host = _unix_exchange(sock, b"GET /server HTTP/1.0\r\n\r\n")
        assert srv.get_json("/server") == ["127.0.0.1", str(srv.port)]  # TCP unchanged
    assert _body(with_port) == ["example.com", "8080"]
    assert _body(without) == ["example.com", "80"]
    assert _body(no_host) == [str(sock), "80"]
    assert not sock.exists()  # removed with the master


def test_port_0_logs_the_real_port(tmp_path):
    log_path = tmp_path / "server.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen([sys.executable, "-m", "server", BLOCKING, "--bind",
                                 "127.0.0.1:0"], cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 20
        found = None
        while found is None and time.monotonic() < deadline and proc.poll() is None:
            found = re.search(r"listening on 127\.0\.0\.1:(\d+) ", log_path.read_text())
            time.sleep(0.05)
        assert found, log_path.read_text()
        port = int(found[1])
        assert port != 0
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        conn.request("GET", "/pid")
        assert json.loads(conn.getresponse().read())["master"] == proc.pid
        conn.close()
    finally:
        proc.terminate()
        proc.wait(20)


# ------------------------------------------------------------------------------ metrics dir


def test_metrics_dirs_of_dead_masters_are_pruned_at_start(tmp_path):
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    stale = tmp_path / f"ctxserver-metrics-{gone.pid}-abc"
    alive = tmp_path / f"ctxserver-metrics-{os.getpid()}-xyz"  # this test runs: not stale
    for directory in (stale, alive):
        directory.mkdir()
        (directory / "counter_1.db").write_bytes(b"x")
    env = {"TMPDIR": str(tmp_path)}
    with running_server(BLOCKING, tmp_path=tmp_path, env=env) as srv:
        own = [p.name for p in tmp_path.glob(f"ctxserver-metrics-{srv.proc.pid}-*")]
        assert len(own) == 1 and not stale.exists() and alive.exists()
        # The master dies without cleaning up; its workers notice and leave.
        workers = children_of(srv.proc.pid)
        srv.proc.kill()
        srv.proc.wait(10)
        deadline = time.monotonic() + 10
        while any(Path(f"/proc/{w}").exists() for w in workers) and \
                time.monotonic() < deadline:
            time.sleep(0.05)
        for worker in workers:  # never leave one behind, even if the test fails
            with contextlib.suppress(ProcessLookupError):
                os.kill(worker, signal.SIGKILL)
        assert (tmp_path / own[0]).exists()
    with running_server(BLOCKING, tmp_path=tmp_path, env=env) as srv:
        assert not (tmp_path / own[0]).exists()
        assert srv.get("/metrics")[0] == 200
    assert alive.exists()
    assert list(tmp_path.glob("ctxserver-metrics-*")) == [alive]  # ours removed on exit
