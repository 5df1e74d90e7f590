"""Bare WSGI callables (no framework) for protocol and validation tests."""

from wsgiref.validate import validator

from ctxlocal import Local
from server.probe import create_app

leaky = Local(name="bare_leaky")


def app(environ, start_response):
    """Stores into a Local and never releases it: the server must."""
    stale = getattr(leaky, "value", None)
    leaky.value = environ.get("PATH_INFO")
    body = f"stale={stale}".encode()
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [body]


validated = validator(create_app())
