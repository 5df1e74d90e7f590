"""``python -m bench.container``: the rounds — start each config, check it, time it with wrk,
stop it — then the results files. Needs a Docker daemon and the bench image
(``make bench-docker`` provides both; see ``scripts/bench-docker.sh``).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.container.commands import Config, command, default_configs
from bench.container.report import write_results
from bench.server.matrix import APPS, RESULTS
from bench.server.run import machine_meta, rotated
from bench.server.servers import (
    ACCELERATORS,
    Processes,
    accelerators_from_metrics,
    check_answer,
    display,
    wait_ready,
)
from bench.server.wrk import ensure_wrk, parse_wrk, run_wrk, wrk_command
from loadtests import procs

ENDPOINTS = ("hello", "probe")
DOCKER_TIMEOUT = 60.0
#: What the image's Python reports about itself, for the results file.
_VERSIONS_SCRIPT = (
    "import importlib.metadata as m, platform\n"
    "import sys\n"
    "print('python', platform.python_version())\n"
    "print('build', sys.version.replace(chr(10), ' '))\n"
    "for d in ('gevent', 'greenlet', 'gunicorn', 'werkzeug', 'httptools'):\n"
    "    print(d, m.version(d))\n")


def accelerator_problem(config: Config, active: dict[str, bool]) -> str | None:
    """What is wrong with the accelerators a server of ``config`` reports, if anything:
    ours must run both, ours-pure neither (gunicorn has none to report)."""
    if config.server == "gunicorn":
        return None
    wanted = config.server == "ours"
    wrong = [name for name in ACCELERATORS if active.get(name) is not wanted]
    if not wrong:
        return None
    return (f"{config.key}: expected every accelerator {'on' if wanted else 'off'}, /metrics "
            f"says {active or 'nothing'}"
            + (" (run `make speedups` for the host rows)" if config.place == "host" else ""))


def docker(*args: str) -> str:
    done = subprocess.run(["docker", *args], capture_output=True, text=True, check=False,
                          timeout=DOCKER_TIMEOUT)
    if done.returncode != 0:
        raise RuntimeError(f"docker {' '.join(args)}: {done.stderr.strip() or done.stdout}")
    return done.stdout.strip()


def remove_container(cidfile: Path) -> None:
    """``docker rm -f`` the container whose id ``cidfile`` holds (gone already: fine)."""
    with contextlib.suppress(OSError):
        cid = cidfile.read_text().strip()
        if cid:
            subprocess.run(["docker", "rm", "-f", cid], capture_output=True, check=False,
                           timeout=DOCKER_TIMEOUT)
        cidfile.unlink()


def container_meta(image: str) -> dict[str, Any]:
    """The image's Python and package versions, and the engine's."""
    versions = docker("run", "--rm", "--network", "none", "--no-healthcheck", image,
                      "python", "-c", _VERSIONS_SCRIPT)
    inside = dict(line.split(" ", 1) for line in versions.splitlines())
    base = os.environ.get("BASE_IMAGE", "python:3.11-slim")
    with contextlib.suppress(RuntimeError):
        inside["base"] = f"{base}: " + (docker("image", "inspect", "-f", "{{.Comment}}", base)
                                        or "as pulled")
    engine = docker("version", "-f", "engine {{.Server.Version}}")
    driver = docker("info", "-f", "{{.Driver}}")
    return {"image": image, "container": inside,
            "docker": f"{engine}, storage driver {driver}"}


def python_build(python: str) -> str:
    """``sys.version`` of ``python``: version, build date and compiler name the build."""
    return subprocess.run([python, "-c", "import sys; print(sys.version)"], capture_output=True,
                          text=True, check=True, timeout=30).stdout.strip().replace("\n", " ")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bench.container",
        description="ctxserver in its Docker image next to the same server on the host "
                    "(wrk on 127.0.0.1); `make bench-docker` builds the image and runs this.")
    parser.add_argument("--image", default="ctxserver:bench",
                        help="the bench image (bench/container/Dockerfile; default: "
                             "ctxserver:bench)")
    parser.add_argument("--configs", nargs="+", type=Config.parse, default=None,
                        metavar="PLACE/SERVER",
                        help="what to measure (default: host/ and container/ with each of ours, "
                             "ours-pure, gunicorn; and published/ours; host-syspython/ too "
                             "with --system-python)")
    parser.add_argument("--system-python", default=None, metavar="PYTHON",
                        help="a venv's python made from the host's python3 when it is the "
                             "image's very build (scripts/bench-docker.sh makes one): the "
                             "host-syspython rows")
    parser.add_argument("--endpoints", nargs="+", choices=ENDPOINTS, default=list(ENDPOINTS))
    parser.add_argument("--runs", type=int, default=2, help="rounds (default: 2)")
    parser.add_argument("--duration", type=float, default=6.0)
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument("--settle", type=float, default=1.0)
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--server-cpu", type=int, default=0)
    parser.add_argument("--client-cpu", type=int, default=1)
    parser.add_argument("--cid-dir", type=Path, default=None,
                        help="where the containers' id files go (scripts/bench-docker.sh "
                             "removes what is listed there on exit)")
    parser.add_argument("--results", type=Path, default=RESULTS)
    return parser


@dataclass
class Bench:
    """One run: its options, the processes (servers, docker clients) it started, where the
    logs and id files go, and the results file's metadata."""

    args: argparse.Namespace
    logs: Path
    cid_dir: Path
    meta: dict[str, Any]
    processes: Processes = field(default_factory=Processes)
    done: int = 0

    @property
    def total(self) -> int:
        return self.args.runs * len(self.args.endpoints) * len(self.args.configs)

    def measure(self, round_no: int, endpoint: str, config: Config) -> dict[str, Any]:
        """Start ``config`` afresh, check it, warm up, time it; stopped whatever happens."""
        args = self.args
        port = procs.free_port()
        cidfile = self.cid_dir / f"{config.place}-{config.server}-{endpoint}-{round_no}.cid"
        cmd = command(config, APPS[endpoint], port, image=args.image, cidfile=cidfile,
                      cpu=args.server_cpu, system_python=args.system_python)
        self.meta["commands"][f"{config.key}, {endpoint}"] = (
            display(cmd).replace(str(cidfile), "ID_FILE").replace(str(port), "PORT"))
        log = self.logs / f"{cidfile.stem}.log"
        proc = self.processes.start(cmd, log)
        try:
            wait_ready(proc, port, log)
            check_answer(endpoint, port)
            if config.server != "gunicorn":
                _, metrics = procs.fetch(f"http://127.0.0.1:{port}/metrics")
                problem = accelerator_problem(
                    config, accelerators_from_metrics(metrics.decode("utf-8", "replace")))
                if problem:
                    raise RuntimeError(problem)
            if args.warmup > 0:
                run_wrk(wrk_command(endpoint, port, args.concurrency, args.warmup,
                                    args.client_cpu), args.warmup)
                time.sleep(args.settle)
            wrk = wrk_command(endpoint, port, args.concurrency, args.duration, args.client_cpu)
            self.meta["wrk_command"] = display(wrk).replace(f":{port}", ":PORT")
            output = run_wrk(wrk, args.duration)
        finally:
            self.processes.stop(proc)
            remove_container(cidfile)
        result = parse_wrk(output)
        self.done += 1
        print(f"[{self.done}/{self.total}] round {round_no + 1} {endpoint:5} {config.key:24} "
              f"{result.requests_per_sec:9,.0f} req/s  p99 {result.p99_ms or 0:7.2f} ms  "
              f"errors {result.errors}", flush=True)
        return {"round": round_no + 1, "endpoint": endpoint, "config": config.key,
                "result": result, "wrk_output": output}

    def rounds(self) -> list[dict[str, Any]]:
        samples = []
        for round_no in range(self.args.runs):
            for endpoint in self.args.endpoints:
                for config in rotated(self.args.configs, round_no):
                    samples.append(self.measure(round_no, endpoint, config))
        return samples

    def stop_all(self) -> None:
        self.processes.stop_all()
        for cidfile in self.cid_dir.glob("*.cid"):
            remove_container(cidfile)


