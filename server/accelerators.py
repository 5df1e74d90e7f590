"""Which optional C accelerators run, and installing the server's own in a worker.

Two are optional and built by ``make speedups`` (``setup.py``) when a C compiler is there:

* ``arena_cache`` -- :mod:`server._arena`: a bounded cache of freed 16 KiB frame
  data-stack chunks in front of CPython's arena allocator.  Every request runs in a new
  greenlet, and on CPython >= 3.11 each new greenlet's first frame chunk is an ``mmap`` and
  its end a ``munmap``; the cache turns both into a pointer push/pop.  Isolation is
  unchanged: the greenlet, its frames, its contextvars context and its ctxlocal entries are
  all new -- the block is raw frame-stack memory that CPython overwrites as it pushes
  frames, just as it would a fresh mapping.  ``CTXSERVER_PURE_PYTHON=1`` turns it off.
* ``ctxlocal_speedups`` -- :mod:`ctxlocal._speedups` (``CTXLOCAL_PURE_PYTHON=1`` turns it
  off; see :mod:`ctxlocal.local`).

When: the cache is installed by each worker right after the fork, before it imports the
app (:meth:`server.worker.Worker.run`).  Installing it in the master instead would work --
a child inherits the master's cached blocks as private copy-on-write memory -- but the
master creates no greenlet per request, so there it would only hold memory; and installing
at import would change the allocator of any process that merely imports ``server`` (the
test runner, a ``--preload``-ing tool).  The master reports at start-up what the workers
will run (:func:`summary`); each worker exports what it really runs as the
``ctxserver_accelerator_active`` gauge in ``/metrics``.
"""

from __future__ import annotations

import os
from types import ModuleType

import ctxlocal.local

__all__ = ["ARENA_CACHE", "PURE_ENV", "active", "arena_module", "install_in_worker", "summary"]

#: Set to a non-empty value: the server's accelerators stay off (the pure-Python path).
PURE_ENV = "CTXSERVER_PURE_PYTHON"
#: The arena cache's name in :func:`active`, the start-up line and ``/metrics``.
ARENA_CACHE = "arena_cache"
CTXLOCAL_SPEEDUPS = "ctxlocal_speedups"

_arena: ModuleType | None
try:
    from . import _arena
except ImportError:  # not built (no C compiler): the pure-Python path
    _arena = None


def _arena_state() -> tuple[bool, str]:
    """Whether a worker installs the arena cache, and if not, why not."""
    if os.environ.get(PURE_ENV):
        return False, f"{PURE_ENV} is set"
    if _arena is None:
        return False, "not built"
    return True, "installed in each worker"


def _ctxlocal_state() -> tuple[bool, str]:
    if ctxlocal.local.ACCELERATED:
        return True, "built"
    if os.environ.get("CTXLOCAL_PURE_PYTHON"):
        return False, "CTXLOCAL_PURE_PYTHON is set"
    return False, "not built"


def arena_module() -> ModuleType | None:
    """:mod:`server._arena` when it is built (whether or not it is installed), else None:
    for the tests and ``bench/arena.py``, which install and remove it themselves."""
    return _arena


def install_in_worker() -> bool:
    """Install the arena cache in this process unless it is off or not built; whether it
    is in use afterwards.  Idempotent."""
    wanted, _ = _arena_state()
    if not wanted or _arena is None:
        return False
    _arena.install()
    return _arena.installed()


def active() -> dict[str, bool]:
    """What this process runs right now, by accelerator name."""
    return {ARENA_CACHE: _arena is not None and _arena.installed(),
            CTXLOCAL_SPEEDUPS: bool(ctxlocal.local.ACCELERATED)}


def summary() -> str:
    """The start-up line's text: what the workers will run, and why anything is off."""
    parts = []
    for name, (on, why) in ((ARENA_CACHE, _arena_state()),
                            (CTXLOCAL_SPEEDUPS, _ctxlocal_state())):
        parts.append(f"{name} {'on' if on else 'off'} ({why})")
    return "accelerators: " + ", ".join(parts)
