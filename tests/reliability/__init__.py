"""Reliability cases: hostile HTTP, slow clients, fuzzing, faults — one source of truth.

Every case runs against a real ``python -m server`` on 127.0.0.1 and is defined exactly once,
in this package: the framework (``framework``: groups, cases, verdicts; ``session``: a group's
server, its good client and the invariants checked after every case; ``wire``: raw
exchanges; ``good_client``; ``locust_run``: the load of the fault cases) and one module per
group, imported below in report order. ``tests/test_reliability.py`` parametrizes pytest
over :data:`CASES`; ``python -m tests.reliability_report`` (``make reliability``) runs the
same cases and prints the case / expected / got table (the README's Reliability section is
one such run, written by ``--markdown``).

Everything is bounded: every socket has a timeout, every loop a count or a deadline, and
every process started here is stopped (``tests.support.running_server`` and the
``LocustRun`` context manager).
"""

from __future__ import annotations

import importlib

from tests.reliability.framework import CASES, GROUPS, Case, Group, Mismatch, cases_of
from tests.reliability.session import Outcome, Session, Sessions, run_case, run_group

GROUP_MODULES = ("hostile", "slow", "fuzz", "faults", "startup")
"""Each registers its group and cases when imported; this order is the report's."""

for _module in GROUP_MODULES:
    importlib.import_module(f"{__name__}.{_module}")

__all__ = ["CASES", "GROUPS", "GROUP_MODULES", "Case", "Group", "Mismatch", "Outcome", "Session",
           "Sessions", "cases_of", "run_case", "run_group"]
