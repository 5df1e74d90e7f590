"""Smoke tests of the container benchmark's pure pieces (``bench/container/``).

No Docker here (``make bench-docker`` is the real run): the command lines of every config,
the /metrics accelerator check, the medians and same-run ratios, and the results files, on
made-up numbers; plus the wiring of ``make bench-docker`` to the shared Docker functions.
"""

from __future__ import annotations

import importlib.metadata
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from bench.container import commands, report
from bench.container import run as bench_run
from bench.container.commands import Config
from bench.server.matrix import PURE_PYTHON_ENV, TIMES
from bench.server.wrk import WrkResult

ROOT = Path(__file__).resolve().parent.parent
CID = Path("/tmp/x.cid")


def _cmd(key: str, port: int = 41234) -> list[str]:
    return commands.command(Config.parse(key), "bench.apps:hello", port, image="img:tag",
                            cidfile=CID, cpu=0, system_python="/sys/venv/bin/python")


def _after(command: list[str], flag: str) -> str:
    return command[command.index(flag) + 1]


# ---------------------------------------------------------------- command lines


def test_host_rows_are_the_host_benchmarks_command_pinned() -> None:
    ours = _cmd("host/ours")
    assert ours[:3] == ["taskset", "-c", "0"]
    assert ours[3:] == [sys.executable, "-m", "server", "--workers", "1", "--bind",
                        "127.0.0.1:41234", "--access-log", "off", "--log-level", "warning",
                        "bench.apps:hello"]
    assert _cmd("host/ours-pure")[3:6] == ["env", *PURE_PYTHON_ENV]
    assert _cmd("host/gunicorn")[4:8] == ["-m", "gunicorn", "-k", "gevent"]
    assert _cmd("host-syspython/ours") == [*ours[:3], "/sys/venv/bin/python", *ours[4:]]
    with pytest.raises(ValueError, match="--system-python"):
        commands.command(Config.parse("host-syspython/ours"), "a:b", 1, image="i",
                         cidfile=CID, cpu=0)


def test_container_rows_use_host_networking_one_core_and_loopback() -> None:
    command = _cmd("container/ours")
    assert command[:2] == ["docker", "run"]
    assert {"--rm", "--init", "--no-healthcheck"} <= set(command)
    assert _after(command, "--network") == "host"
    assert _after(command, "--cpuset-cpus") == "0"
    assert _after(command, "--cidfile") == str(CID)
    assert "-p" not in command and "-e" not in command
    image = command.index("img:tag")
    assert command[image + 1:] == ["python", "-m", "server", "--workers", "1", "--bind",
                                   "127.0.0.1:41234", "--access-log", "off", "--log-level",
                                   "warning", "bench.apps:hello"]
    gunicorn = _cmd("container/gunicorn")
    assert gunicorn[gunicorn.index("img:tag") + 1:][:6] == [
        "python", "-m", "gunicorn", "-k", "gevent", "-w"]
    assert _after(gunicorn, "-b") == "127.0.0.1:41234"


def test_pure_rows_turn_the_accelerators_off_in_the_containers_environment() -> None:
    command = _cmd("container/ours-pure")
    image = command.index("img:tag")
    assert [command[i + 1] for i in range(image) if command[i] == "-e"] == list(PURE_PYTHON_ENV)
    assert command[image + 1] == "python"  # not `env ...` inside the image


def test_published_row_publishes_on_loopback_only() -> None:
    command = _cmd("published/ours")
    assert _after(command, "-p") == "127.0.0.1:41234:8000"
    assert "--network" not in command
    assert _after(command, "--bind") == "0.0.0.0:8000"  # inside its own network namespace


def test_bad_config_names_the_choices() -> None:
    with pytest.raises(ValueError, match="PLACE/SERVER"):
        Config.parse("cloud/ours")
    keys = [c.key for c in commands.default_configs()]
    assert keys == ["host/ours", "host/ours-pure", "host/gunicorn", "container/ours",
                    "container/ours-pure", "container/gunicorn", "published/ours"]
    with_system = [c.key for c in commands.default_configs(system_python=True)]
    assert with_system == [*keys[:3], "host-syspython/ours", "host-syspython/ours-pure",
                           "host-syspython/gunicorn", *keys[3:]]


