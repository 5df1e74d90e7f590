"""Reliability against running servers, every case of ``tests/reliability/``:

- hostile HTTP: every malformed, smuggling or over-limit request is answered with the right
  status and closed where the protocol requires;
- slow and idle clients: slowloris heads and stalled bodies cut at --timeout, idle keep-alive
  connections closed after --keep-alive, a flood beyond --worker-connections queued without
  starving the connections already accepted;
- fuzzing with hypothesis: every input answered (never a 5xx but 501/505) or closed, the
  worker never crashes;
- faults under locust load (SIGKILL of a worker, SIGTERM, SIGHUP, a full disk) and start-up
  errors (one line on stderr, exit code 2);

all while a well-behaved client sending leak probes keeps being served without a failure or
a leak.  ``make reliability`` runs the same cases and prints the table.
"""

from __future__ import annotations

import pytest

from tests.reliability import GROUPS, Sessions, cases_of, run_case

CASES = [c for g in GROUPS for c in cases_of(g, include_covered=False)]


@pytest.fixture(scope="module")
def sessions(tmp_path_factory):
    with Sessions(tmp_path_factory.mktemp) as started:
        yield started


@pytest.mark.parametrize("case", CASES, ids=[f"{c.group}-{c.id}" for c in CASES])
def test_reliability(sessions, case):
    outcome = run_case(sessions.get(case.group), case)
    assert outcome.passed, f"{case.name}: expected {case.expected}; got {outcome.got}"
