"""A gevent WSGI application server with per-greenlet request context.

The public names (``App``, ``request``, ``g``, ``current_app``, ``request_id``, ``spawn``,
``json_response``) are loaded lazily: ``python -m server`` imports this package *before*
its ``__main__`` can monkey-patch, so this file must import nothing that touches
``threading``, ``socket`` or ``ssl``.
"""

from __future__ import annotations

import importlib  # touches none of threading, socket, ssl
from typing import Any

__all__ = ["App", "current_app", "g", "json_response", "request", "request_id", "spawn"]

_LAZY = {
    "App": "server.app",
    "json_response": "server.app",
    "current_app": "server.context",
    "g": "server.context",
    "request": "server.context",
    "request_id": "server.context",
    "spawn": "server.context",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'server' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
