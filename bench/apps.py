"""The WSGI apps the servers in ``bench/server/`` serve.

``hello``: one minimal callable, no framework, the same object for every server — so the
hello rows of the benchmark compare servers, not apps. ``io_wait``: the same answer after
waiting ``IO_WAIT`` seconds for a "backend" (``time.sleep``: a gevent sleep under the gevent
servers, which patch it; a blocked thread under granian) — the I/O-bound scenario.
``flask_app``: a real framework, Flask: ``/`` (hello) and ``/json`` (a small JSON view).
(The probe rows use the reference app, ``server.probe:create_app()``, for every server:
under ours the server pushes its request context; under any other server the ``App`` pushes
its own, see ``App.__call__``.)
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import Any

import flask

HELLO = b"Hello, World!"
_HELLO_HEADERS = (("Content-Type", "text/plain"), ("Content-Length", str(len(HELLO))))


def hello(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    """``Hello, World!`` as text/plain, with a Content-Length."""
    start_response("200 OK", list(_HELLO_HEADERS))
    return [HELLO]


#: Seconds the I/O-bound view waits on its backend.
IO_WAIT = 0.05


def io_wait(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    """``hello`` after waiting IO_WAIT seconds, as a view waiting for a backend would."""
    time.sleep(IO_WAIT)
    return hello(environ, start_response)


#: What ``/json`` answers (and the benchmark checks before timing).
FLASK_JSON = {"id": 42, "name": "ctxserver", "tags": ["gevent", "wsgi"], "ok": True}

flask_app = flask.Flask("bench")


@flask_app.route("/")
def _flask_hello() -> str:
    return HELLO.decode()


@flask_app.route("/json")
def _flask_json() -> flask.Response:
    return flask.jsonify(FLASK_JSON)


@flask_app.route("/healthz")
def _flask_health() -> str:
    return "ok"
