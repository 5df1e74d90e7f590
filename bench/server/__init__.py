"""Our server next to gunicorn -k gevent, gevent.pywsgi and waitress, driven by wrk.

``python -m bench server`` (part of ``make bench``) runs it with the defaults below;
``python -m bench.server --help`` takes flags, e.g. ``--duration 2 --warmup 1 --runs 1``
for a quick look. Never part of CI's pass/fail.

How (design.md sections 4-5):

* every server is started by this module on 127.0.0.1 (a free port), pinned to one core
  (``taskset -c 0``); ``wrk`` (one thread) is pinned to the other (``taskset -c 1``);
* servers: ours (``python -m server --workers 1 --access-log off``), the same with its C
  accelerators off (``CTXSERVER_PURE_PYTHON=1 CTXLOCAL_PURE_PYTHON=1``: the pure-Python
  path, what runs without a compiler), ``gunicorn -k gevent
  -w 1`` (default worker_connections), ``gevent.pywsgi`` with TCP_NODELAY
  (``bench/pywsgi_runner.py``), waitress with 4 threads (connection limit raised to 1000 so
  that 500 connections are served at all — its default is 100);
* endpoints: *hello* — the same minimal WSGI callable for every server
  (``bench/apps.py:hello``) — and *probe* — the reference app's ``/probe/<token>?yields=0``
  with an ``X-Probe-Token`` header (``server.probe:create_app()`` for every server: full
  request context, werkzeug Request, JSON), each checked once for a correct answer first;
* concurrency 50 and 500 (``wrk -c``), each measurement a warm-up, a second of quiet
  (run straight after the warm-up, with its 500 connections still closing, every server
  showed a p99 tail of 0.5-3 s at 500 connections), then a timed run with ``--latency``;
  ``--runs`` rounds, each starting every server afresh, the servers' order rotating from
  round to round so that a noisy neighbour does not always hit the same one;
* reported: the median over the rounds of req/s, p50 and p99, and ratios to gunicorn
  -k gevent *from the same run* — absolute numbers on a shared machine mean little;
* memory: RSS of the one worker process before and after 10,000 idle keep-alive
  connections (one request made on each), for ours and gunicorn, both with keep-alive long
  enough and worker_connections ≥ 10,000.

Every process started here is stopped again (process group TERM, then KILL), also on
Ctrl-C or TERM. Results: ``bench/results/server.md`` (table, targets, machine, versions,
exact commands), ``server.json`` (every raw number and wrk's output) and ``server.png``.

wrk must be installed (``apt-get install -y wrk``); the benchmark says so and exits when it
is not, and never installs anything itself.

One job per module: ``matrix`` (what is compared), ``servers`` (their processes),
``wrk`` (driving and parsing it), ``stats`` (rounds into medians, ratios, targets),
``memory`` (RSS per idle connection), ``report`` (the results files), ``run`` (the run).
"""

from __future__ import annotations

from bench.server.matrix import ENDPOINTS, PROBE_TOKEN, ROOT, SERVERS
from bench.server.run import build_parser, main
from bench.server.servers import Processes, display

# Processes and display are for other benchmarks that start servers the same way.
__all__ = ["ENDPOINTS", "PROBE_TOKEN", "ROOT", "SERVERS", "Processes", "build_parser",
           "display", "main"]