# ---------------------------------------------------------------- accelerators


METRICS = """\
# HELP ctxserver_accelerator_active 1 when every live worker runs it
ctxserver_accelerator_active{name="arena_cache"} 1.0
ctxserver_accelerator_active{name="ctxlocal_speedups"} 1.0
ctxserver_requests_total 3.0
"""


def test_accelerators_are_read_from_metrics_and_checked_per_config() -> None:
    active = bench_run.accelerators_from_metrics(METRICS)
    assert active == {"arena_cache": True, "ctxlocal_speedups": True}
    assert bench_run.accelerator_problem(Config("container", "ours"), active) is None
    off = bench_run.accelerators_from_metrics(METRICS.replace("} 1.0", "} 0.0"))
    assert bench_run.accelerator_problem(Config("container", "ours-pure"), off) is None
    assert "expected every accelerator off" in bench_run.accelerator_problem(
        Config("container", "ours-pure"), active)
    half = {"arena_cache": True, "ctxlocal_speedups": False}
    assert "make speedups" in bench_run.accelerator_problem(Config("host", "ours"), half)
    assert bench_run.accelerator_problem(Config("host", "ours"), {}) is not None
    assert bench_run.accelerator_problem(Config("host", "gunicorn"), {}) is None


# ---------------------------------------------------------------- medians and ratios


RPS = {"host/ours": (9000, 11000), "host/ours-pure": (7000, 9000),
       "host/gunicorn": (4000, 6000), "host-syspython/ours": (11000, 13000),
       "host-syspython/ours-pure": (7000, 9000), "host-syspython/gunicorn": (5000, 5000),
       "container/ours": (8000, 10000),
       "container/ours-pure": (6000, 8000), "container/gunicorn": (4500, 5500),
       "published/ours": (3000, 3000)}


def _samples() -> list[dict[str, object]]:
    return [{"round": i + 1, "endpoint": "hello", "config": key,
             "result": WrkResult(requests_per_sec=float(rps), requests=1, duration_s=1.0,
                                 p50_ms=1.0, p99_ms=2.0)}
            for key, values in RPS.items() for i, rps in enumerate(values)]


def test_summary_medians_and_same_run_ratios() -> None:
    rows = {r.config: r for r in report.summarize(_samples())}
    assert list(rows) == list(RPS)  # host, container, published; ours, pure, gunicorn
    assert rows["host/ours"].rps == 10000 and rows["host/ours"].rps_runs == [9000, 11000]
    assert rows["container/ours"].vs_host == pytest.approx(0.9)
    assert rows["container/gunicorn"].vs_host == pytest.approx(1.0)
    assert rows["published/ours"].vs_host == pytest.approx(0.3)
    assert rows["host/ours"].vs_host is None
    assert rows["published/ours"].vs_container == pytest.approx(1 / 3)
    assert rows["host-syspython/ours"].vs_host == pytest.approx(1.2)
    assert rows["container/ours"].vs_same_python == pytest.approx(0.75)
    assert rows["container/gunicorn"].vs_same_python == pytest.approx(1.0)
    assert rows["host/ours"].vs_same_python is None
    assert rows["container/ours"].vs_container is None
    assert rows["host/ours"].vs_gunicorn == pytest.approx(2.0)
    assert rows["container/ours"].vs_gunicorn == pytest.approx(1.8)
    assert rows["published/ours"].vs_gunicorn is None  # no gunicorn behind a published port
    assert rows["host/ours"].on_off == pytest.approx(1.25)
    assert rows["container/ours"].on_off == pytest.approx(9000 / 7000)
    assert rows["container/gunicorn"].on_off is None


