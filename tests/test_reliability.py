"""Reliability against running servers, every case of ``tests/reliability/``:

- hostile HTTP: every malformed, smuggling or over-limit request is answered with the right
  status and closed where the protocol requires;
- slow and idle clients: slowloris heads and stalled bodies cut at --read-timeout, idle keep-alive
  connections closed after --keep-alive, a flood beyond --worker-connections queued without
  starving the connections already accepted;
- fuzzing with hypothesis: every input answered (never a 5xx but 501/505) or closed, the
  worker never crashes;
- faults under locust load (SIGKILL of a worker, SIGTERM, SIGHUP, a full disk) and start-up
  errors (one line on stderr, exit code 2);

all while a well-behaved client sending leak probes keeps being served without a failure or
a leak.  ``make reliability`` runs the same cases and prints the table; the README holds one
such run, and the last test here keeps it listing exactly these cases.
"""

from __future__ import annotations

import re

import pytest

from tests.reliability import GROUPS, Sessions, cases_of, run_case
from tests.reliability_report import FAIL, PASS, README, cell, recorded_rows, section_of

CASES = [c for g in GROUPS for c in cases_of(g, include_covered=False)]


@pytest.fixture(scope="module")
def sessions(tmp_path_factory):
    with Sessions(tmp_path_factory.mktemp) as started:
        yield started


@pytest.mark.parametrize("case", CASES, ids=[f"{c.group}-{c.id}" for c in CASES])
def test_reliability(sessions, case):
    outcome = run_case(sessions.get(case.group), case)
    assert outcome.passed, f"{case.name}: expected {case.expected}; got {outcome.got}"


def test_readme_records_a_run_of_exactly_the_current_cases():
    """The README's reliability tables (written by ``python -m tests.reliability_report
    --markdown``) list every group and case of today, in order, each with its expectation.

    Compared: group titles, case names, expected column. Not compared: the "got" and result
    columns — they are what one run measured (timings, request counts, pids, ports, temporary
    paths all differ from run to run, and a faithful record may even show a failure); the
    check only requires every row to carry a verdict and the summary line to count the rows.
    """
    section = section_of(README.read_text())
    recorded = recorded_rows(section)
    stale = "README's reliability run is stale: run `python -m tests.reliability_report " \
            "--markdown`"
    assert list(recorded) == [group.title for group in GROUPS.values()], stale
    for name, group in GROUPS.items():
        rows = recorded[group.title]
        assert [(r[0], r[1]) for r in rows] == [(cell(c.name), cell(c.expected))
                                                for c in cases_of(name)], f"{stale} ({name})"
        assert all(len(r) == 4 and r[3] in (PASS, FAIL) for r in rows), rows
    counted = re.search(r"(\d+)/(\d+) cases passed", section.splitlines()[0])
    assert counted is not None, section.splitlines()[0]
    passed = sum(r[3] == PASS for rows in recorded.values() for r in rows)
    total = sum(len(rows) for rows in recorded.values())
    assert (int(counted[1]), int(counted[2])) == (passed, total)
