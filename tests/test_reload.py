"""HUP re-reads the configuration, without processes: what changes and what needs a
restart (server.reload.plan_reload), the sources resolved again (argv, the environment
without --env's pairs, the file from the start directory), and the master's decisions — a
refused reload changes nothing, an abandoned one puts the settings back, each worker is
judged by the settings it was forked with."""

from __future__ import annotations

import logging
import os
import signal
import tempfile
import textwrap
from pathlib import Path
from time import monotonic

import pytest

from server.arbiter import KILL_GRACE, Arbiter, WorkerProcess
from server.config import SETTINGS, ConfigError, load_config
from server.config_docs import reload_table
from server.liveness import BOOT_ERROR, WorkerState, WorkerStatus
from server.logs import AccessLog
from server.reload import RESTART_ONLY, ConfigSources, changed_hooks, plan_reload
from server.worker import Worker


def _conf(tmp_path: Path, text: str, name: str = "app.conf.py") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def _load(path: Path, *argv: str):
    return load_config(["-c", str(path), *argv], {})[0]


# -- plan_reload: what changes now, what needs a restart ---------------------------------------


def test_changed_settings_apply_and_are_named(tmp_path):
    path = _conf(tmp_path, "workers = 2\nmax_requests = 0\ntimeout = 30\n")
    running = _load(path)
    _conf(tmp_path, "workers = 4\nmax_requests = 100\ntimeout = 7\n"
                    "access_log_format = '%(s)s'\n")
    plan = plan_reload(running, _load(path))
    assert plan.changed == ("workers", "timeout", "max_requests", "access_log_format")
    assert plan.kept == ()
    cfg = plan.config
    assert (cfg.workers, cfg.max_requests, cfg.timeout, cfg.access_log_format) == \
        (4, 100, 7.0, "%(s)s")


def test_nothing_changed_is_an_empty_plan(tmp_path):
    path = _conf(tmp_path, "workers = 2\ndef post_fork(server, worker):\n    pass\n")
    running = _load(path)
    plan = plan_reload(running, _load(path))  # the file ran again: new function objects
    assert plan.changed == () and plan.kept == ()
    assert plan.config.hooks["post_fork"] is not running.hooks["post_fork"]  # the new one


@pytest.mark.parametrize(("line", "name"), [
    ("bind = '127.0.0.1:9002'", "bind"),
    ("backlog = 64", "backlog"),
    ("umask = 0o22", "umask"),
    ("preload_app = True", "preload"),
    ("pidfile = '/tmp/other.pid'", "pid"),
    ("errorlog = '/tmp/other.log'", "error_log"),
])
def test_restart_only_settings_keep_their_running_value_and_are_named(tmp_path, line, name):
    path = _conf(tmp_path, "workers = 2\n")
    running = _load(path)
    _conf(tmp_path, f"workers = 3\n{line}\n")
    plan = plan_reload(running, _load(path))
    assert plan.changed == ("workers",)
    assert plan.kept == ((name, RESTART_ONLY[name]),)
    assert getattr(plan.config, name) == getattr(running, name)
    assert plan.config.workers == 3


def test_restart_only_covers_what_the_master_applies_once():
    assert set(RESTART_ONLY) == {"bind", "backlog", "umask", "preload", "chdir", "pid",
                                 "user", "group", "error_log", "capture_output"}
    table = reload_table()
    assert all(f"`{s.flag}`" in table for s in SETTINGS if s.restart)


def test_with_preload_the_app_needs_a_restart_too(tmp_path):
    path = _conf(tmp_path, "wsgi_app = 'tests.apps.hooked:app'\npreload_app = True\n")
    running = _load(path)
    _conf(tmp_path, "wsgi_app = 'tests.apps.blocking:app'\npreload_app = True\n")
    plan = plan_reload(running, _load(path))
    assert [name for name, _ in plan.kept] == ["app"]
    assert plan.config.app == "tests.apps.hooked:app"
    _conf(tmp_path, "wsgi_app = 'tests.apps.blocking:app'\n")  # without preload: it applies
    unpreloaded = _load(path)
    assert plan_reload(unpreloaded, _load(path)).changed == ()
    _conf(tmp_path, "wsgi_app = 'tests.apps.hooked:app'\n")
    assert plan_reload(unpreloaded, _load(path)).changed == ("app",)


def test_hooks_are_compared_by_their_code(tmp_path):
    before = {"pre_fork": lambda server, worker: None, "on_exit": lambda server: 1}
    after = {"pre_fork": lambda server, worker: None, "on_exit": lambda server: 2,
             "when_ready": lambda server: None}
    assert changed_hooks(before, after) == ["on_exit", "pre_fork", "when_ready"]
    path = _conf(tmp_path, "def post_request(worker, req):\n    pass\n")
    running = _load(path)  # a 2-argument post_request is wrapped: its own code is compared
    assert changed_hooks(running.hooks, _load(path).hooks) == []
    _conf(tmp_path, "def post_request(worker, req):\n    return 1\n")
    assert changed_hooks(running.hooks, _load(path).hooks) == ["post_request"]
    _conf(tmp_path, "\n")
    assert plan_reload(running, _load(path)).changed == ("hook post_request",)


