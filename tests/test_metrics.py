"""Metrics.flush() writes exactly what prometheus-client's Histogram.observe would have."""

from __future__ import annotations

from collections.abc import Iterator

import gevent
import pytest
from prometheus_client import REGISTRY, CollectorRegistry, Histogram

from server.metrics import DURATION_BUCKETS, FLUSH_EVERY, Metrics, WorkerFilesCollector

DURATIONS = [0.0, 0.0004, 0.001, 0.0011, 0.003, 0.05, 0.7, 1.0, 2.5, 9.9, 10.0, 11.0, 600.0]


@pytest.fixture
def metrics() -> Iterator[Metrics]:
    created = Metrics()
    yield created
    for metric in (created.requests, created.duration, created.in_flight, created.connections,
                   created.live_entries, created.live_contexts, created.accelerators,
                   created.worker_rss):
        REGISTRY.unregister(metric)


def samples(histogram: Histogram) -> dict[tuple[str, str], float]:
    """{(suffix, le): value}: ("_bucket", "0.001"), ..., ("_count", ""), ("_sum", "")."""
    return {(s.name.removeprefix(metric.name), s.labels.get("le", "")): s.value
            for metric in histogram.collect() for s in metric.samples
            if not s.name.endswith("_created")}


def test_batched_histogram_equals_observe_one_by_one(metrics: Metrics) -> None:
    reference = Histogram("reference_seconds", "one by one", buckets=DURATION_BUCKETS,
                          registry=CollectorRegistry())
    for duration in DURATIONS:
        metrics.observe(200, duration)
        reference.observe(duration)
    metrics.flush()
    got = samples(metrics.duration)
    assert got == samples(reference)
    assert got[("_bucket", "+Inf")] == got[("_count", "")] == len(DURATIONS)
    assert got[("_sum", "")] == pytest.approx(sum(DURATIONS))
    totals = [(s.labels, s.value) for metric in metrics.requests.collect()
              for s in metric.samples if s.name.endswith("_total")]
    assert totals == [({"status": "200"}, len(DURATIONS))]


def _written_total(metrics: Metrics) -> float:
    """Requests with status 200 as the shared (mmap-ed) values hold them."""
    return sum(s.value for metric in metrics.requests.collect() for s in metric.samples
               if s.name.endswith("_total"))


def test_counts_are_written_once_the_loop_is_idle(metrics: Metrics) -> None:
    """Not per request, but before the worker next sleeps: a scrape of a worker at rest
    sees every request it answered."""
    metrics.observe(200, 0.001)
    metrics.observe(200, 0.002)
    assert _written_total(metrics) == 0  # batched: nothing written yet
    gevent.sleep(0.01)  # the loop runs out of work: its idle watcher flushes
    assert _written_total(metrics) == 2
    gevent.sleep(0.01)
    assert _written_total(metrics) == 2  # each observation written once


def test_a_busy_worker_writes_every_flush_every_requests(metrics: Metrics) -> None:
    """A worker too busy to become idle still writes its counts out, FLUSH_EVERY at a time."""
    for _ in range(FLUSH_EVERY - 1):
        metrics.observe(200, 0.001)
    assert _written_total(metrics) == 0
    metrics.observe(200, 0.001)
    assert _written_total(metrics) == FLUSH_EVERY
    metrics.observe(200, 0.001)
    metrics.flush()  # as a scrape or the worker's exit does
    assert _written_total(metrics) == FLUSH_EVERY + 1
    gevent.sleep(0.01)
    assert _written_total(metrics) == FLUSH_EVERY + 1


def test_a_scrape_skips_a_new_workers_empty_file_and_one_removed_meanwhile(tmp_path,
                                                                          monkeypatch):
    """Seen during HUPs: a scrape racing a worker's start (its file still empty) or exit
    (its file removed after the listing) was a 500."""
    (tmp_path / "gauge_livesum_12345.db").write_bytes(b"")  # created, not yet written
    registry = CollectorRegistry()
    WorkerFilesCollector(registry, str(tmp_path))
    assert list(registry.collect()) == []
    real_merge, failures = WorkerFilesCollector.merge, [FileNotFoundError("gone")]

    def merge(files, accumulate=True):  # the master removed a listed file: once
        if failures:
            raise failures.pop()
        return real_merge(files, accumulate)

    monkeypatch.setattr(WorkerFilesCollector, "merge", staticmethod(merge))
    assert list(registry.collect()) == [] and failures == []
