"""What counts as a leak: one probe response judged against the token that was sent.

The rules are those of ``docs/probe-contract.md``: every echoed value must equal the token,
``stale`` must be empty, every fan-out child must have seen the token.  They live here, as pure
functions without locust or I/O, so that the locustfile and the unit tests apply exactly the
same judgement, and so that a change of the contract is a change in one place.

Every outcome is a list of :class:`Problem`.  A problem is a *leak* when the server showed this
request something that is not its own token (another request's data, or nothing where its own
value belonged); everything else (wrong status, unparsable body, a payload missing keys) is a
failure that is *not* a leak.  :func:`failure_message` renders the list into the text handed to
locust's ``response.failure``; leak messages start with :data:`LEAK_PREFIX`, which is how the
verdict tells leaks from other failures, also after locust shipped them from a worker to the
master as plain strings.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from typing import Any

__all__ = [
    "CHILD_KEYS",
    "LEAK_PREFIX",
    "VALUE_KEYS",
    "Problem",
    "check_error_status",
    "check_probe",
    "check_probe_body",
    "check_stream_body",
    "failure_message",
    "is_leak_message",
]

LEAK_PREFIX = "LEAK"
"""First word of every failure message that reports a leak (and of no other)."""

VALUE_KEYS = ("path", "header", "request_id", "g", "local", "stack", "threadlocal")
"""``values`` entries the contract promises; each must equal the token."""

CHILD_KEYS = ("g", "local", "stack", "header")
"""Entries of every fan-out child; each must equal the token."""

_MISSING = object()


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a response.

    ``where`` names the place (``values.g``, ``children[2].local``, ``stale``,
    ``line[1].values.stack``, ``status``...), ``expected``/``seen`` what should have been there
    and what was.  ``leak`` says whether it shows cross-request data (or its absence).
    """

    where: str
    expected: Any
    seen: Any
    leak: bool

    def describe(self, *, with_values: bool = True) -> str:
        """``where: expected X, seen Y``; for a leak without values, only what kind was seen.

        Leaked values are random per request, so a message carrying them is unique; the short
        form lets many identical leaks collapse into one row of locust's error table.
        """
        if with_values or not self.leak:
            return f"{self.where}: expected {self.expected!r}, seen {self.seen!r}"
        if self.seen is None:
            return f"{self.where}: seen None"
        return f"{self.where}: seen another value"

    def __str__(self) -> str:
        return self.describe()


def _leak(where: str, token: str, seen: Any) -> Problem:
    return Problem(where, token, seen, leak=True)


def _bad(where: str, expected: Any, seen: Any) -> Problem:
    return Problem(where, expected, seen, leak=False)


def _check_mapping(where: str, token: str, mapping: Any, required: tuple[str, ...]
                   ) -> list[Problem]:
    """Every required key present and every entry (required or extra) equal to ``token``."""
    if not isinstance(mapping, dict):
        return [_bad(where, "an object", mapping)]
    problems = [_bad(f"{where}.{key}", "present", "missing") for key in required
                if key not in mapping]
    problems += [_leak(f"{where}.{key}", token, value) for key, value in mapping.items()
                 if value != token]
    return problems


def check_probe(token: str, payload: Any, *, children: int | None = None) -> list[Problem]:
    """Problems of one decoded probe payload (a whole response or one NDJSON line).

    ``children`` is the number of fan-out children requested, ``None`` when none were: then
    the count is not checked, but any children the server reported are still judged.
    """
    if not isinstance(payload, dict):
        return [_bad("payload", "a JSON object", type(payload).__name__)]
    problems: list[Problem] = []
    echoed = payload.get("token", _MISSING)
    if echoed is _MISSING:
        problems.append(_bad("token", "present", "missing"))
    elif echoed != token:
        problems.append(_leak("token", token, echoed))
    problems += _check_mapping("values", token, payload.get("values"), VALUE_KEYS)

    stale = payload.get("stale", _MISSING)
    if isinstance(stale, list):
        problems += [Problem("stale", "nothing", entry, leak=True) for entry in stale]
    else:
        problems.append(_bad("stale", "a list", "missing" if stale is _MISSING else stale))

    kids = payload.get("children", [] if children is None else _MISSING)
    if not isinstance(kids, list):
        problems.append(_bad("children", "a list", "missing" if kids is _MISSING else kids))
        return problems
    if children is not None and len(kids) != children:
        problems.append(_bad("children", f"{children} entries", f"{len(kids)} entries"))
    for index, child in enumerate(kids):
        problems += _check_mapping(f"children[{index}]", token, child, CHILD_KEYS)
    return problems


def _decode(where: str, text: str) -> tuple[Any, list[Problem]]:
    try:
        return json.loads(text), []
    except ValueError as exc:
        return None, [_bad(where, "JSON", f"{exc}: {text[:80]!r}")]


def _check_status(status: int, expected: int) -> list[Problem]:
    return [] if status == expected else [_bad("status", expected, status)]


def check_probe_body(token: str, status: int, body: str, *, children: int | None = None
                     ) -> list[Problem]:
    """Problems of a plain or fan-out probe response (status 200, one JSON object)."""
    if problems := _check_status(status, 200):
        return problems
    payload, problems = _decode("body", body)
    return problems or check_probe(token, payload, children=children)


def check_stream_body(token: str, status: int, body: str) -> list[Problem]:
    """Problems of a streamed probe: every NDJSON line is a probe payload of its own.

    Each line was produced while the server iterated the body, so each is a separate reading
    of the context; a leak on any line is a leak of the request.
    """
    if problems := _check_status(status, 200):
        return problems
    lines = [line for line in body.splitlines() if line.strip()]
    if not lines:
        return [_bad("body", "at least one NDJSON line", "no lines")]
    problems = []
    for number, line in enumerate(lines, start=1):
        where = f"line[{number}]"
        payload, bad = _decode(where, line)
        problems += bad or [replace(p, where=f"{where}.{p.where}")
                            for p in check_probe(token, payload)]
    return problems


def check_error_status(status: int) -> list[Problem]:
    """``/probe/<token>/error`` must answer 500: it raises after filling the context."""
    return _check_status(status, 500)


def failure_message(problems: list[Problem], *, with_values: bool = True) -> str | None:
    """The text for ``response.failure``, or ``None`` when there is nothing wrong.

    Leaks come first and the message then starts with ``LEAK``; a response with only non-leak
    problems gets ``BAD RESPONSE``.  Both list every problem, so nothing found is hidden.
    """
    if not problems:
        return None
    ordered = sorted(problems, key=lambda p: not p.leak)  # stable: leaks first, order kept
    prefix = LEAK_PREFIX if ordered[0].leak else "BAD RESPONSE"
    return f"{prefix} " + "; ".join(p.describe(with_values=with_values) for p in ordered)


def is_leak_message(message: str) -> bool:
    """Whether a failure message (as locust recorded it) reports a leak."""
    return message.startswith(LEAK_PREFIX)