# -- ConfigSources: the same sources, resolved again ------------------------------------------


def test_reread_keeps_precedence_flags_over_env_over_file(tmp_path):
    path = _conf(tmp_path, "workers = 2\ntimeout = 9\nkeepalive = 3\n")
    environ = {"SERVER_TIMEOUT": "11"}
    sources = ConfigSources(["-c", str(path), "--workers", "5"], environ=environ)
    _conf(tmp_path, "workers = 3\ntimeout = 8\nkeepalive = 4\n")
    cfg = sources.reread(warn=lambda line: None)
    assert (cfg.workers, cfg.timeout, cfg.keep_alive) == (5, 11.0, 4.0)


def test_reread_runs_the_file_from_the_start_directory(tmp_path, monkeypatch):
    start = tmp_path / "start"
    elsewhere = start / "app"  # 'app' from the start directory; not from itself
    elsewhere.mkdir(parents=True)
    _conf(start, "workers = 2\nchdir = 'app'\n", name="rel.conf.py")
    monkeypatch.chdir(start)
    sources = ConfigSources(["-c", "rel.conf.py"], environ={})
    os.chdir(elsewhere)  # the master's --chdir
    assert sources.reread(warn=lambda line: None).chdir == str(elsewhere)
    assert Path.cwd() == elsewhere  # and it is back


def test_env_pairs_are_undone_before_the_reread_and_replaced(tmp_path):
    environ = {"KEPT": "original", "SERVER_WORKERS": "2"}
    path = _conf(tmp_path, "raw_env = ['KEPT=mine', 'ADDED=1', 'SERVER_WORKERS=7']\n")
    sources = ConfigSources(["-c", str(path)], environ=environ)
    cfg = sources.reread(warn=lambda line: None)
    sources.apply_env(cfg.env)
    assert environ == {"KEPT": "mine", "ADDED": "1", "SERVER_WORKERS": "7"}
    # what --env set never counts as the environment's: not at start, not at a reload
    assert sources.reread(warn=lambda line: None).workers == 2
    _conf(tmp_path, "raw_env = ['OTHER=2']\n")
    sources.apply_env(sources.reread(warn=lambda line: None).env)
    assert environ == {"KEPT": "original", "SERVER_WORKERS": "2", "OTHER": "2"}


@pytest.mark.parametrize("text", [
    "workers = (\n",                          # syntax error
    "workers = 'many'\n",                     # bad value
    "import surely_no_such_module_here\n",    # a raising import
])
def test_a_broken_file_is_the_start_up_error(tmp_path, text):
    path = _conf(tmp_path, "workers = 2\n")
    sources = ConfigSources(["-c", str(path)], environ={})
    sources.reread(warn=lambda line: None)
    _conf(tmp_path, text)
    with pytest.raises(ConfigError) as at_reload:
        sources.reread(warn=lambda line: None)
    with pytest.raises(ConfigError) as at_start:
        load_config(["-c", str(path)], {})
    assert str(at_reload.value) == str(at_start.value)
    assert str(path) in str(at_reload.value)


# -- the master's decisions -------------------------------------------------------------------


@pytest.fixture
def master(tmp_path, monkeypatch):
    """An Arbiter started from a config file, with its signals recorded, not sent."""
    path = _conf(tmp_path, "workers = 2\ntimeout = 30\ngraceful_timeout = 20\n"
                           "loglevel = 'info'\n")
    sources = ConfigSources(["-c", str(path)], environ={})
    arb = Arbiter(sources.reread(warn=lambda line: None), None, AccessLog(None, "text"),
                  sources)
    arb._ever_ready = True
    arb.path = path
    arb.sent = []
    arb.styles = []
    monkeypatch.setattr(arb, "_signal_workers",
                        lambda signum, pids: arb.sent.extend((signum, p) for p in pids))
    monkeypatch.setattr("server.arbiter.restyle_logging", lambda *style: arb.styles.append(style))
    yield arb
    for record in arb.workers.values():
        record.close()


def _add(arb: Arbiter, pid: int, generation: int = 0,
         state: WorkerState = WorkerState.SERVING) -> WorkerProcess:
    worker = Worker(age=pid, ppid=1, listeners=[], app=None, cfg=arb.cfg, access_log=None,
                    status=WorkerStatus(4), dump=tempfile.TemporaryFile(),  # noqa: SIM115
                    wake_fd=-1, max_requests=0)
    worker.pid = pid
    worker.status.set_state(state)
    record = WorkerProcess(worker, generation, monotonic() - 60)
    arb.workers[pid] = record
    return record


