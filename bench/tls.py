"""``python -m bench tls``: hello over HTTPS next to hello over HTTP, ours and gunicorn -k gevent.

The same minimal WSGI app (``bench/apps.py:hello``), one worker pinned to one core and wrk
(one thread, 50 kept-alive connections) to the other, as ``bench server`` does; the HTTPS
servers get a certificate made by trustme for the run (``--certfile``/``--keyfile``, both
servers). Each round starts every server afresh, in rotating order; reported are the
medians over the rounds of req/s, p50 and p99, and HTTPS as a share of HTTP of the same
server. wrk keeps its connections, so this measures encryption per request, not the
handshake. Results: ``bench/results/tls.md`` and ``tls.json``.
"""

from __future__ import annotations

import argparse
import datetime
import http.client
import json
import platform
import ssl
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import trustme

from bench.server import ROOT, Processes, display
from bench.server.matrix import TIMES
from bench.server.servers import pinned, server_command
from bench.server.wrk import ensure_wrk, parse_wrk, run_wrk
from loadtests.procs import cpu_model, free_port

RESULTS = ROOT / "bench" / "results"
APP = "bench.apps:hello"
SERVERS = ("ours", "gunicorn")
LABELS = {"ours": "ctxserver", "gunicorn": "gunicorn -k gevent"}
SCHEMES = ("http", "https")
SERVER_CPU, WRK_CPU = 0, 1
READY_TIMEOUT = 30.0


def command(server: str, scheme: str, port: int, certs: tuple[str, str]) -> list[str]:
    base = server_command(server, APP, port)
    if scheme == "https":
        base = [*base[:-1], "--certfile", certs[0], "--keyfile", certs[1], base[-1]]
    return pinned(base, SERVER_CPU)


def wait_ready(proc: Any, scheme: str, port: int, log: Path) -> None:
    """Until ``/`` answers ``Hello, World!`` (over TLS for https, certificate unchecked)."""
    deadline = time.monotonic() + READY_TIMEOUT
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            break
        try:
            conn = (http.client.HTTPSConnection("127.0.0.1", port, timeout=2, context=context)
                    if scheme == "https" else http.client.HTTPConnection("127.0.0.1", port,
                                                                         timeout=2))
            conn.request("GET", "/")
            resp = conn.getresponse()
            if (resp.status, resp.read()) == (200, b"Hello, World!"):
                conn.close()
                return
        except OSError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{scheme} server not ready:\n" + log.read_text(errors="replace")[-3000:])


def measure(scheme: str, port: int, seconds: float, connections: int) -> dict[str, Any]:
    wrk = pinned(["wrk", "-t1", f"-c{connections}", f"-d{seconds:g}s", "--timeout", "10s",
                  "--latency", f"{scheme}://127.0.0.1:{port}/"], WRK_CPU)
    result = parse_wrk(run_wrk(wrk, seconds))
    return {"rps": result.requests_per_sec, "p50_ms": result.p50_ms, "p99_ms": result.p99_ms,
            "errors": result.errors, "wrk": display(wrk)}


def run(rounds: int, seconds: float, warmup: float, connections: int,
        workdir: Path) -> dict[str, Any]:
    ensure_wrk()
    cert = trustme.CA().issue_cert("127.0.0.1")
    certs = (str(workdir / "cert.pem"), str(workdir / "key.pem"))
    cert.cert_chain_pems[0].write_to_path(certs[0])
    cert.private_key_pem.write_to_path(certs[1])
    configs = [(server, scheme) for server in SERVERS for scheme in SCHEMES]
    samples: dict[str, list[dict[str, Any]]] = {f"{s}/{c}": [] for s, c in configs}
    commands: dict[str, str] = {}
    processes = Processes()
    try:
        for round_no in range(rounds):
            shift = round_no % len(configs)
            for server, scheme in configs[shift:] + configs[:shift]:
                port = free_port()
                cmd = command(server, scheme, port, certs)
                commands[f"{server}/{scheme}"] = display(cmd).replace(str(workdir), "$CERTS")
                log = workdir / f"{server}-{scheme}-{round_no}.log"
                proc = processes.start(cmd, log)
                try:
                    wait_ready(proc, scheme, port, log)
                    measure(scheme, port, warmup, connections)
                    time.sleep(1.0)
                    sample = measure(scheme, port, seconds, connections)
                finally:
                    processes.stop(proc)
                samples[f"{server}/{scheme}"].append(sample)
                print(f"round {round_no + 1}: {server:8} {scheme:5} "
                      f"{sample['rps']:9.0f} req/s  p99 {sample['p99_ms']} ms", flush=True)
    finally:
        processes.stop_all()
    return {"samples": samples, "commands": commands}


