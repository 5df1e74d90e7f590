"""The master's decisions, without processes: what an exit means (backoff or not, fatal at
start-up, an abandoned reload), when RETIRING and old-generation workers are told to go,
the shared status page, the unix-socket SERVER_* rule, the settings that go with them."""

from __future__ import annotations

import signal
import tempfile
from time import monotonic

import pytest

from server.arbiter import FIRST_BACKOFF, Arbiter, ExitKind, WorkerProcess, classify_exit
from server.config import ConfigError, load_config
from server.liveness import BOOT_ERROR, MAX_REQUEST_ID, WorkerState, WorkerStatus
from server.logs import AccessLog
from server.reload import ConfigSources
from server.worker import Worker, beat_interval, host_server_address


@pytest.fixture
def arbiter(monkeypatch):
    config, _ = load_config(["--workers", "2"], {})
    arb = Arbiter(config, None, AccessLog(None, "text"),
                  ConfigSources(["--workers", "2"], environ={}))
    arb._ever_ready = True
    styles: list[tuple[str, str]] = []  # the log level and format a reload set
    monkeypatch.setattr("server.arbiter.restyle_logging", lambda *style: styles.append(style))
    arb.styles = styles
    sent: list[tuple[int, int]] = []
    monkeypatch.setattr(arb, "_signal_workers",
                        lambda signum, pids: sent.extend((signum, p) for p in pids))
    arb.sent = sent
    yield arb
    for record in arb.workers.values():
        record.close()


def _worker(cfg, pid: int) -> Worker:
    """A worker record as the master makes it before a fork (closed with its record)."""
    worker = Worker(age=pid, ppid=1, listeners=[], app=None, cfg=cfg, access_log=None,
                    status=WorkerStatus(4), dump=tempfile.TemporaryFile(),  # noqa: SIM115
                    wake_fd=-1, max_requests=0)
    worker.pid = pid
    return worker


def add(arb: Arbiter, pid: int, *, generation: int = 0, state: WorkerState = WorkerState.SERVING,
        age: float = 60.0) -> WorkerProcess:
    worker = _worker(arb.cfg, pid)
    worker.status.set_state(state)
    record = WorkerProcess(worker, generation, monotonic() - age)
    arb.workers[pid] = record
    return record


def exit_(arb: Arbiter, pid: int, code: int) -> None:
    record = arb.workers.pop(pid)
    try:
        arb._exited(record, code)
    finally:
        record.close()


# -- what an exit means -------------------------------------------------------------------


def test_classify_exit():
    record = WorkerProcess(_worker(load_config([], {})[0], 1), 0, monotonic())
    try:
        assert classify_exit(record, 1) is ExitKind.CRASHED
        assert classify_exit(record, -signal.SIGKILL) is ExitKind.CRASHED
        assert classify_exit(record, BOOT_ERROR) is ExitKind.BOOT_FAILED
        record.leaving = "reload"
        assert classify_exit(record, 0) is ExitKind.STOPPED
        assert classify_exit(record, -signal.SIGKILL) is ExitKind.STOPPED  # our deadline
        record.timed_out = True
        assert classify_exit(record, -signal.SIGKILL) is ExitKind.TIMED_OUT
    finally:
        record.close()


def test_young_crashes_back_off_and_double(arbiter):
    add(arbiter, 10, age=0.5)
    exit_(arbiter, 10, 1)
    assert arbiter._backoff == FIRST_BACKOFF
    add(arbiter, 11, age=0.5)
    exit_(arbiter, 11, -signal.SIGSEGV)
    assert arbiter._backoff == 2 * FIRST_BACKOFF
    assert arbiter._next_spawn > monotonic()


def test_a_crash_after_a_healthy_life_is_replaced_at_once(arbiter):
    arbiter._backoff = 1.6
    add(arbiter, 10, age=60)
    exit_(arbiter, 10, 1)
    assert arbiter._backoff == 0 and arbiter._next_spawn <= monotonic()


