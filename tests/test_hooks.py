"""Server hooks with real processes: every hook at its moment and in order (post_fork's
pids are the worker pids), fatal start-up hooks, a raising hook costs nothing else, and
pre_request/post_request run in the request's own context — nothing they store leaks."""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import signal
import time
from pathlib import Path

import pytest

from tests.support import (
    ROOT,
    free_port,
    run_cli,
    running_server,
    wait_for_workers,
    wait_no_live_entries,
)

CONF = str(ROOT / "tests" / "configs" / "hooks.conf.py")


def _records(path: Path) -> list[dict]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines()]


def _wait_records(path: Path, predicate, timeout: float = 10.0) -> list[dict]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        records = _records(path)
        if predicate(records):
            return records
        time.sleep(0.05)
    raise AssertionError(f"hooks never got there: {_records(path)}")


def _hooks(records, name):
    return [r for r in records if r["hook"] == name]


def _get(conn: http.client.HTTPConnection, path: str, headers=None) -> dict:
    conn.request("GET", path, headers=headers or {})
    response = conn.getresponse()
    body = response.read()
    assert response.status == 200, (response.status, body)
    return json.loads(body)


def test_every_hook_fires_at_its_moment_in_order(tmp_path):
    record = tmp_path / "hooks.jsonl"
    env = {"HOOK_RECORD": str(record)}
    with running_server("-c", CONF, tmp_path=tmp_path, env=env, workers=2) as srv:
        master = srv.proc.pid
        workers = {int(pid.split("\"")[1]) for pid in wait_for_workers(srv, 2)}
        records = _records(record)
        assert [r["hook"] for r in records[:2]] == ["on_starting", "when_ready"]
        assert all(r["pid"] == master for r in records[:2])
        assert records[0]["cfg_workers"] == 2 and records[0]["server_pid"] == master
        # pre_fork in the master, then post_fork and post_worker_init in the child itself
        assert len(_hooks(records, "pre_fork")) == 2
        assert all(r["pid"] == master for r in _hooks(records, "pre_fork"))
        post_fork = _hooks(records, "post_fork")
        assert {r["pid"] for r in post_fork} == {r["worker"] for r in post_fork} == workers
        inits = _hooks(records, "post_worker_init")
        assert {r["pid"] for r in inits} == workers and inits[0]["timeout"] == 15
        for pid in workers:
            order = [r["hook"] for r in records if r["pid"] == pid]
            assert order == ["post_fork", "post_worker_init"], order

        conn = srv.connection()
        seen = _get(conn, "/", {"X-Request-ID": "rid-one"})
        conn.close()
        records = _wait_records(record, lambda rs: _hooks(rs, "post_request"))
        pre, post = _hooks(records, "pre_request")[0], _hooks(records, "post_request")[0]
        assert pre["pid"] == post["pid"] == pre["worker"] == seen["pid"]
        assert (pre["rid"], post["rid"], post["environ_rid"]) == ("rid-one",) * 3
        assert (post["status"], post["status_code"]) == ("200 OK", 200)
        assert post["sent"] > 0 and post["g_hook_rid"] == "rid-one"

        srv.signal(signal.SIGTTIN)
        _wait_records(record, lambda rs: _hooks(rs, "nworkers_changed"))
        assert _hooks(_records(record), "nworkers_changed")[0] | {"pid": 0} == {
            "hook": "nworkers_changed", "pid": 0, "worker": None, "new": 3, "old": 2}

        victim = seen["pid"]
        os.kill(victim, signal.SIGINT)
        records = _wait_records(record, lambda rs: any(
            r["hook"] == "child_exit" and r["worker"] == victim for r in rs))
        mine = [r["hook"] for r in records if r["pid"] == victim]
        assert mine[-2:] == ["worker_int", "worker_exit"], mine
        exit_record = next(r for r in records if r["hook"] == "child_exit")
        assert exit_record["pid"] == master and exit_record["worker"] == victim

        srv.signal(signal.SIGHUP)
        _wait_records(record, lambda rs: _hooks(rs, "on_reload"))
    records = _records(record)
    assert records[-1]["hook"] == "on_exit" and records[-1]["pid"] == master
    forked = {r["worker"] for r in _hooks(records, "post_fork")}
    assert {r["worker"] for r in _hooks(records, "child_exit")} == forked
    assert {r["pid"] for r in _hooks(records, "worker_exit")} == forked


