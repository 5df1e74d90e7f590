"""Test app: slow and dripping responses, for drain and disconnect tests."""

import gevent
from werkzeug.wrappers import Response

from server import App, request

app = App("slow")


@app.route("/slow")
def slow() -> Response:
    gevent.sleep(float(request.args.get("s", "1")))
    return Response("slow done", mimetype="text/plain")


@app.route("/drip")
def drip() -> Response:
    def body():
        for i in range(int(request.args.get("n", "50"))):
            gevent.sleep(0.05)
            yield f"{i}\n".encode()

    return Response(body(), mimetype="text/plain")


@app.route("/healthz")
def healthz() -> str:
    return "ok"