def _on_term(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    if args.runs < 1:
        raise SystemExit("bench container: --runs must be at least 1")
    if args.configs is None:
        args.configs = default_configs(system_python=args.system_python is not None)
    if any(c.place == "host-syspython" for c in args.configs) and not args.system_python:
        raise SystemExit("bench container: host-syspython rows need --system-python")
    wrk = ensure_wrk()
    meta = machine_meta(wrk)
    if any(config.place != "host" for config in args.configs):
        try:
            meta.update(container_meta(args.image))
        except (OSError, RuntimeError) as exc:
            raise SystemExit(f"bench container: {exc}\n`make bench-docker` starts a Docker "
                             "daemon and builds the image") from None
    meta["interpreters"] = {"host .venv": python_build(sys.executable)}
    if args.system_python:
        meta["interpreters"]["host-syspython"] = python_build(args.system_python)
    if "build" in meta.get("container", {}):
        meta["interpreters"]["image"] = meta["container"].pop("build")
    meta.update(command=display([sys.executable, "-m", "bench.container", *argv]),
                runs=args.runs, duration=args.duration, warmup=args.warmup,
                settle=args.settle, concurrency=args.concurrency,
                server_cpu=args.server_cpu, client_cpu=args.client_cpu, commands={})
    if os.environ.get("BENCH_COMMAND"):  # how make ran it, when it did
        meta["command"] = os.environ["BENCH_COMMAND"]
    args.results.mkdir(parents=True, exist_ok=True)
    previous = signal.signal(signal.SIGTERM, _on_term)
    previous_int = signal.signal(signal.SIGINT, signal.default_int_handler)
    with tempfile.TemporaryDirectory(prefix="bench-container-") as tmp:
        cid_dir = args.cid_dir or Path(tmp)
        cid_dir.mkdir(parents=True, exist_ok=True)
        bench = Bench(args, Path(tmp), cid_dir, meta)
        try:
            samples = bench.rounds()
        except KeyboardInterrupt:
            print("interrupted: stopping every server and container started", file=sys.stderr,
                  flush=True)
            return 130
        finally:
            bench.stop_all()
            signal.signal(signal.SIGTERM, previous)
            signal.signal(signal.SIGINT, previous_int)
    print(write_results(args.results, meta, samples).read_text())
    return 0