def test_watchdog_kills_and_asked_exits_never_back_off(arbiter):
    young = add(arbiter, 10, age=0.5)
    young.timed_out = True
    exit_(arbiter, 10, -signal.SIGKILL)
    asked = add(arbiter, 11, age=0.5)
    asked.leaving = "max requests"
    exit_(arbiter, 11, 0)
    assert arbiter._backoff == 0 and arbiter._next_spawn == 0


def test_a_boot_failure_at_runtime_backs_off_even_after_a_long_import(arbiter):
    record = add(arbiter, 10, state=WorkerState.BOOTING, age=60)
    record.status.fail_boot("importing 'x' failed: KeyError: 'A' (x.py, line 1)")
    exit_(arbiter, 10, BOOT_ERROR)
    assert arbiter._backoff == FIRST_BACKOFF and arbiter._fatal is None


def test_a_boot_failure_before_any_worker_served_is_fatal_with_its_line(arbiter):
    arbiter._ever_ready = False
    record = add(arbiter, 10, state=WorkerState.BOOTING)
    record.status.fail_boot("importing 'x' failed: KeyError: 'A' (x.py, line 1)")
    exit_(arbiter, 10, BOOT_ERROR)
    assert arbiter._fatal == "importing 'x' failed: KeyError: 'A' (x.py, line 1)"


def test_a_boot_timeout_before_any_worker_served_is_fatal(arbiter):
    arbiter._ever_ready = False
    record = add(arbiter, 10, state=WorkerState.BOOTING)
    record.timed_out = True
    exit_(arbiter, 10, -signal.SIGKILL)
    assert arbiter._fatal.startswith("worker 10 did not finish booting within --timeout 30 s")


def test_a_reload_whose_new_worker_cannot_boot_keeps_the_old_ones(arbiter):
    old = [add(arbiter, 10), add(arbiter, 11)]
    arbiter.reload()
    new_ok = add(arbiter, 20, generation=1, state=WorkerState.SERVING)
    new_bad = add(arbiter, 21, generation=1, state=WorkerState.BOOTING)
    new_bad.status.fail_boot("importing 'x' failed: SyntaxError: invalid syntax (x.py, line 2)")
    exit_(arbiter, 21, BOOT_ERROR)
    assert arbiter._fatal is None
    assert all(r.generation == arbiter.generation and r.leaving is None for r in old)
    assert new_ok.leaving == "reload abandoned" and (signal.SIGTERM, 20) in arbiter.sent
    arbiter._retire()
    arbiter._maintain()  # nothing to fork, nobody else to stop: the old ones serve on
    assert [s for s in arbiter.sent if s[1] in (10, 11)] == []


# -- successors first -----------------------------------------------------------------------


def test_old_generation_drains_only_when_the_whole_new_one_is_ready(arbiter):
    add(arbiter, 10)
    add(arbiter, 11)
    arbiter.reload()
    add(arbiter, 20, generation=1)
    new = add(arbiter, 21, generation=1, state=WorkerState.BOOTING)
    arbiter._retire()
    assert arbiter.sent == []
    new.status.set_state(WorkerState.SERVING)
    arbiter._retire()
    assert sorted(arbiter.sent) == [(signal.SIGTERM, 10), (signal.SIGTERM, 11)]


def test_a_retiring_worker_drains_once_its_successor_is_ready(arbiter):
    add(arbiter, 10)
    retiring = add(arbiter, 11, state=WorkerState.RETIRING)
    spawned = []
    arbiter.spawn_worker = lambda: spawned.append(1)
    arbiter._maintain()
    assert spawned == [1]  # a successor right away, while 11 serves on
    arbiter._retire()
    assert arbiter.sent == []
    add(arbiter, 12, state=WorkerState.SERVING)
    arbiter._retire()
    assert arbiter.sent == [(signal.SIGTERM, 11)] and retiring.leaving == "max requests"
    assert retiring.kill_at <= monotonic() + arbiter.cfg.graceful_timeout + 1


