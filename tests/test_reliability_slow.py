"""Slow and idle clients: slowloris heads and stalled bodies are cut at --timeout, idle
keep-alive connections closed after --keep-alive, and a flood of idle connections beyond
--worker-connections queues new clients without starving the connections already accepted.

The cases are defined once, in ``tests/reliability_cases.py``; ``make reliability`` runs the
same ones and prints the table.
"""

from __future__ import annotations

import pytest

from tests.reliability_cases import Sessions, cases_of, run_case

GROUPS = ("slow",)
CASES = [c for g in GROUPS for c in cases_of(g, include_covered=False)]


@pytest.fixture(scope="module")
def sessions(tmp_path_factory):
    with Sessions(tmp_path_factory.mktemp) as started:
        yield started


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_reliability(sessions, case):
    outcome = run_case(sessions.get(case.group), case)
    assert outcome.passed, f"{case.name}: expected {case.expected}; got {outcome.got}"
