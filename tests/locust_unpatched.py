"""Import locust (and the locustfile) into the shared pytest process without its gevent patch.

Importing locust monkey-patches the whole process with gevent, and this pytest process is
shared with tests that use real threads and sockets; the tests that import locust exercise its
objects (environments, runners, the web UI's Flask app) directly and need no patch.  Import
locust's names from here, not from locust, so the skip is always in place first.
"""

from __future__ import annotations

import os

from gevent import monkey

_was_patched = monkey.is_module_patched("socket")
_previous = os.environ.get("LOCUST_SKIP_MONKEY_PATCH")
os.environ["LOCUST_SKIP_MONKEY_PATCH"] = "1"
try:
    from locust.argument_parser import parse_options
    from locust.env import Environment
    from locust.exception import CatchResponseError
    from locust.runners import STATE_RUNNING, STATE_STOPPED
    from locust.stats import setup_distributed_stats_event_listeners

    from loadtests import leak_view, locustfile, run, verdict
finally:
    if _previous is None:
        del os.environ["LOCUST_SKIP_MONKEY_PATCH"]
    else:
        os.environ["LOCUST_SKIP_MONKEY_PATCH"] = _previous

PATCHED_BY_LOCUST = monkey.is_module_patched("socket") and not _was_patched
SKIP_WAS_PRESET = _previous is not None

__all__ = ["PATCHED_BY_LOCUST", "SKIP_WAS_PRESET", "STATE_RUNNING", "STATE_STOPPED",
           "CatchResponseError", "Environment", "leak_view", "locustfile", "parse_options", "run",
           "setup_distributed_stats_event_listeners", "verdict"]
