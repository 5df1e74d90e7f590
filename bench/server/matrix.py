"""What the server benchmark measures: the servers, the endpoints, the targets.

One table each, read by every other module of the package; changing what is compared is a
change here only.
"""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "bench" / "results"

SERVERS = ("ours", "ours-pure", "gunicorn", "granian", "pywsgi", "waitress")
REFERENCE = "gunicorn"  # ratios are taken against gunicorn -k gevent
CEILING = "granian"  # ... and against granian (Rust HTTP, Python threads): the ceiling anchor
LABELS = {
    "ours": "ours (python -m server)",
    "ours-pure": "ours, pure Python (accelerators off)",
    "gunicorn": "gunicorn -k gevent",
    "granian": "granian --interface wsgi",
    "pywsgi": "gevent.pywsgi + TCP_NODELAY",
    "waitress": "waitress, 4 threads",
}
ENDPOINTS = ("hello", "probe", "io", "flask-hello", "flask-json")
APPS = {"hello": "bench.apps:hello", "probe": "server.probe:create_app()",
        "io": "bench.apps:io_wait", "flask-hello": "bench.apps:flask_app",
        "flask-json": "bench.apps:flask_app"}
#: The environment that turns every C accelerator of ours off (the "ours-pure" rows).
PURE_PYTHON_ENV = ("CTXSERVER_PURE_PYTHON=1", "CTXLOCAL_PURE_PYTHON=1")
PROBE_TOKEN = "0123456789abcdef0123456789abcdef"
PATHS = {"hello": "/", "probe": f"/probe/{PROBE_TOKEN}?yields=0", "io": "/",
         "flask-hello": "/", "flask-json": "/json"}
HEADERS = {"hello": {}, "probe": {"X-Probe-Token": PROBE_TOKEN}, "io": {},
           "flask-hello": {}, "flask-json": {}}
#: The servers of an endpoint not served by all of them: the new scenarios compare ours
#: (both paths) with the reference and the ceiling only, to keep `make bench` bounded.
ENDPOINT_SERVERS = {name: ("ours", "ours-pure", "gunicorn", "granian")
                    for name in ("io", "flask-hello", "flask-json")}
#: Connection counts fixed for an endpoint whatever --concurrency says: the I/O-bound
#: scenario is many connections each waiting on a slow backend (gevent's home ground).
ENDPOINT_CONCURRENCY = {"io": (500,)}

#: The targets of the issue (design.md §5), checked against the medians, never adjusted.
TARGET_HELLO = 4.0  # hello req/s ≥ 4x gunicorn
TARGET_PROBE = 3.0  # probe req/s ≥ 3x gunicorn
TARGET_P99 = 0.5  # p99 at 500 connections ≤ ½ of gunicorn's

TIMES = "\u00d7"  # the multiplication sign of "4.00x" in the report
