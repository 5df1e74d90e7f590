"""Reading the server's ``/metrics`` text: prometheus-client's own parser, flattened to
``{sample name: {labels: value}}`` (labels as Prometheus writes them, ``""`` for none)."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

__all__ = ["LIVE_GAUGES", "live_after_run", "parse_samples"]


def parse_samples(text: str) -> dict[str, dict[str, float]]:
    """``{"ctxserver_requests_total": {'{status="200"}': 12.0}, ...}`` from exposition text."""
    samples: dict[str, dict[str, float]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = ",".join(f'{key}="{value}"' for key, value in sorted(sample.labels.items()))
            samples.setdefault(sample.name, {})[f"{{{labels}}}" if labels else ""] = sample.value
    return samples


LIVE_GAUGES = ("ctxserver_ctxlocal_live_entries", "ctxserver_ctxlocal_live_contexts")
"""What must return to 0 once the load stops: values of ended requests still held."""


def live_after_run(text: str) -> float:
    """Live ctxlocal entries plus live contexts, summed over every Local and worker."""
    samples = parse_samples(text)
    return sum(sum(samples.get(name, {}).values()) for name in LIVE_GAUGES)
