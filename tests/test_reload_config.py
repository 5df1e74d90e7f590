"""HUP re-reads the config file, with real processes: the new generation of workers runs
with the file's new settings, hooks and --env pairs (the hooks record what each worker was
forked with), a restart-only setting is one warning and keeps its value, and a file that no
longer loads — syntax error, bad value, raising import — refuses the reload: one ERROR line,
the same workers serve on, no request fails."""

from __future__ import annotations

import json
import re
import signal
import sys
import time
from pathlib import Path

from tests.neighbour import Neighbour
from tests.support import free_port, server_from_argv, wait_for_workers, worker_pids

#: Each hook writes one JSON line (hook, version, pid, what the worker was forked with);
#: the version is in the hooks' own code, so a reload names them as changed.
_CONF = '''
import json, os

wsgi_app = "tests.apps.blocking:app"
bind = "127.0.0.1:{port}"
workers = {workers}
max_requests = {max_requests}
timeout = 15
graceful_timeout = 3
accesslog = {access!r}
access_log_format = "{version} %(s)s %(U)s"
raw_env = ["GREETING={version}"]


def _record(hook, version, **details):
    line = json.dumps({{"hook": hook, "version": version, "pid": os.getpid(),
                       **details}}) + "\\n"
    fd = os.open({record!r}, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    try:
        os.write(fd, line.encode())
    finally:
        os.close(fd)


def post_fork(server, worker):
    _record("post_fork", "{version}", max_requests=worker.cfg.max_requests,
            limit=worker.max_requests, greeting=os.environ.get("GREETING"))


def on_reload(server):
    _record("on_reload", "{version}", workers=server.cfg.workers)
'''


def _write(path: Path, tmp_path: Path, version: str, *, port: int, workers: int,
           max_requests: int = 0) -> None:
    path.write_text(_CONF.format(port=port, workers=workers, max_requests=max_requests,
                                 version=version, access=str(tmp_path / "access.log"),
                                 record=str(tmp_path / "hooks.jsonl")))


def _records(tmp_path: Path, hook: str, version: str) -> list[dict]:
    path = tmp_path / "hooks.jsonl"
    lines = path.read_text().splitlines() if path.exists() else []
    return [r for r in map(json.loads, lines) if r["hook"] == hook and r["version"] == version]


def _wait(predicate, timeout: float = 15.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = predicate()
        if found:
            return found
        time.sleep(0.05)
    return predicate()


def _start(conf: Path, tmp_path: Path, port: int):
    """``python -m server -c FILE`` and nothing else: every setting is the file's."""
    return server_from_argv([sys.executable, "-m", "server", "-c", str(conf)], port, tmp_path)


def test_hup_runs_the_new_generation_with_the_re_read_file(tmp_path):
    port = free_port()
    conf = tmp_path / "server.conf.py"
    _write(conf, tmp_path, "v1", port=port, workers=1)
    with _start(conf, tmp_path, port) as srv:
        (old,) = wait_for_workers(srv, 1)
        assert srv.get("/pid")[0] == 200
        _write(conf, tmp_path, "v2", port=free_port(), workers=2, max_requests=1000)
        srv.signal(signal.SIGHUP)
        forked = _wait(lambda: len(_records(tmp_path, "post_fork", "v2")) == 2
                       and _records(tmp_path, "post_fork", "v2"))
        assert forked, srv.log()
        new = {f'{{pid="{r["pid"]}"}}' for r in forked}  # as /metrics labels them
        assert _wait(lambda: worker_pids(srv) == new), (worker_pids(srv), new, srv.log())
        assert old not in new
        for record in forked:  # the file's new values, in the new workers
            assert record["max_requests"] == 1000 and record["greeting"] == "v2"
            assert record["limit"] == 1000  # no jitter
        # on_reload is the re-read file's (gunicorn calls the reloaded config's), and it
        # sees the new settings
        assert [r["workers"] for r in _records(tmp_path, "on_reload", "v2")] == [2]
        assert _records(tmp_path, "on_reload", "v1") == []
        log = srv.log()
        assert "reload: changed workers, max_requests, access_log_format, env, " \
               "hook on_reload, hook post_fork" in log
        assert re.search(r"WARNING server.arbiter: reload: bind changed; restart to apply "
                         r"it \(the master binds the listeners once", log), log
        access = tmp_path / "access.log"
        seen = len(access.read_text())
        for _ in range(4):  # still on the first port, the new workers log the new format
            assert srv.get("/pid")[0] == 200
        lines = _wait(lambda: len(after := [line for line in access.read_text()[seen:]
                                            .splitlines() if line.endswith("/pid")]) == 4
                      and after)
        assert lines == ["v2 200 /pid"] * 4, access.read_text()
        assert "v1 200 /pid" in access.read_text()  # before the HUP


def test_a_config_file_that_no_longer_loads_refuses_the_reload(tmp_path):
    port = free_port()
    conf = tmp_path / "server.conf.py"
    _write(conf, tmp_path, "v1", port=port, workers=2)
    broken = {
        "syntax error": ("workers = (\n", r"'\(' was never closed"),
        "bad value": ("workers = 'many'\n", r": workers: invalid value 'many': not a number"),
        "raising import": ("import surely_no_such_module_here\n",
                           r"failed: ModuleNotFoundError: No module named "
                           r"'surely_no_such_module_here'"),
    }
    with _start(conf, tmp_path, port) as srv, Neighbour(port) as neighbour:
        before = wait_for_workers(srv, 2)
        for count, (text, reason) in enumerate(broken.values(), start=1):
            conf.write_text(text)
            srv.signal(signal.SIGHUP)
            refused = _wait(lambda c=count: len(re.findall(r"ERROR server.arbiter: reload "
                                                           r"refused: ", srv.log())) == c)
            assert refused, srv.log()
            line = [line for line in srv.log().splitlines() if "reload refused" in line][-1]
            assert re.search(reason, line) and str(conf) in line, line
            assert line.endswith("; nothing changed, the 2 running worker(s) keep serving")
            time.sleep(0.3)
            assert worker_pids(srv) == before and srv.get("/pid")[0] == 200
        assert _records(tmp_path, "on_reload", "v1") == []  # no reload happened
        _write(conf, tmp_path, "v2", port=port, workers=2)  # fixed: the next HUP goes through
        srv.signal(signal.SIGHUP)
        assert _wait(lambda: len(_records(tmp_path, "post_fork", "v2")) == 2), srv.log()
        assert _wait(lambda: worker_pids(srv).isdisjoint(before)), srv.log()
    assert neighbour.replies and neighbour.failures == []
