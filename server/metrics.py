"""Prometheus metrics, aggregated over all workers (prometheus-client multiprocess mode).

The master points ``PROMETHEUS_MULTIPROC_DIR`` at a private directory *before* this module is
imported (the client library picks its storage at import time), every worker writes its
values there through mmap-ed files, and whichever worker answers ``/metrics`` collects them
all.  The master marks a dead worker's files so its live gauges disappear.

Per request the cost is one counter increment and one histogram observation.  Gauges that
describe a worker's state (in-flight requests, open connections, live ctxlocal entries, RSS)
are sampled once a second by the worker and refreshed right before a scrape.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from typing import Any

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

__all__ = ["Metrics", "mark_worker_dead"]

_PREFIX = "ctxserver_"


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
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10))
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
        self.worker_rss = Gauge(f"{_PREFIX}worker_rss_bytes", "Resident memory per worker.",
                                ["pid"], multiprocess_mode="liveall")
        self._by_status: dict[int, Any] = {}
        self._pid = str(os.getpid())

    def observe(self, status: int, duration: float) -> None:
        """Record one finished request (called once per request)."""
        counter = self._by_status.get(status)
        if counter is None:
            counter = self._by_status[status] = self.requests.labels(str(status))
        counter.inc()
        self.duration.observe(duration)

    def sample(self, in_flight: int, connections: int) -> None:
        """Refresh this worker's state gauges (once a second, and before a scrape)."""
        self.in_flight.set(in_flight)
        self.connections.set(connections)
        for name, count in ctxlocal.stats().items():
            self.live_entries.labels(name).set(count)
        self.live_contexts.set(ctxlocal.live_contexts())
        self.worker_rss.labels(self._pid).set(_rss_bytes())

    def wsgi_endpoint(self, refresh: Callable[[], None]) -> Callable[..., Iterable[bytes]]:
        """The ``/metrics`` app: refresh this worker's gauges, collect every worker's."""

        def metrics_app(environ: dict[str, Any], start_response: Callable[..., Any]
                        ) -> Iterable[bytes]:
            refresh()
            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry)
            body = generate_latest(registry)
            start_response("200 OK", [("Content-Type", CONTENT_TYPE_LATEST),
                                      ("Content-Length", str(len(body))),
                                      ("Cache-Control", "no-store")])
            return [body]

        return metrics_app


def mark_worker_dead(pid: int) -> None:
    """Called by the master when a worker exits: drop its live gauges."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        multiprocess.mark_process_dead(pid)
