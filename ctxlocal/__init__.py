"""ctxlocal — context-local storage keyed on the current greenlet, done right.

The model is ``werkzeug.local`` of the greenlet era (0.x/1.x) and ``threading.local``:
a value set in one greenlet is never visible in another, also when a greenlet dies and its
``id()`` is reused, and storage does not grow when greenlets die without an explicit release.
Asyncio tasks are contexts of their own, as in werkzeug 2.x (:mod:`ctxlocal.ident`).
Knows nothing of HTTP or of the server.
"""

from __future__ import annotations

from .ident import current_context, get_ident, live_contexts, release_context
from .local import Local, all_locals, live_entries, release_local
from .manager import LocalManager, ReleasingIterable
from .propagate import ContextSnapshot, copy_context, spawn
from .proxy import LocalProxy
from .stack import LocalStack

__all__ = [
    "ContextSnapshot",
    "Local",
    "LocalManager",
    "LocalProxy",
    "LocalStack",
    "ReleasingIterable",
    "all_locals",
    "copy_context",
    "current_context",
    "get_ident",
    "live_contexts",
    "live_entries",
    "release_context",
    "release_local",
    "spawn",
    "stats",
]


def stats() -> dict[str, int]:
    """Live entries per named Local (unnamed ones summed under ``"<unnamed>"``).

    Zero everywhere once all requests have ended: the figure ``/metrics`` exports and the
    leak tests check.
    """
    counts: dict[str, int] = {}
    for local in all_locals():
        label = type(local).__ctxlocal_name__ or "<unnamed>"
        counts[label] = counts.get(label, 0) + live_entries(local)
    return counts
