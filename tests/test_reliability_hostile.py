"""Hostile HTTP on real sockets: every malformed, smuggling or over-limit request is answered
with the right status and closed where the protocol requires, while a well-behaved client
(leak probes on a kept-alive and on fresh connections) keeps being served without a failure.

The cases are defined once, in ``tests/reliability_cases.py``; ``make reliability`` runs the
same ones and prints the table.
"""

from __future__ import annotations

import pytest

from tests.reliability_cases import Sessions, cases_of, run_case

GROUPS = ("hostile",)
CASES = [c for g in GROUPS for c in cases_of(g, include_covered=False)]


@pytest.fixture(scope="module")
def sessions(tmp_path_factory):
    with Sessions(tmp_path_factory.mktemp) as started:
        yield started


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_reliability(sessions, case):
    outcome = run_case(sessions.get(case.group), case)
    assert outcome.passed, f"{case.name}: expected {case.expected}; got {outcome.got}"
