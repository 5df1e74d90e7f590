"""Metrics.flush() writes exactly what prometheus-client's Histogram.observe would have."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from prometheus_client import REGISTRY, CollectorRegistry, Histogram

from server.metrics import DURATION_BUCKETS, Metrics

DURATIONS = [0.0, 0.0004, 0.001, 0.0011, 0.003, 0.05, 0.7, 1.0, 2.5, 9.9, 10.0, 11.0, 600.0]


@pytest.fixture
def metrics() -> Iterator[Metrics]:
    created = Metrics()
    yield created
    for metric in (created.requests, created.duration, created.in_flight, created.connections,
                   created.live_entries, created.live_contexts, created.worker_rss):
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
