"""server.App and the context middleware, in-process through werkzeug's test client."""

from __future__ import annotations

import json

import pytest
from werkzeug.exceptions import NotFound
from werkzeug.test import Client as WerkzeugClient
from werkzeug.wrappers import Response

import ctxlocal
from server import App, current_app, g, request, request_id
from server.context import ContextMiddleware, Namespace, request_stack, sanitise_request_id
from server.probe import create_app


def Client(app):
    """werkzeug's test client, buffered: the response iterable is closed (and the request
    context ended) before the call returns, as a real server does."""
    class Buffered(WerkzeugClient):
        def open(self, *args, **kwargs):
            kwargs.setdefault("buffered", True)
            return super().open(*args, **kwargs)

    return Buffered(app)


@pytest.fixture
def app() -> App:
    app = App("test")

    @app.route("/text")
    def text():
        return "hi"

    @app.route("/bytes")
    def raw():
        return b"\x00\x01"

    @app.route("/json/<int:n>")
    def as_json(n):
        return {"n": n, "app": current_app.name, "rid": str(request_id)}

    @app.route("/tuple")
    def as_tuple():
        return "created", 201, {"X-Extra": "1"}

    @app.route("/stream")
    def stream():
        def body():
            yield g.get("who", "?").encode()
            yield b"!"
        g.who = request.args.get("who", "nobody")
        return body()

    @app.route("/boom")
    def boom():
        raise ValueError("secret detail")

    @app.route("/post", methods=["POST"])
    def post():
        return {"got": request.get_data(as_text=True)}

    return app


def test_views_return_values_become_responses(app):
    client = Client(app)
    assert client.get("/text").text == "hi"
    assert client.get("/text").mimetype == "text/plain"
    assert client.get("/bytes").data == b"\x00\x01"
    resp = client.get("/json/7", headers={"X-Request-ID": "r1"})
    assert resp.json == {"n": 7, "app": "test", "rid": "r1"}
    assert resp.headers["X-Request-ID"] == "r1"
    resp = client.get("/tuple")
    assert resp.status_code == 201 and resp.headers["X-Extra"] == "1"
    assert client.post("/post", data="abc").json == {"got": "abc"}


def test_streamed_body_reads_the_context_while_iterated(app):
    assert Client(app).get("/stream?who=ann").data == b"ann!"


def test_http_errors_and_handlers(app):
    client = Client(app)
    assert client.get("/missing").status_code == 404
    assert client.get("/post").status_code == 405

    @app.errorhandler(404)
    def not_found(exc):
        return {"error": "nope"}, 404

    resp = client.get("/missing")
    assert resp.status_code == 404 and resp.json == {"error": "nope"}
    assert isinstance(NotFound(), Exception)


def test_unhandled_exception_is_a_500_without_details(app, caplog):
    resp = Client(app).get("/boom", headers={"X-Request-ID": "boom-1"})
    assert resp.status_code == 500
    assert b"secret detail" not in resp.data and b"Traceback" not in resp.data
    assert "boom-1" in caplog.text and "secret detail" in caplog.text


def test_exception_handler_by_class(app):
    @app.errorhandler(ValueError)
    def value_error(exc):
        return Response("bad value", status=422)

    assert Client(app).get("/boom").status_code == 422


def test_before_and_after_request_hooks(app):
    calls = []

    @app.before_request
    def before():
        calls.append("before")
        if request.path == "/text" and request.args.get("deny"):
            return "denied", 403
        return None

    @app.after_request
    def after(response):
        calls.append("after")
        response.headers["X-After"] = "yes"
        return response

    client = Client(app)
    resp = client.get("/text?deny=1")
    assert resp.status_code == 403 and resp.headers["X-After"] == "yes"
    assert client.get("/text").text == "hi"
    assert calls == ["before", "after", "before", "after"]


def test_duplicate_endpoint_is_refused(app):
    with pytest.raises(ValueError, match="already bound"):
        app.add_url_rule("/other", lambda: "x", endpoint="text")


def test_context_is_released_after_every_request(app):
    client = Client(app)
    for path in ("/text", "/stream", "/boom", "/missing", "/json/1"):
        client.get(path)
        assert request_stack.top is None
        assert ctxlocal.live_entries(request_stack) == 0


def test_proxies_outside_a_request_raise_a_clear_error():
    with pytest.raises(RuntimeError, match="working outside of a request context: 'request'"):
        request.path
    with pytest.raises(RuntimeError, match="'g'"):
        g.x = 1  # type: ignore[attr-defined]
    assert repr(current_app) == "<LocalProxy unbound>"
    assert not request_id


def test_middleware_releases_when_the_app_raises_before_returning():
    leaky = ctxlocal.Local()

    def app(environ, start_response):
        leaky.value = 1
        raise RuntimeError("before any response")

    wrapped = ContextMiddleware(app)
    with pytest.raises(RuntimeError):
        wrapped({"REQUEST_METHOD": "GET", "PATH_INFO": "/"}, lambda *a: None)
    assert request_stack.top is None
    assert not hasattr(leaky, "value")


def test_request_id_sanitising():
    assert sanitise_request_id("abc-DEF_1.2:3") == "abc-DEF_1.2:3"
    for bad in (None, "", "a b", "x\r\nSet-Cookie: y", "é", "a" * 129):
        rid = sanitise_request_id(bad)
        assert rid != bad and len(rid) == 16
    generated = {sanitise_request_id(None) for _ in range(1000)}
    assert len(generated) == 1000
    assert all(len(rid) == 16 and set(rid) <= set("0123456789abcdef") for rid in generated)
    # zero-padded: some of 1000 random 64-bit ids start with a 0 digit (1 - (15/16)**1000)
    assert any(rid.startswith("0") for rid in generated)


def test_namespace_helpers():
    ns = Namespace()
    ns.a = 1  # type: ignore[attr-defined]
    assert "a" in ns and ns.get("a") == 1 and ns.get("b", 2) == 2
    assert ns.setdefault("c", 3) == 3 and list(ns) == ["a", "c"] and len(ns) == 2
    assert ns.pop("a") == 1 and ns.pop("zz", None) is None


def test_reference_app_probe_in_process():
    client = Client(create_app())
    resp = client.get("/probe/tok", headers={"X-Probe-Token": "tok", "X-Request-ID": "tok"})
    payload = json.loads(resp.data)
    assert payload["stale"] == [] and set(payload["values"].values()) == {"tok"}
    assert client.get("/unsafe/probe/tok").status_code == 404
    assert client.get("/probe/tok?yields=x").status_code == 400
    assert Client(create_app(unsafe_probe=True)).get("/unsafe/probe/tok").status_code == 200
