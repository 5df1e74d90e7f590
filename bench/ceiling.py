"""The ceiling of a Python + gevent HTTP server on this machine: how many req/s a bare
gevent ``StreamServer`` with httptools' parser and one fixed response can do, with and
without a fresh greenlet per request, with and without the arena cache — what stands
between our server and a multiple of gunicorn's rate.

``python -m bench.ceiling [--duration 5] [--runs 3]``: each variant is a process of its own
(``python -m bench.ceiling --serve VARIANT PORT``) pinned to core 0, driven by ``wrk -t1
-c50`` on core 1 (a 2 s warm-up, 1 s of quiet, then the timed run), the variants' order
rotating over the rounds; the medians are printed and written to
``bench/results/ceiling.md``, with the µs per request they mean (1e6 / req/s: the worker's
whole budget for one request on one core).

Variants (each answers every request with the same 13-byte ``Hello, World!``, keep-alive):

* ``loop``: parse and answer in the connection's greenlet — no WSGI, no environ;
* ``greenlet``: the same, the answer sent from a fresh greenlet per request (our model);
* ``greenlet+arena``: that, with server/_arena.c installed;
* ``wsgi+arena``: a minimal environ dict and a WSGI ``start_response`` call on top;
* ``ours``: ``python -m server --workers 1`` serving ``bench.apps:hello`` (accelerated), for
  the same run's comparison.
"""

from __future__ import annotations

import argparse
import datetime
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

VARIANTS = ("loop", "greenlet", "greenlet+arena", "wsgi+arena", "ours")
RESULTS = Path(__file__).resolve().parent / "results" / "ceiling.md"
RESPONSE = (b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 13\r\n"
            b"Date: Thu, 01 Jan 2026 00:00:00 GMT\r\nServer: ceiling\r\n\r\nHello, World!")


def serve(variant: str, port: int) -> None:  # pragma: no cover - runs in its own process
    """The bare server (imports gevent only here: this process is patched first)."""
    from gevent import monkey  # noqa: PLC0415 - the patch must come first in this process

    monkey.patch_all()
    import httptools  # noqa: PLC0415
    from gevent.server import StreamServer  # noqa: PLC0415
    from greenlet import greenlet  # noqa: PLC0415

    if variant.endswith("+arena"):
        from server import accelerators  # noqa: PLC0415

        arena = accelerators.arena_module()
        if arena is None or not arena.install():
            raise SystemExit("server._arena is not built")
    fresh = variant != "loop"
    wsgi = variant.startswith("wsgi")

    def app(environ: dict, start_response) -> list[bytes]:
        start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "13")])
        return [b"Hello, World!"]

    def answer(sock, environ) -> None:
        if wsgi:
            def start_response(status, headers, exc_info=None):
                return None
            body = app(environ, start_response)
            del body
        sock.sendall(RESPONSE)

    handle = _connection_handler(httptools, greenlet, answer, fresh)
    StreamServer(("127.0.0.1", port), handle).serve_forever()


def _connection_handler(httptools, greenlet, answer, fresh: bool):
    """The keep-alive loop: parse with httptools, answer each complete request."""

    def handle(sock, address) -> None:
        done: list[dict] = []

        class Protocol:
            def on_url(self, url: bytes) -> None:
                self.url = url

            def on_message_complete(self) -> None:
                done.append({"PATH_INFO": self.url, "REQUEST_METHOD": "GET"})

        parser = httptools.HttpRequestParser(Protocol())
        recv = sock.recv
        while True:
            data = recv(65536)
            if not data:
                return
            parser.feed_data(data)
            while done:
                environ = done.pop(0)
                if fresh:
                    greenlet(answer).switch(sock, environ)
                else:
                    answer(sock, environ)

    return handle


def _wrk(port: int, seconds: float) -> float:
    out = subprocess.run(["taskset", "-c", "1", "wrk", "-t1", "-c50", f"-d{seconds:g}s",
                          f"http://127.0.0.1:{port}/"], capture_output=True, text=True,
                         check=True).stdout
    for line in out.splitlines():
        if line.startswith("Requests/sec:"):
            return float(line.split()[1])
    raise RuntimeError(out)


def measure(variant: str, seconds: float) -> float:
    from loadtests import procs  # noqa: PLC0415

    port = procs.free_port()
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[1]))
    if variant == "ours":
        command = [sys.executable, "-m", "server", "--workers", "1", "--bind",
                   f"127.0.0.1:{port}", "--access-log", "off", "--log-level", "warning",
                   "bench.apps:hello"]
    else:
        command = [sys.executable, "-m", "bench.ceiling", "--serve", variant, str(port)]
    proc = subprocess.Popen(["taskset", "-c", "0", *command], env=env, start_new_session=True)
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                procs.fetch(f"http://127.0.0.1:{port}/")
                break
            except OSError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise RuntimeError(f"{variant} did not start") from None
                time.sleep(0.1)
        _wrk(port, 2)
        time.sleep(1)
        return _wrk(port, seconds)
    finally:
        procs.stop_process_group(proc, 5.0)


def main(argv: Sequence[str] | None = None, command: str | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.ceiling", description=__doc__)
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--serve", nargs=2, metavar=("VARIANT", "PORT"), help=argparse.SUPPRESS)
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parser.parse_args(argv)
    if args.serve:
        serve(args.serve[0], int(args.serve[1]))
        return 0
    rates: dict[str, list[float]] = {v: [] for v in VARIANTS}
    for round_no in range(args.runs):
        order = VARIANTS[round_no % len(VARIANTS):] + VARIANTS[:round_no % len(VARIANTS)]
        for variant in order:
            rates[variant].append(measure(variant, args.duration))
            print(f"round {round_no + 1} {variant:15} {rates[variant][-1]:10,.0f} req/s",
                  flush=True)
    lines = ["# The ceiling: a bare gevent StreamServer + httptools loop", "",
             f"- command: `{command or ' '.join(['python -m bench.ceiling', *(argv or [])])}`",
             f"- date: {datetime.datetime.now(datetime.UTC).strftime('%Y-%m-%d %H:%M UTC')}",
             "- method: each variant its own process pinned to core 0, `wrk -t1 -c50` on "
             f"core 1, 2 s warm-up, 1 s quiet, {args.duration:g} s timed; {args.runs} "
             "rounds, order rotated; medians", "",
             "| variant | req/s (median) | µs per request | req/s per run |",
             "|---|---:|---:|---|"]
    for variant, values in rates.items():
        med = statistics.median(values)
        lines.append(f"| {variant} | {med:,.0f} | {1e6 / med:.1f} | "
                     f"{', '.join(f'{v:,.0f}' for v in values)} |")
    report = "\n".join(lines) + "\n"
    RESULTS.write_text(report)
    print(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
