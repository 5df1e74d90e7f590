"""The reliability cases' framework: groups, cases, and the verdict of one case.

Shape of a case: a function ``run(session) -> str`` registered with :func:`case`. It returns
what it observed ("got") when the server behaved as ``expected``, and raises
:class:`Mismatch` carrying what it observed otherwise. The cases of one :class:`Group` share
one server (the group's options); groups with ``server=None`` start and stop their own.
Running them is ``tests.reliability.session``'s job.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tests.reliability.session import Session


class Mismatch(AssertionError):
    """The server did not behave as the case expects; the message is what it did instead."""


def expect(condition: Any, got: str) -> None:
    if not condition:
        raise Mismatch(got)


@dataclass(frozen=True)
class Group:
    """One server configuration shared by the cases of the group (``server=None``: none)."""

    name: str
    title: str
    server: tuple[str, ...] | None
    workers: int = 1
    good_client: bool = True


GROUPS: dict[str, Group] = {}


def group(name: str, title: str, server: tuple[str, ...] | None, **kw: Any) -> Group:
    GROUPS[name] = g = Group(name, title, server, **kw)
    return g


@dataclass(frozen=True)
class Case:
    group: str
    name: str
    expected: str
    run: Callable[[Session], str]
    #: Set when an existing test already covers exactly this (pytest then does not run it
    #: again; the report still shows it).
    covered_by: str | None = None

    @property
    def id(self) -> str:
        return re.sub(r"[^a-z0-9]+", "-", self.name.lower()).strip("-")


CASES: list[Case] = []


def case(group_name: str, name: str, expected: str, *, covered_by: str | None = None
         ) -> Callable[[Callable[[Session], str]], Callable[[Session], str]]:
    def register(func: Callable[[Session], str]) -> Callable[[Session], str]:
        CASES.append(Case(group_name, name, expected, func, covered_by))
        return func
    return register


def cases_of(group_name: str, *, include_covered: bool = True) -> list[Case]:
    return [c for c in CASES if c.group == group_name
            and (include_covered or c.covered_by is None)]
