"""``python -m tests.reliability_report`` (``make reliability``): the reliability table.

Runs every case of ``tests/reliability/`` — the same definitions the pytest file
``tests/test_reliability.py`` uses — group by group against real servers on 127.0.0.1, and
prints one Markdown table per group: case, expected, got, PASS/FAIL. Exits 1 if any case
failed.

    python -m tests.reliability_report                  # every group
    python -m tests.reliability_report hostile slow     # some groups
    python -m tests.reliability_report --list           # the groups and their cases
    python -m tests.reliability_report --markdown       # every group, then README.md's run

``--markdown`` writes the run into README.md between the markers below (a run of every
group, failed cases included: the README shows what happened). ``tests/test_reliability.py``
checks that the README lists exactly the current groups, cases and expectations.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import re
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from tests.reliability import GROUPS, Outcome, cases_of, run_group

README = Path(__file__).resolve().parent.parent / "README.md"
BEGIN = "<!-- reliability-report:begin (python -m tests.reliability_report --markdown) -->"
END = "<!-- reliability-report:end -->"
TABLE_HEAD = ["| case | expected | got | result |", "|---|---|---|---|"]
PASS, FAIL = "PASS", "**FAIL**"


def cell(text: str) -> str:
    """Text as one Markdown table cell (a ``|`` escaped, no line breaks)."""
    return text.replace("|", "\\|").replace("\n", " ")


def row(outcome: Outcome) -> str:
    c = outcome.case
    verdict = PASS if outcome.passed else FAIL
    return f"| {cell(c.name)} | {cell(c.expected)} | {cell(outcome.got)} | {verdict} |"


def heading(group: str) -> str:
    return f"#### {GROUPS[group].title}"


def summary(outcomes: Sequence[Outcome], seconds: float) -> str:
    failed = [o for o in outcomes if not o.passed]
    return (f"{len(outcomes) - len(failed)}/{len(outcomes)} cases passed in {seconds:.0f} s"
            + (": FAILED " + ", ".join(o.case.name for o in failed) if failed else ""))


def markdown(by_group: dict[str, list[Outcome]], seconds: float, when: datetime.date) -> str:
    """The README's section: what ran, where, the verdict, then one table per group."""
    outcomes = [o for group in by_group.values() for o in group]
    lines = [f"`python -m tests.reliability_report`, {when.isoformat()}, {platform.system()}, "
             f"{os.cpu_count()} CPU cores shared with other jobs; "
             f"{summary(outcomes, seconds)}."]
    for group, results in by_group.items():
        lines += ["", heading(group), "", *TABLE_HEAD, *(row(o) for o in results)]
    return "\n".join(lines)


def replace_section(text: str, section: str) -> str:
    """``text`` with what lies between :data:`BEGIN` and :data:`END` replaced by
    ``section``; a ValueError if the markers are not there exactly once."""
    if text.count(BEGIN) != 1 or text.count(END) != 1:
        raise ValueError(f"README needs the markers {BEGIN!r} and {END!r} once each")
    head, rest = text.split(BEGIN)
    _, tail = rest.split(END)
    return f"{head}{BEGIN}\n{section}\n{END}{tail}"


def section_of(text: str) -> str:
    """What lies between the markers (the README's recorded run)."""
    return text.split(BEGIN, 1)[1].split(END, 1)[0].strip("\n")


_UNESCAPED_BAR = re.compile(r"(?<!\\)\|")


def recorded_rows(section: str) -> dict[str, list[list[str]]]:
    """``{group title: [[case, expected, got, result], ...]}`` of a recorded run."""
    groups: dict[str, list[list[str]]] = {}
    current: list[list[str]] | None = None
    for line in section.splitlines():
        if line.startswith("#### "):
            current = groups.setdefault(line[5:], [])
        elif line.startswith("| ") and line not in TABLE_HEAD and current is not None:
            current.append([c.strip() for c in _UNESCAPED_BAR.split(line)[1:-1]])
    return groups


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.reliability_report",
                                     description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("groups", nargs="*", metavar="GROUP",
                        help=f"groups to run (default: all of {', '.join(GROUPS)})")
    parser.add_argument("--list", action="store_true", help="list groups and cases, run none")
    parser.add_argument("--markdown", action="store_true",
                        help="run every group, then write the run into README.md")
    args = parser.parse_args(argv)
    unknown = [g for g in args.groups if g not in GROUPS]
    if unknown:
        parser.error(f"unknown group(s) {', '.join(unknown)}; choose from {', '.join(GROUPS)}")
    if args.markdown and args.groups:
        parser.error("--markdown runs every group (the README shows all of them)")
    names = args.groups or list(GROUPS)
    if args.list:
        for name in names:
            print(f"{name}: {GROUPS[name].title}")
            for c in cases_of(name):
                print(f"  - {c.name}")
        return 0
    started = time.monotonic()
    by_group: dict[str, list[Outcome]] = {}
    for name in names:
        print(f"\n{heading(name)[1:]}\n", *TABLE_HEAD, sep="\n", flush=True)
        by_group[name] = run_group(name, on_outcome=lambda o: print(row(o), flush=True))
    elapsed = time.monotonic() - started
    outcomes = [o for group in by_group.values() for o in group]
    print(f"\n{summary(outcomes, elapsed)}")
    if args.markdown:
        today = datetime.datetime.now(datetime.UTC).date()
        README.write_text(replace_section(README.read_text(), markdown(by_group, elapsed,
                                                                       today)))
        print(f"wrote the run into {README}")
    return 1 if any(not o.passed for o in outcomes) else 0


if __name__ == "__main__":
    sys.exit(main())
