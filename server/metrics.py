"""Prometheus metrics, aggregated over all workers (prometheus-client multiprocess mode).

The master points ``PROMETHEUS_MULTIPROC_DIR`` at a private directory *before* this module is
imported (the client library picks its storage at import time), every worker writes its
values there through mmap-ed files, and whichever worker answers ``/metrics`` collects them
all.  The master marks a dead worker's files so its live gauges disappear.

Per request the cost is a few integer additions: :meth:`Metrics.observe` counts into plain
Python ints, and those are written to the mmap-ed values (a lock, a ``getpid`` and a
``struct.pack_into`` per value) in one batch: as soon as the worker's event loop has nothing
else to do (a libev idle watcher: before the worker next sleeps, so a scrape of a worker
at rest never misses a request it answered), every :data:`FLUSH_EVERY` requests while it
is too busy to be idle, before every scrape it answers, and at exit.  A flush per turn of
the loop, as it was, is a flush per request under load: a busy worker's loop turns once
per request (bench/results/profile.md).  Gauges that describe a worker's state (in-flight
requests, open connections, live ctxlocal entries, RSS) are sampled once a second by the
worker and refreshed right before a scrape.
"""

from __future__ import annotations

import contextlib
import glob
import os
from bisect import bisect_left
from collections.abc import Callable, Iterable
from typing import Any

import gevent
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)

import ctxlocal

__all__ = ["Metrics", "WorkerFilesCollector", "mark_worker_dead"]

_PREFIX = "ctxserver_"
#: Upper bounds of the request duration histogram, in seconds (+Inf is added after them).
DURATION_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
#: A worker too busy to become idle writes its counts out after this many requests (some
#: 10-20 ms of a saturated worker): what another worker's scrape can miss of it at most.
FLUSH_EVERY = 256


def _rss_bytes() -> int:
    """Resident set size of this process, from /proc (Linux); 0 where unavailable."""
    try:
        with open("/proc/self/statm", "rb") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0