def _median(values: list[Any]) -> float | None:
    present = [v for v in values if v is not None]
    return statistics.median(present) if present else None


def report(data: dict[str, Any], args: argparse.Namespace, command_line: str) -> str:
    samples = data["samples"]
    med = {key: {field: _median([s[field] for s in runs]) for field in ("rps", "p50_ms",
                                                                          "p99_ms")}
           for key, runs in samples.items()}
    lines = [
        "# HTTPS next to HTTP: hello, one worker",
        "",
        f"Measured {datetime.date.today().isoformat()} by `{command_line}` "
        f"({args.rounds} rounds of {args.duration:g} s after {args.warmup:g} s of warm-up, "
        f"wrk -t1 -c{args.connections}, kept-alive connections; server on CPU {SERVER_CPU}, "
        f"wrk on CPU {WRK_CPU}). Medians over the rounds. See `bench/tls.py` for the method.",
        "",
        "| server | scheme | req/s | p50 ms | p99 ms | HTTPS / HTTP | errors |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for server in SERVERS:
        for scheme in SCHEMES:
            m = med[f"{server}/{scheme}"]
            share = ""
            if scheme == "https" and med[f"{server}/http"]["rps"]:
                share = f"{m['rps'] / med[f'{server}/http']['rps']:.0%}"
            errors = sum(s["errors"] for s in samples[f"{server}/{scheme}"])
            lines.append(f"| {LABELS[server]} | {scheme} | {m['rps']:.0f} | {m['p50_ms']:.2f} "
                         f"| {m['p99_ms']:.2f} | {share} | {errors} |")
    ours, theirs = med["ours/https"]["rps"], med["gunicorn/https"]["rps"]
    lines += ["", f"Over HTTPS ours serves {ours / theirs:.2f}{TIMES} gunicorn -k gevent's req/s "
                  "(same run).", "", "Every round's numbers:", "",
              "| server/scheme | req/s per round |", "|---|---|"]
    for key, runs in samples.items():
        per_round = ", ".join(f"{sample['rps']:.0f}" for sample in runs)
        lines.append(f"| {key} | {per_round} |")
    lines += ["", "Commands (`$CERTS`: the run's trustme certificate):", ""]
    lines += [f"- {key}: `{cmd}`" for key, cmd in data["commands"].items()]
    lines += ["", f"Machine: {cpu_model()}, Python {platform.python_version()}, "
                  f"{ssl.OPENSSL_VERSION}.", ""]
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench.tls", description=__doc__)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--warmup", type=float, default=3.0)
    parser.add_argument("--connections", type=int, default=50)
    return parser


def main(command_line: str, argv: Sequence[str] = ()) -> int:
    args = build_parser().parse_args(list(argv))
    with tempfile.TemporaryDirectory(prefix="bench-tls-") as tmp:
        data = run(args.rounds, args.duration, args.warmup, args.connections, Path(tmp))
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "tls.json").write_text(json.dumps({**data, "args": vars(args)}, indent=2) + "\n")
    (RESULTS / "tls.md").write_text(report(data, args, command_line))
    print(f"wrote {RESULTS / 'tls.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main("python -m bench.tls " + " ".join(sys.argv[1:]), sys.argv[1:]))
