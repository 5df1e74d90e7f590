"""An app for the hook tests: it reports what this request can see of data that the
config file's pre_request hook stored (tests/configs/hooks.conf.py)."""

import json
import os
import threading

from ctxlocal import Local
from server import g, request_id

#: Where pre_request stores the X-Secret header: each must be this request's only.
thread_box = threading.local()  # greenlet-local once gevent has patched threading
ctx_box = Local(name="hooked_box")


def app(environ, start_response):
    seen = {
        "request_id": str(request_id),
        "g_secret": g.get("secret"),
        "g_hook_rid": g.get("hook_rid"),
        "thread_secret": getattr(thread_box, "secret", None),
        "local_secret": getattr(ctx_box, "secret", None),
        "pid": os.getpid(),
    }
    body = json.dumps(seen).encode()
    start_response("200 OK", [("Content-Type", "application/json"),
                              ("Content-Length", str(len(body)))])
    if environ.get("PATH_INFO") == "/print":  # for --capture-output
        print(f"printed by the app {seen['request_id']}", flush=True)
        os.write(2, f"written to fd 2 {seen['request_id']}\n".encode())
    if environ.get("PATH_INFO") == "/stream":
        return iter([body])  # not a list: post_request runs at the iterable's close()
    return [body]
