"""Reading the server's ``/metrics`` text: prometheus-client's own parser, flattened to
``{sample name: {labels: value}}`` (labels as Prometheus writes them, ``""`` for none)."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

__all__ = ["parse_samples"]


def parse_samples(text: str) -> dict[str, dict[str, float]]:
    """``{"ctxserver_requests_total": {'{status="200"}': 12.0}, ...}`` from exposition text."""
    samples: dict[str, dict[str, float]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = ",".join(f'{key}="{value}"' for key, value in sorted(sample.labels.items()))
            samples.setdefault(sample.name, {})[f"{{{labels}}}" if labels else ""] = sample.value
    return samples
