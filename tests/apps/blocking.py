"""Test app for supervision: views that block the worker's event loop, and what a process
knows about itself.

- ``/spin?s=N``: a CPU loop of N seconds (Python code: gevent never gets the loop back);
- ``/csleep?s=N``: ``sleep(3)`` from libc through ctypes — a blocking C call gevent did not
  patch, the way a C database driver blocks;
- ``/pid``: this worker's pid, the pid of the process that imported this module, the
  master's pid — per-worker import (the default) versus ``--preload``;
- ``/server``: SERVER_NAME and SERVER_PORT as the worker set them;
- ``/slow?s=N``: a cooperative sleep (the loop stays free);
- anything else: ``ok``.
"""

from __future__ import annotations

import ctypes
import json
import os
import time
from urllib.parse import parse_qs

import gevent

IMPORTED_IN = os.getpid()
_libc = ctypes.CDLL(None)


def _seconds(environ) -> float:
    return float(parse_qs(environ.get("QUERY_STRING", "")).get("s", ["1"])[0])


def spin(seconds: float) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end:  # the line a timeout report must point at
        pass


def c_sleep(seconds: float) -> None:
    _libc.sleep(int(seconds))  # blocks in C; the line a timeout report must point at


def app(environ, start_response):
    path = environ["PATH_INFO"]
    if path == "/spin":
        spin(_seconds(environ))
    elif path == "/csleep":
        c_sleep(_seconds(environ))
    elif path == "/slow":
        gevent.sleep(_seconds(environ))
    if path == "/pid":
        body = json.dumps({"pid": os.getpid(), "imported_in": IMPORTED_IN,
                           "master": os.getppid()}).encode()
    elif path == "/server":
        body = json.dumps([environ["SERVER_NAME"], environ["SERVER_PORT"]]).encode()
    else:
        body = b"ok"
    start_response("200 OK", [("Content-Type", "text/plain"),
                              ("Content-Length", str(len(body)))])
    return [body]
