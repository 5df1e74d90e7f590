"""What the server benchmark measures: the servers, the endpoints, the targets.

One table each, read by every other module of the package; changing what is compared is a
change here only.
"""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "bench" / "results"

SERVERS = ("ours", "ours-pure", "gunicorn", "pywsgi", "waitress")
REFERENCE = "gunicorn"  # ratios are taken against gunicorn -k gevent
LABELS = {
    "ours": "ours (python -m server)",
    "ours-pure": "ours, pure Python (accelerators off)",
    "gunicorn": "gunicorn -k gevent",
    "pywsgi": "gevent.pywsgi + TCP_NODELAY",
    "waitress": "waitress, 4 threads",
}
ENDPOINTS = ("hello", "probe")
APPS = {"hello": "bench.apps:hello", "probe": "server.probe:create_app()"}
#: The environment that turns every C accelerator of ours off (the "ours-pure" rows).
PURE_PYTHON_ENV = ("CTXSERVER_PURE_PYTHON=1", "CTXLOCAL_PURE_PYTHON=1")
PROBE_TOKEN = "0123456789abcdef0123456789abcdef"
PATHS = {"hello": "/", "probe": f"/probe/{PROBE_TOKEN}?yields=0"}
HEADERS = {"hello": {}, "probe": {"X-Probe-Token": PROBE_TOKEN}}

#: The targets of the issue (design.md §5), checked against the medians, never adjusted.
TARGET_HELLO = 4.0  # hello req/s ≥ 4x gunicorn
TARGET_PROBE = 3.0  # probe req/s ≥ 3x gunicorn
TARGET_P99 = 0.5  # p99 at 500 connections ≤ ½ of gunicorn's

TIMES = "\u00d7"  # the multiplication sign of "4.00x" in the report
