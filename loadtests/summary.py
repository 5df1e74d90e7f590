"""The verdict's arithmetic and its summary text, without locust.

Kept apart from ``verdict`` (which reads locust's statistics) because importing locust
monkey-patches the whole process with gevent: scripts and tests that only decide, print or
parse a summary — ``tests/test_loadtest_run.py`` parses the runner's output — must not pay
for that, nor impose it on the rest of a shared pytest process.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["SUMMARY_TAG", "Decision", "Tally", "decide", "format_summary", "headline",
           "parse_summary"]

SUMMARY_TAG = "LOADTEST SUMMARY"
"""Starts the one machine-readable summary line (``key=value`` pairs follow)."""


@dataclass(frozen=True)
class Tally:
    """What the run did, as locust counted it."""

    requests: int
    failures: int
    leaks: int
    user_errors: int
    rps: float
    p50: float
    p95: float
    p99: float

    @property
    def other_failures(self) -> int:
        """Failures that are not leaks: timeouts, refused connections, 5xx, bad JSON..."""
        return self.failures - self.leaks


@dataclass(frozen=True)
class Decision:
    """The exit code and, when it is not 0, every reason why."""

    exit_code: int
    reasons: tuple[str, ...]

    @property
    def passed(self) -> bool:
        return self.exit_code == 0


def decide(t: Tally, *, min_requests: int, expect_leaks: bool) -> Decision:
    """Pass (0) or fail (1); every failed condition is named, not just the first.

    A run that made fewer than ``min_requests`` requests proves nothing and fails.  Normally
    any leak fails; under ``expect_leaks`` (the negative control) finding *no* leak fails,
    since then the detector is blind.  Non-leak failures and exceptions in the locustfile
    fail either way: they mean part of the load never tested anything.
    """
    reasons = []
    if t.requests < min_requests:
        reasons.append(f"only {t.requests} requests, fewer than the minimum {min_requests}")
    if expect_leaks and t.leaks == 0:
        reasons.append("negative control found no leaks: the detector is blind")
    if not expect_leaks and t.leaks:
        reasons.append(f"{t.leaks} requests saw another request's context (LEAK)")
    if t.other_failures:
        reasons.append(f"{t.other_failures} failures that are not leaks")
    if t.user_errors:
        reasons.append(f"{t.user_errors} exceptions in the locustfile's own code")
    return Decision(1 if reasons else 0, tuple(reasons))


def headline(t: Tally, d: Decision, *, expect_leaks: bool) -> str:
    """The verdict in one sentence, for the web UI's banner, the report and the log."""
    if not d.passed:
        return "FAIL: " + "; ".join(d.reasons)
    if expect_leaks:
        return (f"PASS (negative control): {t.leaks:,} of {t.requests:,} requests were caught "
                "leaking, so the detector works")
    return f"PASS: no request saw another request's context ({t.requests:,} requests, 0 leaks)"


def format_summary(t: Tally, d: Decision, *, min_requests: int, expect_leaks: bool) -> str:
    """Human lines, then one ``LOADTEST SUMMARY key=value ...`` line for scripts and tests."""
    verdict = "PASS" if d.passed else "FAIL"
    expectation = "leaks (negative control)" if expect_leaks else "no leaks"
    return "\n".join([
        f"==== leak-probe verdict: {verdict} ====",
        f"expected          {expectation}",
        f"requests          {t.requests} (minimum {min_requests})",
        f"leaks             {t.leaks}",
        f"other failures    {t.other_failures}",
        f"req/s             {t.rps:.1f}",
        f"latency ms        p50 {t.p50:g}  p95 {t.p95:g}  p99 {t.p99:g}",
        *(f"FAIL: {reason}" for reason in d.reasons),
        f"{SUMMARY_TAG} verdict={verdict} exit_code={d.exit_code} requests={t.requests}"
        f" leaks={t.leaks} other_failures={t.other_failures} user_errors={t.user_errors}"
        f" rps={t.rps:.1f} p50_ms={t.p50:g} p95_ms={t.p95:g} p99_ms={t.p99:g}"
        f" min_requests={min_requests} expect_leaks={int(expect_leaks)}",
    ])


def parse_summary(output: str) -> dict[str, str]:
    """The ``key=value`` pairs of the last summary line in ``output`` ({} when there is none)."""
    found = [line for line in output.splitlines() if line.startswith(SUMMARY_TAG)]
    if not found:
        return {}
    return dict(pair.split("=", 1) for pair in found[-1][len(SUMMARY_TAG):].split())
