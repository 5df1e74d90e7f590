"""gunicorn's conventions with real processes: PORT and WEB_CONCURRENCY, --pid, --chdir,
--env, --user/--group, and the ctxserver console script."""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from loadtests import procs
from tests.support import (
    ROOT,
    ServerProcess,
    free_port,
    server_from_argv,
    wait_for_workers,
    wait_healthy,
)


def _server(argv: list[str], port: int, tmp_path: Path, env: dict[str, str] | None = None,
            cwd: Path = ROOT) -> contextlib.AbstractContextManager[ServerProcess]:
    """A server started with exactly ``argv`` (no --bind/--workers added); this machine's
    PORT and WEB_CONCURRENCY stay out of it unless ``env`` sets them."""
    return server_from_argv(argv, port, tmp_path, env=env, cwd=cwd,
                            unset=("PORT", "WEB_CONCURRENCY"))


def test_port_and_web_concurrency(tmp_path):
    port = free_port()
    env = {"PORT": str(port), "WEB_CONCURRENCY": "3"}
    with _server([sys.executable, "-m", "server", "tests.apps.hooked:app"], port, tmp_path,
                 env) as srv:
        wait_for_workers(srv, 3)
        assert f"listening on 0.0.0.0:{port} with 3 worker(s)" in srv.log()


def test_pid_file_chdir_and_env(tmp_path):
    port = free_port()
    pid_file = tmp_path / "server.pid"
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere" / "chdir_app.py").write_text(
        "import os\n"
        "def app(environ, start_response):\n"
        "    body = (os.getcwd() + ' ' + os.environ['GREETING']).encode()\n"
        "    start_response('200 OK', [('Content-Length', str(len(body)))])\n"
        "    return [body]\n")
    argv = [sys.executable, "-m", "server", "chdir_app:app", "-b", f"127.0.0.1:{port}",
            "--chdir", str(tmp_path / "elsewhere"), "-p", str(pid_file),
            "-e", "GREETING=hello there"]
    with _server(argv, port, tmp_path) as srv:
        assert pid_file.read_text() == f"{srv.proc.pid}\n"
        status, _, body = srv.get("/")
        assert status == 200 and body.decode() == f"{tmp_path / 'elsewhere'} hello there"
    assert not pid_file.exists()  # removed at exit


@pytest.mark.skipif(os.geteuid() != 0, reason="changing user needs root")
def test_user_and_group_apply_to_the_workers_not_the_master(tmp_path):
    nobody = pwd.getpwnam("nobody")
    port = free_port()
    access_log = tmp_path / "access.log"
    tmp_path.chmod(0o755)
    # --preload: the app is imported by the master (root), so the test does not depend on
    # whether nobody can read this checkout and its .venv (CI clones into a 0700 directory;
    # a per-worker import would then fail, as it would under gunicorn --user).
    argv = [sys.executable, "-m", "server", "tests.apps.hooked:app", "-b",
            f"127.0.0.1:{port}", "-u", "nobody", "-g", str(nobody.pw_gid),
            "--access-log", str(access_log), "--preload"]
    with _server(argv, port, tmp_path) as srv:
        worker = srv.get_json("/")["pid"]
        status = Path(f"/proc/{worker}/status").read_text()
        uid_line = next(line for line in status.splitlines() if line.startswith("Uid:"))
        gid_line = next(line for line in status.splitlines() if line.startswith("Gid:"))
        assert uid_line.split()[1:] == [str(nobody.pw_uid)] * 4
        assert gid_line.split()[1:] == [str(nobody.pw_gid)] * 4
        assert os.stat(f"/proc/{srv.proc.pid}").st_uid == 0  # the master keeps root
        assert srv.get("/metrics")[0] == 200  # the workers can write their metrics
        assert access_log.stat().st_uid == nobody.pw_uid  # and reopen their log


def _mkdir(path: Path) -> Path:
    path.mkdir()
    return path


def test_console_script(tmp_path):
    """``pip install`` of this repository gives a ``ctxserver`` command that runs the
    server exactly like ``python -m server`` — from anywhere, not from a checkout."""
    source, target = tmp_path / "src", tmp_path / "site"
    for name in ("pyproject.toml", "setup.py", "README.md"):  # the build writes beside them
        shutil.copy(ROOT / name, source / name if source.exists() else _mkdir(source) / name)
    for package in ("ctxlocal", "server"):
        shutil.copytree(ROOT / package, source / package,
                        ignore=shutil.ignore_patterns("__pycache__", "*.so"))
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps",
                    "--disable-pip-version-check", "--target", str(target), str(source)],
                   check=True, capture_output=True, timeout=300)
    script = target / "bin" / "ctxserver"
    assert script.exists()
    env = {**os.environ, "PYTHONPATH": str(target)}
    env.pop("PORT", None)
    result = subprocess.run([str(script), "--check-config"], cwd=tmp_path, env=env,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "config OK" in result.stdout
    where = subprocess.run([sys.executable, "-c", "import server; print(server.__file__)"],
                           cwd=tmp_path, env=env, capture_output=True, text=True)
    assert where.stdout.startswith(str(target)), where  # the installed copy, not ROOT
    port = free_port()
    log_path = tmp_path / "server.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen([str(script), "-b", f"127.0.0.1:{port}", "-w", "1"],
                                cwd=tmp_path, env=env, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)
    srv = ServerProcess(proc, port, log_path)
    try:
        wait_healthy(srv)
        status, _, body = srv.get("/")
        assert status == 200 and body == b"Hello, World!"
    finally:
        assert procs.stop_process_group(proc, 20.0) == 0


def test_make_run_installs_only_the_runtime_requirements(tmp_path):
    """`make run` on a fresh clone: requirements.txt, not the dev and benchmark set; `make
    test` still installs that (a dry run with a venv that does not exist yet)."""
    venv = tmp_path / "venv"

    def dry_run(target: str) -> str:
        return subprocess.run(["make", "-n", target, f"VENV={venv}"], cwd=ROOT, check=True,
                              capture_output=True, text=True, timeout=30).stdout

    run = dry_run("run")
    assert "-r requirements.txt" in run and "requirements-dev.txt" not in run
    assert f"{venv}/bin/python -m server" in run
    assert "-r requirements-dev.txt" in dry_run("test")