class Metrics:
    """The server's metrics of one worker process, plus the ``/metrics`` WSGI endpoint."""

    def __init__(self) -> None:
        self.requests = Counter(f"{_PREFIX}requests_total", "Requests answered, by status.",
                                ["status"])
        self.duration = Histogram(
            f"{_PREFIX}request_duration_seconds",
            "Time from the complete request head to the end of the response.",
            buckets=DURATION_BUCKETS)
        self.in_flight = Gauge(f"{_PREFIX}requests_in_flight", "Requests being handled.",
                               multiprocess_mode="livesum")
        self.connections = Gauge(f"{_PREFIX}open_connections", "Open client connections.",
                                 multiprocess_mode="livesum")
        self.live_entries = Gauge(
            f"{_PREFIX}ctxlocal_live_entries",
            "Live ctxlocal entries per Local (0 when no request is running: anything else "
            "is a leak).", ["local"], multiprocess_mode="livesum")
        self.live_contexts = Gauge(
            f"{_PREFIX}ctxlocal_live_contexts",
            "Greenlets/threads holding at least one ctxlocal entry.",
            multiprocess_mode="livesum")
        self.accelerators = Gauge(
            f"{_PREFIX}accelerator_active",
            "1 when every live worker runs this optional C accelerator, else 0 "
            "(see server/accelerators.py).", ["name"], multiprocess_mode="livemin")
        self.worker_rss = Gauge(f"{_PREFIX}worker_rss_bytes", "Resident memory per worker.",
                                ["pid"], multiprocess_mode="liveall")
        self._by_status: dict[int, Any] = {}
        self._pid = str(os.getpid())
        # Not yet written to the mmap-ed values: requests by status, and the histogram's
        # observations as (non-cumulative) bucket counts plus their sum -- exactly what
        # Histogram.observe would have added, bucket i being the first with amount <= bound
        # (the Histogram's bounds: ours, then +Inf).
        self._bounds: tuple[float, ...] = (*map(float, DURATION_BUCKETS), float("inf"))
        self._pending_status: dict[int, int] = {}
        self._pending_buckets = [0] * len(self._bounds)
        self._pending_sum = 0.0
        self._pending_count = 0
        #: The idle watcher that runs flush() once the loop has nothing else to do; active
        #: while requests are pending (an active idle watcher keeps the loop from sleeping).
        self._idle: Any = None
        self._flush_scheduled = False

    def observe(self, status: int, duration: float) -> None:
        """Record one finished request (called once per request); written out by
        :meth:`flush` once the worker is idle, or after FLUSH_EVERY requests."""
        pending = self._pending_status
        pending[status] = pending.get(status, 0) + 1
        self._pending_buckets[bisect_left(self._bounds, duration)] += 1
        self._pending_sum += duration
        self._pending_count += 1
        if self._pending_count >= FLUSH_EVERY:
            self.flush()
        elif not self._flush_scheduled:
            self._flush_scheduled = True
            idle = self._idle
            if idle is None:
                idle = self._idle = gevent.get_hub().loop.idle(ref=False)
            idle.start(self.flush)

    def observe_response(self, environ: dict[str, Any], status: int, size: int,
                         duration: float) -> None:
        """:meth:`observe` with the signature of a connection's ``on_response`` hook."""
        self.observe(status, duration)

    def flush(self) -> None:
        """Write the requests observed since the last flush to the shared values."""
        if self._flush_scheduled:
            self._flush_scheduled = False
            self._idle.stop()
        self._pending_count = 0
        pending, self._pending_status = self._pending_status, {}
        buckets = self._pending_buckets
        total, self._pending_sum = self._pending_sum, 0.0
        for status, count in pending.items():
            counter = self._by_status.get(status)
            if counter is None:
                counter = self._by_status[status] = self.requests.labels(str(status))
            counter.inc(count)
        if not pending:
            return
        values, value_sum = _histogram_values(self.duration)
        for i, count in enumerate(buckets):
            if count:
                values[i].inc(count)
                buckets[i] = 0
        value_sum.inc(total)

    def sample(self, in_flight: int, connections: int) -> None:
        """Refresh this worker's state gauges (once a second, and before a scrape)."""
        self.flush()
        self.in_flight.set(in_flight)
        self.connections.set(connections)
        for name, count in ctxlocal.stats().items():
            self.live_entries.labels(name).set(count)
        self.live_contexts.set(ctxlocal.live_contexts())
        self.worker_rss.labels(self._pid).set(_rss_bytes())

    def set_accelerators(self, active: dict[str, bool]) -> None:
        """Export which accelerators this worker runs (once, at boot)."""
        for name, on in active.items():
            self.accelerators.labels(name).set(int(on))

    def wsgi_endpoint(self, refresh: Callable[[], None]) -> Callable[..., Iterable[bytes]]:
        """The ``/metrics`` app: refresh this worker's gauges, collect every worker's."""

        def metrics_app(environ: dict[str, Any], start_response: Callable[..., Any]
                        ) -> Iterable[bytes]:
            refresh()
            registry = CollectorRegistry()
            WorkerFilesCollector(registry)
            body = generate_latest(registry)
            start_response("200 OK", [("Content-Type", CONTENT_TYPE_LATEST),
                                      ("Content-Length", str(len(body))),
                                      ("Cache-Control", "no-store")])
            return [body]

        return metrics_app


class WorkerFilesCollector(multiprocess.MultiProcessCollector):
    """prometheus-client's collector of every worker's files, minus the two it fails on
    while workers come and go (a HUP, recycling): a new worker's file before its first
    write (empty: ``struct.error`` — the scrape was a 500), and a file the master removed
    for a worker that exited, between the listing and the read (listed again)."""

    ATTEMPTS = 3

    def __init__(self, registry: CollectorRegistry | None, path: str | None = None) -> None:
        super().__init__(registry, path)
        self.directory = path or os.environ["PROMETHEUS_MULTIPROC_DIR"]

    def collect(self) -> Iterable[Any]:
        for attempt in range(self.ATTEMPTS):
            try:
                return self.merge(self._written_files(), accumulate=True)
            except FileNotFoundError:
                if attempt == self.ATTEMPTS - 1:
                    raise
        return []  # pragma: no cover - the loop returns or raises

    def _written_files(self) -> list[str]:
        found = []
        for path in glob.glob(os.path.join(self.directory, "*.db")):
            with contextlib.suppress(FileNotFoundError):
                if os.path.getsize(path) >= _USED_HEADER:
                    found.append(path)
        return found


#: A values file begins with how much of it is used (a 4-byte integer, padded to 8).
_USED_HEADER = 8


def _histogram_values(histogram: Histogram) -> tuple[list[Any], Any]:
    """The per-bucket values and the sum value of a prometheus-client Histogram.

    prometheus-client has no public way to add many observations at once, so flush() adds
    to these what Histogram.observe would have added one by one. They are private to the
    library (the version is pinned in requirements.txt; tests/test_metrics.py checks the
    result against Histogram.observe).
    """
    return histogram._buckets, histogram._sum  # noqa: SLF001 - no public batch API


def mark_worker_dead(pid: int) -> None:
    """Called by the master when a worker exits: drop its live gauges."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        multiprocess.mark_process_dead(pid)
