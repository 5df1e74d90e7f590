"""Every hook, recording (hook, pid of the process it ran in, worker pid, details) as one
JSON line in $HOOK_RECORD; $HOOK_RAISE names a hook that raises instead."""

import json
import os

from server import g, request_id
from tests.apps.hooked import ctx_box, thread_box

wsgi_app = "tests.apps.hooked:app"
workers = 2
keepalive = 5
# generous: a loaded CI machine once starved a healthy worker for 2 s; the worker_abort
# test passes its own short --timeout
timeout = 15
graceful_timeout = 3


def _record(hook, worker=None, **details):
    line = json.dumps({"hook": hook, "pid": os.getpid(),
                       "worker": getattr(worker, "pid", None), **details}) + "\n"
    fd = os.open(os.environ["HOOK_RECORD"], os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    try:
        os.write(fd, line.encode())  # one write per line: atomic across processes
    finally:
        os.close(fd)
    if os.environ.get("HOOK_RAISE") == hook:
        raise RuntimeError(f"{hook} says no")


def on_starting(server):
    _record("on_starting", cfg_workers=server.cfg.workers, server_pid=server.pid)


def when_ready(server):
    _record("when_ready", server_pid=server.pid)


def pre_fork(server, worker):
    _record("pre_fork", worker)


def post_fork(server, worker):
    _record("post_fork", worker)


def post_worker_init(worker):
    _record("post_worker_init", worker, timeout=worker.cfg.timeout)


def pre_request(worker, req):
    secret = dict(req.headers).get("X-SECRET")
    if secret:
        g.secret = secret
        thread_box.secret = secret
        ctx_box.secret = secret
    g.hook_rid = str(request_id)
    _record("pre_request", worker, method=req.method, path=req.path, rid=str(request_id))


def post_request(worker, req, environ, resp):
    _record("post_request", worker, rid=str(request_id), status=resp.status,
            status_code=resp.status_code, sent=resp.sent,
            environ_rid=environ["ctxserver.request_id"], g_hook_rid=g.get("hook_rid"))


def worker_int(worker):
    _record("worker_int", worker)


def worker_abort(worker):
    _record("worker_abort", worker)


def worker_exit(server, worker):
    _record("worker_exit", worker)


def child_exit(server, worker):
    _record("child_exit", worker)


def nworkers_changed(server, new_value, old_value):
    _record("nworkers_changed", new=new_value, old=old_value)


def on_reload(server):
    _record("on_reload")


def on_exit(server):
    _record("on_exit")