@pytest.mark.parametrize("hook", ["on_starting", "when_ready"])
def test_a_raising_start_up_hook_stops_the_start_with_exit_2(tmp_path, hook):
    record = tmp_path / "hooks.jsonl"
    port = free_port()
    result = run_cli("-c", CONF, "--bind", f"127.0.0.1:{port}",
                     env={"HOOK_RECORD": str(record), "HOOK_RAISE": hook})
    assert result.returncode == 2
    assert result.stderr.splitlines()[-1] == \
        f"server: error: hook {hook} failed: RuntimeError: {hook} says no"
    assert f"hook {hook} raised RuntimeError" in result.stderr  # logged, with its name
    assert not _hooks(_records(record), "pre_fork")  # no worker was started


def test_a_raising_hook_is_logged_by_name_and_the_server_serves_on(tmp_path):
    record = tmp_path / "hooks.jsonl"
    env = {"HOOK_RECORD": str(record), "HOOK_RAISE": "post_fork"}
    with running_server("-c", CONF, tmp_path=tmp_path, env=env, workers=1) as srv:
        assert srv.get("/")[0] == 200
        assert "hook post_fork raised RuntimeError: post_fork says no" in srv.log()


def test_a_raising_pre_request_costs_that_request_only(tmp_path):
    record = tmp_path / "hooks.jsonl"
    env = {"HOOK_RECORD": str(record), "HOOK_RAISE": "pre_request"}
    with running_server("-c", CONF, tmp_path=tmp_path, env=env, workers=1) as srv:
        status, _, body = srv.get("/")
        assert status == 500 and body == b"Internal Server Error\n"
        assert "hook pre_request raised RuntimeError" in srv.log()
        post = _wait_records(record, lambda rs: _hooks(rs, "post_request"))
        assert _hooks(post, "post_request")[0]["status_code"] == 500
        assert srv.get("/healthz")[0] == 200


@pytest.mark.parametrize("path", ["/", "/stream"])
def test_what_request_hooks_store_stays_in_their_request(tmp_path, path):
    """pre_request stores a secret in g, a threading.local and a ctxlocal Local: the same
    request sees it, the next request on the same keep-alive connection sees none of it,
    and nothing stays live in the worker."""
    record = tmp_path / "hooks.jsonl"
    with running_server("-c", CONF, "--workers", "1", tmp_path=tmp_path,
                        env={"HOOK_RECORD": str(record)}) as srv:
        conn = srv.connection()
        first = _get(conn, path, {"X-Secret": "s3cret", "X-Request-ID": "first"})
        assert (first["g_secret"], first["thread_secret"], first["local_secret"]) == \
            ("s3cret",) * 3
        assert first["g_hook_rid"] == "first"
        for i in range(3):
            later = _get(conn, path, {"X-Request-ID": f"later-{i}"})
            assert (later["g_secret"], later["thread_secret"], later["local_secret"]) == \
                (None, None, None), later
            assert later["g_hook_rid"] == f"later-{i}"
        conn.close()
        records = _wait_records(record, lambda rs: len(_hooks(rs, "post_request")) == 4)
        for post in _hooks(records, "post_request"):
            assert post["rid"] == post["environ_rid"] == post["g_hook_rid"]  # its context
        assert wait_no_live_entries(srv) == 0


def test_worker_abort_runs_when_the_watchdog_times_a_worker_out(tmp_path):
    record = tmp_path / "hooks.jsonl"
    with running_server("-c", CONF, "tests.apps.blocking:app", "--timeout", "2",
                        tmp_path=tmp_path,
                        env={"HOOK_RECORD": str(record)}, workers=1) as srv:
        pid = srv.get_json("/pid")["pid"]
        with contextlib.suppress(OSError, http.client.HTTPException):
            srv.get("/spin?s=30", timeout=10)
        records = _wait_records(record, lambda rs: any(
            r["hook"] == "child_exit" and r["worker"] == pid for r in rs))
        aborted = _hooks(records, "worker_abort")
        assert [r["pid"] for r in aborted] == [pid]
        assert [r["hook"] for r in records if r["pid"] == pid][-2:] == ["worker_abort",
                                                                         "worker_exit"]
        assert "WORKER TIMEOUT" in srv.log()