def test_results_files(tmp_path: Path) -> None:
    meta = {"command": "make bench-docker", "date": "d", "nproc": 2, "cpu": "cpu",
            "kernel": "k", "loadavg": "0", "versions": {"python": "3.11"},
            "image": "ctxserver:bench", "container": {"python": "3.11.2"}, "docker": "engine",
            "server_cpu": 0, "client_cpu": 1, "concurrency": 50, "warmup": 2, "settle": 1,
            "duration": 6, "runs": 2, "commands": {"container/ours, hello": "docker run ..."}}
    md = report.write_results(tmp_path, meta, _samples()).read_text().replace(TIMES, "x")
    lines = md.splitlines()
    assert "| ratio (medians, same run) | hello |" in lines
    for what, ratio in (("container ÷ host (.venv): ours", "0.90x"),
                        ("… ours, accelerators off", "0.88x"), ("… gunicorn -k gevent", "1.00x"),
                        ("container ÷ host with the image's Python build: ours", "0.75x"),
                        ("host: the image's Python build ÷ .venv's: ours", "1.20x"),
                        ("published port ÷ --network host: ours", "0.33x"),
                        ("accelerators on ÷ off: host", "1.25x"),
                        ("ours x gunicorn -k gevent: host", "2.00x"), ("… container", "1.80x")):
        assert f"| {what} | {ratio} |" in lines, what
    assert "| hello | container (--network host) | ours | 9,000 | 0.90x | 1.80x |" in md
    assert "`docker run ...`" in md
    data = json.loads((tmp_path / "docker.json").read_text())
    assert len(data["runs"]) == 2 * len(RPS)
    assert data["runs"][0]["result"]["requests_per_sec"] == 9000
    assert [r["config"] for r in data["summary"]] == list(RPS)


# ---------------------------------------------------------------- the wiring


def test_make_bench_docker_reuses_the_docker_functions_and_cleans_up_by_id() -> None:
    makefile = (ROOT / "Makefile").read_text()
    assert re.search(r"^bench-docker: .*\n\tbash scripts/bench-docker\.sh \$\(ARGS\)$",
                     makefile, re.M)
    script = (ROOT / "scripts" / "bench-docker.sh").read_text()
    assert 'source "$ROOT/scripts/docker-lib.sh"' in script
    for needle in ("trap teardown EXIT", "start_daemon", 'release_host "$rc"',
                   'ensure_base_image "$BUILDER_IMAGE" --builder', "pip_build_args",
                   '--cid-dir "$CID_DIR"', 'docker rm -f "$cid"',
                   "-m bench.container", "bench/container/Dockerfile"):
        assert needle in script, needle
    # the teardown's last steps, shared with test-docker.sh: the daemon it started stops and
    # the host state changed for it is put back
    lib = (ROOT / "scripts" / "docker-lib.sh").read_text()
    release = lib[lib.index("release_host() {"):]
    release = release[:release.index("\n}\n")]
    for needle in ("stop_daemon", "restore_host_state"):
        assert needle in release, needle
    dockerfile = (ROOT / "bench" / "container" / "Dockerfile").read_text()
    assert re.search(r"^FROM \$\{RUNTIME_IMAGE\}$", dockerfile, re.M)
    assert '"gunicorn==${GUNICORN_VERSION}"' in dockerfile
    assert "gunicorn" not in (ROOT / "Dockerfile").read_text()  # never in the shipped image
    assert dockerfile.rstrip().splitlines()[-1] == "USER 10001:10001"


def test_gunicorn_pin_the_script_reads_is_the_dev_pin() -> None:
    found = subprocess.run(
        ["sed", "-n", r"s/^gunicorn==\([^ #]*\).*/\1/p", str(ROOT / "requirements-dev.txt")],
        capture_output=True, text=True, check=True).stdout.strip()
    assert found == importlib.metadata.version("gunicorn")
    assert "sed -n 's/^gunicorn==\\([^ #]*\\).*/\\1/p' requirements-dev.txt" in (
        ROOT / "scripts" / "bench-docker.sh").read_text()
