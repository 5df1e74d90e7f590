"""The master's private prometheus-client multiprocess directory: create, prune, remove.

prometheus-client picks its storage when it is *imported*, from ``PROMETHEUS_MULTIPROC_DIR``,
so the directory must exist before anything imports it — :mod:`server.metrics`, or an app
imported with ``--preload``.  Hence this module imports nothing of prometheus-client.

The name carries the master's pid (``ctxserver-metrics-<pid>-<random>``): a master that died
without cleaning up (SIGKILL, OOM) leaves its directory behind, and the next master on the
machine removes every one whose pid no longer runs and that belongs to its own user.  A
directory the user chose (``PROMETHEUS_MULTIPROC_DIR`` already set) is never touched.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import shutil
import stat
import tempfile
from collections.abc import Iterator

__all__ = ["PREFIX", "metrics_directory", "prune_stale"]

log = logging.getLogger("server.metrics")

PREFIX = "ctxserver-metrics-"
_NAME = re.compile(re.escape(PREFIX) + r"(\d+)-")
ENV = "PROMETHEUS_MULTIPROC_DIR"


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    return True


def prune_stale(parent: str | None = None) -> list[str]:
    """Remove our user's metrics directories whose master is gone; returns their paths."""
    parent = parent or tempfile.gettempdir()
    removed = []
    try:
        names = os.listdir(parent)
    except OSError:
        return removed
    for name in names:
        match = _NAME.match(name)
        # Our own pid cannot own one yet: that is a directory of an earlier master that had
        # this pid (a restarted container, where the master's pid is always the same).
        if not match or (int(match[1]) != os.getpid() and _running(int(match[1]))):
            continue
        path = os.path.join(parent, name)
        try:
            info = os.lstat(path)
        except OSError:
            continue
        if stat.S_ISDIR(info.st_mode) and info.st_uid == os.geteuid():
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
    return removed


@contextlib.contextmanager
def metrics_directory() -> Iterator[str | None]:
    """Point ``PROMETHEUS_MULTIPROC_DIR`` at a fresh directory for this master's lifetime."""
    if os.environ.get(ENV):
        yield None
        return
    for path in prune_stale():
        log.info("removed %s, left behind by a master that is gone", path)
    path = tempfile.mkdtemp(prefix=f"{PREFIX}{os.getpid()}-")
    os.environ[ENV] = path
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)
        if os.environ.get(ENV) == path:
            del os.environ[ENV]
