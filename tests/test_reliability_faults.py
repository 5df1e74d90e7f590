"""Faults under locust load (SIGKILL of a worker, SIGTERM, SIGHUP, a full disk) and start-up
errors: the leak-probe contract holds throughout, no accepted request is lost, and every
start-up error is one line on stderr with exit code 2.

The cases are defined once, in ``tests/reliability_cases.py``; ``make reliability`` runs the
same ones and prints the table.
"""

from __future__ import annotations

import pytest

from tests.reliability_cases import Sessions, cases_of, run_case

GROUPS = ("faults", "startup")
CASES = [c for g in GROUPS for c in cases_of(g, include_covered=False)]


@pytest.fixture(scope="module")
def sessions(tmp_path_factory):
    with Sessions(tmp_path_factory.mktemp) as started:
        yield started


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_reliability(sessions, case):
    outcome = run_case(sessions.get(case.group), case)
    assert outcome.passed, f"{case.name}: expected {case.expected}; got {outcome.got}"
