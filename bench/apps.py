"""The hello-world WSGI app every server in ``bench/server/`` serves.

One minimal callable, no framework, the same object for all four servers — so the
hello rows of the benchmark compare servers, not apps. (The probe rows use the reference
app, ``server.probe:create_app()``, for every server: under ours the server pushes its
request context; under any other server the ``App`` pushes its own, see ``App.__call__``.)
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

HELLO = b"Hello, World!"
_HELLO_HEADERS = (("Content-Type", "text/plain"), ("Content-Length", str(len(HELLO))))


def hello(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    """``Hello, World!`` as text/plain, with a Content-Length."""
    start_response("200 OK", list(_HELLO_HEADERS))
    return [HELLO]
