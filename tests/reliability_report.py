"""``python -m tests.reliability_report`` (``make reliability``): the reliability table.

Runs every case of ``tests/reliability/`` — the same definitions the pytest files
``tests/test_reliability.py`` uses — group by group against real servers on 127.0.0.1, and
prints one Markdown table: case, expected, got, PASS/FAIL. Exits 1 if any case failed.

    python -m tests.reliability_report                  # every group
    python -m tests.reliability_report hostile slow     # some groups
    python -m tests.reliability_report --list           # the groups and their cases
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence

from tests.reliability import GROUPS, Outcome, cases_of, run_group


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def row(outcome: Outcome) -> str:
    c = outcome.case
    verdict = "PASS" if outcome.passed else "**FAIL**"
    return f"| {_cell(c.name)} | {_cell(c.expected)} | {_cell(outcome.got)} | {verdict} |"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.reliability_report",
                                     description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("groups", nargs="*", metavar="GROUP",
                        help=f"groups to run (default: all of {', '.join(GROUPS)})")
    parser.add_argument("--list", action="store_true", help="list groups and cases, run none")
    args = parser.parse_args(argv)
    unknown = [g for g in args.groups if g not in GROUPS]
    if unknown:
        parser.error(f"unknown group(s) {', '.join(unknown)}; choose from {', '.join(GROUPS)}")
    names = args.groups or list(GROUPS)
    if args.list:
        for name in names:
            print(f"{name}: {GROUPS[name].title}")
            for c in cases_of(name):
                print(f"  - {c.name}")
        return 0
    started = time.monotonic()
    outcomes: list[Outcome] = []
    for name in names:
        print(f"\n### {GROUPS[name].title}\n", flush=True)
        print("| case | expected | got | result |")
        print("|---|---|---|---|", flush=True)
        outcomes += run_group(name, on_outcome=lambda o: print(row(o), flush=True))
    failed = [o for o in outcomes if not o.passed]
    elapsed = time.monotonic() - started
    print(f"\n{len(outcomes) - len(failed)}/{len(outcomes)} cases passed in {elapsed:.0f} s"
          + (": FAILED " + ", ".join(o.case.name for o in failed) if failed else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
