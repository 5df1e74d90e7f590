"""The worker's per-request path in one process, without wrk: µs (or instructions) per request.

``python -m bench.hotpath [--app hello|probe] [--requests N] [--rounds R]`` drives a worker's
real stack -- ``build_wsgi_stack`` (health/metrics routes, context middleware, the status
page's request tracking), ``ConnectionHandler`` with the worker's ``on_response`` (metrics,
status page, access log off) -- over a gevent socketpair from a client greenlet in the same
process: one keep-alive connection, one request at a time, as wrk's connections do. It
prints the best of R rounds in µs per request (client side included: constant across
commits, so differences are the server's).

The numbers are for comparing two commits on one machine; noise on a shared machine is
the reason for ``--rounds`` (best of) and for running it under callgrind instead::

    valgrind --tool=callgrind --callgrind-out-file=/dev/null \
        .venv/bin/python -m bench.hotpath --requests 3000 --rounds 1

and again with ``--requests 1000``: the difference of the two "Collected" counts / 2000 is
the instructions per request, independent of load.
"""

from __future__ import annotations

import argparse
import atexit
import os
import shutil
import tempfile
import time

if "PROMETHEUS_MULTIPROC_DIR" not in os.environ:  # ours, then: removed at exit
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="hotpath-metrics-")
    atexit.register(shutil.rmtree, os.environ["PROMETHEUS_MULTIPROC_DIR"], True)

from gevent import monkey

monkey.patch_all()

import gevent  # noqa: E402
from gevent import socket  # noqa: E402

from bench.server.matrix import PROBE_TOKEN  # noqa: E402
from server import accelerators  # noqa: E402
from server.config import Config  # noqa: E402
from server.handler import ConnectionHandler  # noqa: E402
from server.liveness import WorkerStatus  # noqa: E402
from server.logs import AccessLog  # noqa: E402
from server.metrics import Metrics  # noqa: E402
from server.worker import Worker, build_wsgi_stack, limits_from_config  # noqa: E402

#: The requests of the wrk benchmark's hello and probe rows (bench/server/matrix.py PATHS).
REQUESTS = {
    name: b"GET %s HTTP/1.1\r\nHost: localhost\r\nUser-Agent: wrk\r\n\r\n" % path.encode()
    for name, path in (("hello", "/"), ("probe", f"/probe/{PROBE_TOKEN}?yields=0"))
}


def _app(name: str):
    if name == "hello":
        from bench.apps import hello  # noqa: PLC0415

        return hello
    from server.probe import create_app  # noqa: PLC0415

    return create_app()


def _worker_stack(app) -> ConnectionHandler:
    """What Worker._start builds for one TCP listener (access log off, --timeout on)."""
    cfg = Config()
    worker = Worker(age=1, ppid=os.getppid(), listeners=[], app=app, cfg=cfg,
                    access_log=AccessLog(None, "text"), status=WorkerStatus(64),
                    dump=tempfile.TemporaryFile(), wake_fd=-1, max_requests=0)  # noqa: SIM115
    worker.metrics = Metrics()
    wsgi = build_wsgi_stack(app, cfg, worker.metrics.wsgi_endpoint(lambda: None),
                            worker._tracking(app))  # noqa: SLF001 - the worker's own wiring
    return ConnectionHandler(wsgi, limits_from_config(cfg), server_name="127.0.0.1",
                             server_port="8000",
                             on_response=worker._on_response)  # noqa: SLF001


def _client(sock, request: bytes, count: int) -> float:
    """Send ``count`` requests one after the other; seconds taken."""
    sock.sendall(request)
    first = b""
    while b"\r\n\r\n" not in first or len(first) < _expected(first):
        first += sock.recv(65536)
    size = len(first)
    started = time.perf_counter()
    for _ in range(count):
        sock.sendall(request)
        got = 0
        while got < size:
            got += len(sock.recv(65536))
    return time.perf_counter() - started


def _expected(data: bytes) -> int:
    head, _, _ = data.partition(b"\r\n\r\n")
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            return len(head) + 4 + int(line.split(b":")[1])
    return 1 << 30


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--app", choices=sorted(REQUESTS), default="hello")
    parser.add_argument("--requests", type=int, default=20000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--no-arena", action="store_true")
    args = parser.parse_args()
    if not args.no_arena:
        accelerators.install_in_worker()
    handler = _worker_stack(_app(args.app))
    best = float("inf")
    for _ in range(args.rounds):
        ours, theirs = socket.socketpair()
        server = gevent.spawn(handler, ours, ("127.0.0.1", "40000"))
        best = min(best, _client(theirs, REQUESTS[args.app], args.requests))
        theirs.close()
        server.join()
    print(f"{args.app}: {best / args.requests * 1e6:.2f} us/request "
          f"(best of {args.rounds} x {args.requests})")


if __name__ == "__main__":
    main()
