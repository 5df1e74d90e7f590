"""A Flask app that knows nothing of this server, probing for leakage under it.

It keeps the token in flask.g, in a module-level threading.local (greenlet-local once
gevent patched threading) and in a ctxlocal.Local it never releases itself — the server's
per-request greenlet and end-of-request release must keep all three clean.
"""

import threading

import gevent
from flask import Flask, g, jsonify, request

from ctxlocal import Local

app = Flask(__name__)
tl = threading.local()
cl = Local(name="flask_probe_local")


@app.route("/probe/<token>")
def probe(token: str):
    stale = [f"{where}={value}" for where, value in (
        ("g", getattr(g, "token", None)), ("threadlocal", getattr(tl, "token", None)),
        ("ctxlocal", getattr(cl, "token", None))) if value is not None]
    g.token = tl.token = cl.token = token
    for _ in range(3):
        gevent.sleep(0.001)
    return jsonify(token=token, stale=stale, values={
        "g": g.token, "threadlocal": tl.token, "ctxlocal": cl.token,
        "header": request.headers.get("X-Probe-Token")})


@app.route("/healthz")
def healthz():
    return "ok"