def test_ttou_stops_the_oldest_worker(arbiter):
    add(arbiter, 10, age=30)
    add(arbiter, 11, age=10)
    arbiter.remove_worker()
    arbiter._maintain()
    assert arbiter.sent == [(signal.SIGTERM, 10)]
    arbiter.remove_worker()  # never below one
    assert arbiter.num_workers == 1


def test_the_watchdog_kills_a_silent_worker_and_replaces_it_at_once(arbiter, monkeypatch):
    quiet = add(arbiter, 10)
    add(arbiter, 11)
    monkeypatch.setattr("server.arbiter.collect_stack", lambda pid, dump: "the stack")
    monkeypatch.setattr(quiet.status, "last_beat", lambda: monotonic() - 31)  # --timeout 30
    spawned = []
    arbiter.spawn_worker = lambda: spawned.append(1)
    arbiter._watch()
    arbiter._maintain()
    assert quiet.timed_out and (signal.SIGKILL, 10) in arbiter.sent and spawned == [1]


# -- the status page --------------------------------------------------------------------------


def test_status_page_round_trip():
    status = WorkerStatus(2)
    try:
        assert status.state() is WorkerState.BOOTING
        assert monotonic() - status.last_beat() < 1
        first = status.request_started("req-1")
        second = status.request_started("x" * 300)
        assert status.request_started("no room") == -1  # counted, not named
        ids = [rid for rid, _ in status.in_flight()]
        assert ids == ["req-1", "x" * MAX_REQUEST_ID]
        status.request_finished(first)
        assert [rid for rid, _ in status.in_flight()] == ["x" * MAX_REQUEST_ID]
        status.request_finished(second)
        assert status.in_flight() == []
        status.fail_boot("é" * 2000)  # truncated at a character edge, still valid UTF-8
        assert status.boot_error() == "é" * 512
        status.set_state(WorkerState.RETIRING)
        assert status.state() is WorkerState.RETIRING
    finally:
        status.close()


# -- smaller rules --------------------------------------------------------------------------


@pytest.mark.parametrize("host, expected", [
    ("example.com:8080", ("example.com", "8080")),
    ("example.com", ("example.com", "80")),
    ("[::1]:8443", ("[::1]", "8443")),
    ("[::1]", ("[::1]", "80")),
    ("example.com:http", None),
    ("", None),
])
def test_unix_socket_server_name_and_port_come_from_host(host, expected):
    assert host_server_address(host, "http") == expected


def test_unix_socket_default_port_follows_the_scheme():
    assert host_server_address("example.com", "https") == ("example.com", "443")


def test_heartbeat_interval():
    assert beat_interval(30) == 1.0 and beat_interval(2) == 0.5 and beat_interval(0) == 1.0


@pytest.mark.parametrize("text, value", [("0", 0), ("022", 0o22), ("0o77", 0o77), ("18", 18),
                                         ("0x12", 0x12), ("0777", 0o777)])
def test_umask_values_as_gunicorn_reads_them(text, value):
    assert load_config(["--umask", text], {})[0].umask == value


@pytest.mark.parametrize("argv, message", [
    (["--umask", "01000"], "--umask: invalid value '01000': must be between 0 and 0o777"),
    (["--umask", "rw"], "--umask: invalid value 'rw': not a number"),
    (["--timeout", "-1"], "--timeout: invalid value '-1': must be a finite number >= 0"),
    (["--max-requests", "-5"], "--max-requests: invalid value '-5': must be >= 0"),
    (["--timeout", "2", "--block-warning", "2"],
     "--block-warning (2) must be shorter than --timeout (2): the watchdog kills the worker "
     "first"),
])
def test_bad_supervision_values(argv, message):
    with pytest.raises(ConfigError) as info:
        load_config(argv, {})
    assert str(info.value) == message


def test_block_warning_without_a_watchdog_is_fine():
    config, _ = load_config(["--timeout", "0", "--block-warning", "5"], {})
    assert config.block_warning == 5
