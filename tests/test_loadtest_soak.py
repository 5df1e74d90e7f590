"""The soak's memory verdict (``loadtests/soak.py``), on made-up RSS samples; the soak itself
runs on demand only (``make soak``)."""

from __future__ import annotations

from loadtests.soak import rss_problems

MiB = 2**20


def test_flat_rss_passes_and_growth_fails() -> None:
    baseline = {"1": 100 * MiB, "2": 100 * MiB}
    assert rss_problems(baseline, {"1": 104 * MiB, "2": 99 * MiB}, 0.05) == []
    assert rss_problems(baseline, {"1": 105 * MiB, "2": 99 * MiB}, 0.05) == [
        "worker 1 RSS grew 5.00%"]


def test_replaced_workers_and_no_baseline_fail() -> None:
    assert rss_problems({"1": MiB}, {"3": MiB}, 0.05) == [
        "workers changed during the soak: ['1'] → ['3']"]
    assert rss_problems(None, {"1": MiB}, 0.05) == [
        "never got past the warm-up; no RSS baseline"]