def test_a_reload_hands_the_new_settings_to_the_next_generation(master, caplog, monkeypatch):
    old = _add(master, 10)
    _conf(master.path.parent, "workers = 3\ntimeout = 5\ngraceful_timeout = 2\n"
                              "loglevel = 'warning'\nbind = '127.0.0.1:1'\n")
    with caplog.at_level(logging.INFO, "server.arbiter"):
        master.reload()
    assert master.generation == 1 and master.num_workers == 3
    assert (master.cfg.timeout, master.cfg.graceful_timeout) == (5.0, 2.0)
    assert master.cfg.bind == ("127.0.0.1:8000",)  # kept
    assert master.styles == [("warning", "text")]
    lines = [(r.levelname, r.getMessage()) for r in caplog.records]
    assert ("WARNING", "reload: bind changed; restart to apply it (the master binds the "
            "listeners once, at start; the workers inherit them)") in lines
    assert ("INFO", "reload: changed workers, timeout, graceful_timeout, log_level") in lines
    # the old worker is judged by its own settings: silent 10 s is fine under its 30 s
    # watchdog, and its drain deadline is its own 20 s graceful timeout
    assert old.worker.cfg.timeout == 30.0
    old.status.last_beat = lambda: monotonic() - 10
    new = _add(master, 20, generation=1)
    new.status.last_beat = lambda: monotonic() - 10
    monkeypatch.setattr("server.arbiter.collect_stack", lambda pid, dump: "(stack)")
    master._watch()
    assert not old.timed_out and new.timed_out  # the new one's is 5 s
    master._tell_to_stop(old, "reload")
    assert old.grace == 20.0 + KILL_GRACE


def test_a_ttin_count_survives_a_reload_that_does_not_change_workers(master):
    master.add_worker()
    _conf(master.path.parent, "workers = 2\ntimeout = 10\n")
    master.reload()
    assert master.num_workers == 3
    _conf(master.path.parent, "workers = 4\n")
    master.reload()
    assert master.num_workers == 4


def test_a_refused_reload_changes_nothing(master, caplog):
    _add(master, 10)
    _add(master, 11)
    before = (master.cfg, master.hooks, master.access_log, master.num_workers)
    _conf(master.path.parent, "workers = 3\ntimeout = 'soon'\n")
    with caplog.at_level(logging.INFO, "server.arbiter"):
        master.reload()
    assert (master.cfg, master.hooks, master.access_log, master.num_workers) == before
    assert master.generation == 0 and master.styles == []
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert errors == [f"reload refused: {master.path}: timeout: invalid value 'soon': not a "
                      "number; nothing changed, the 2 running worker(s) keep serving"]
    master._maintain()  # no new generation to fork
    assert len(master.workers) == 2


def test_an_unwritable_access_log_refuses_the_reload(master, caplog):
    _conf(master.path.parent, f"accesslog = '{master.path.parent}/no/such/dir/a.log'\n")
    master.reload()
    assert master.generation == 0 and master.cfg.access_log == "off"
    assert "reload refused: cannot open access log" in caplog.text


def test_an_abandoned_reload_puts_the_settings_back(master):
    old = [_add(master, 10), _add(master, 11)]
    before = master.cfg
    _conf(master.path.parent, "workers = 2\ntimeout = 5\nmax_requests = 9\n")
    master.reload()
    assert master.cfg.max_requests == 9
    bad = _add(master, 21, generation=1, state=WorkerState.BOOTING)
    bad.status.fail_boot("importing 'x' failed: SyntaxError: invalid syntax (x.py, line 2)")
    record = master.workers.pop(21)
    try:
        master._exited(record, BOOT_ERROR)
    finally:
        record.close()
    assert master.cfg is before and master.num_workers == 2
    assert all(r.leaving is None for r in old)
    master.sources.environ.clear()


def test_a_completed_reload_closes_the_old_access_log_in_the_master(master, tmp_path):
    first, second = tmp_path / "a1.log", tmp_path / "a2.log"
    _conf(master.path.parent, f"accesslog = '{first}'\n")
    master.reload()
    opened = master.access_log.stream
    _add(master, 20, generation=1)
    _add(master, 21, generation=1)
    master._retire()  # the first generation with a log file serves
    _conf(master.path.parent, f"accesslog = '{second}'\n")
    master.reload()
    assert not opened.closed  # until the new generation serves
    _add(master, 30, generation=2)
    _add(master, 31, generation=2)
    master._retire()
    assert opened.closed and not master.access_log.stream.closed
    assert (signal.SIGTERM, 20) in master.sent
    master.access_log.stream.close()


def test_the_new_hooks_share_no_state_with_the_old_ones(tmp_path):
    """What a hook kept in the file's globals (a request's data, say) stays with the old
    hooks: the file runs again in a fresh namespace."""
    path = _conf(tmp_path, "_kept = []\n\ndef pre_request(worker, req):\n"
                           "    _kept.append(req)\n")
    running = _load(path)
    running.hooks["pre_request"](None, "a request's data")
    reloaded = plan_reload(running, _load(path)).config
    old, new = running.hooks["pre_request"], reloaded.hooks["pre_request"]
    assert old.__globals__["_kept"] == ["a request's data"]
    assert new.__globals__["_kept"] == [] and new.__globals__ is not old.__globals__
