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

Locust groups failures by (method, name, message), so the message of a leak names only its
*kind* — which contexts leaked, and what they held instead (:data:`LEAK_KINDS`) — never the
tokens: ten thousand leaks of one kind are one row, not ten thousand.  The tokens, which say
*whose* data was seen, are in :func:`failure_detail`, for the log and the leak examples.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from typing import Any

__all__ = [
    "CHILD_KEYS",
    "LEAK_KINDS",
    "LEAK_PREFIX",
    "LEFT_OVER",
    "NO_VALUE",
    "OTHER_VALUE",
    "VALUE_KEYS",
    "Problem",
    "check_error_status",
    "check_probe",
    "check_probe_body",
    "check_stream_body",
    "failure_detail",
    "failure_message",
    "is_leak_message",
    "leak_summary",
]

LEAK_PREFIX = "LEAK"
"""First word of every failure message that reports a leak (and of no other)."""

VALUE_KEYS = ("path", "header", "request_id", "g", "local", "stack", "threadlocal",
              "gevent_local", "werkzeug_local", "contextvar", "greenlet_attr", "environ")
"""``values`` entries the contract promises; each must equal the token."""

CHILD_KEYS = ("g", "local", "stack", "header")
"""Entries of every fan-out child; each must equal the token."""

OTHER_VALUE = "value of another request"
NO_VALUE = "no value"
LEFT_OVER = "left over from an earlier request"
LEAK_KINDS = (OTHER_VALUE, NO_VALUE, LEFT_OVER)
"""What a leaking context held, in the order a message names them: another request's value,
nothing where its own value belonged, or something found before the request stored anything."""

CHILD_PREFIX = "child "
"""Contexts read in a fan-out child are named ``child g``, ``child local``..."""

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
    context: str = ""
    """For a leak: the context that leaked (``g``, ``child local``, ``token``...)."""
    kind: str = ""
    """For a leak: one of :data:`LEAK_KINDS`."""

    def describe(self) -> str:
        """``where: expected X, seen Y``, values included (for logs and details)."""
        return f"{self.where}: expected {self.expected!r}, seen {self.seen!r}"

    def __str__(self) -> str:
        return self.describe()


def _leak(where: str, token: str, seen: Any, context: str) -> Problem:
    return Problem(where, token, seen, leak=True, context=context,
                   kind=NO_VALUE if seen is None else OTHER_VALUE)


def _left_over(entry: Any) -> Problem:
    """A ``stale`` entry (``"g.token=<value>"``, ``"local=<value>"``): named by its context."""
    context = str(entry).split("=", 1)[0].split(".", 1)[0] or "stale"
    return Problem("stale", "nothing", entry, leak=True, context=context, kind=LEFT_OVER)


def _bad(where: str, expected: Any, seen: Any) -> Problem:
    return Problem(where, expected, seen, leak=False)


def _check_mapping(where: str, token: str, mapping: Any, required: tuple[str, ...], *,
                   context_prefix: str = "") -> list[Problem]:
    """Every required key present and every entry (required or extra) equal to ``token``.

    Extra keys are judged too, so a storage kind the server adds is checked (and named in
    messages) without a change here.
    """
    if not isinstance(mapping, dict):
        return [_bad(where, "an object", mapping)]
    problems = [_bad(f"{where}.{key}", "present", "missing") for key in required
                if key not in mapping]
    problems += [_leak(f"{where}.{key}", token, value, f"{context_prefix}{key}")
                 for key, value in mapping.items() if value != token]
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
        problems.append(_leak("token", token, echoed, "token"))
    problems += _check_mapping("values", token, payload.get("values"), VALUE_KEYS)

    stale = payload.get("stale", _MISSING)
    if isinstance(stale, list):
        problems += [_left_over(entry) for entry in stale]
    else:
        problems.append(_bad("stale", "a list", "missing" if stale is _MISSING else stale))

    kids = payload.get("children", [] if children is None else _MISSING)
    if not isinstance(kids, list):
        problems.append(_bad("children", "a list", "missing" if kids is _MISSING else kids))
        return problems
    if children is not None and len(kids) != children:
        problems.append(_bad("children", f"{children} entries", f"{len(kids)} entries"))
    for index, child in enumerate(kids):
        problems += _check_mapping(f"children[{index}]", token, child, CHILD_KEYS,
                                   context_prefix=CHILD_PREFIX)
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


def _context_order(context: str) -> tuple[int, int, str]:
    """Sort key: the request's own contexts before the children's, each in contract order
    (``token`` first, then :data:`VALUE_KEYS`); contexts the contract does not name yet go
    last, alphabetically."""
    child = context.startswith(CHILD_PREFIX)
    base = context.removeprefix(CHILD_PREFIX)
    known = ("token", *VALUE_KEYS)
    return (int(child), known.index(base) if base in known else len(known), base)


def leak_summary(problems: list[Problem]) -> str:
    """``g, local, stack, threadlocal: value of another request; global: left over ...``

    The leaking contexts grouped by kind, each context once however many fan-out children or
    stream lines showed it: no token, no index, so identical leaks read identically.
    """
    by_kind: dict[str, set[str]] = {}
    for problem in problems:
        if problem.leak:
            by_kind.setdefault(problem.kind, set()).add(problem.context)
    kinds = [kind for kind in LEAK_KINDS if kind in by_kind]
    kinds += sorted(set(by_kind) - set(LEAK_KINDS))
    return "; ".join(f"{', '.join(sorted(by_kind[kind], key=_context_order))}: {kind}"
                     for kind in kinds)


def failure_message(problems: list[Problem]) -> str | None:
    """The text for ``response.failure``, or ``None`` when there is nothing wrong.

    A leak gives ``LEAK <contexts>: <kind>[; ...]`` (:func:`leak_summary`), followed by any
    non-leak problems of the same response; without a leak it is ``BAD RESPONSE`` and every
    problem.  Nothing found is hidden, and no token makes two messages of one kind differ.
    """
    if not problems:
        return None
    bad = "; ".join(p.describe() for p in problems if not p.leak)
    if not any(p.leak for p in problems):
        return f"BAD RESPONSE {bad}"
    return f"{LEAK_PREFIX} {leak_summary(problems)}" + (f"; also {bad}" if bad else "")


def failure_detail(token: str, problems: list[Problem]) -> str:
    """Every problem with its values: whose data was seen (for the log and leak examples)."""
    return f"token {token}: " + "; ".join(p.describe() for p in problems)


def is_leak_message(message: str) -> bool:
    """Whether a failure message (as locust recorded it) reports a leak."""
    return message.startswith(LEAK_PREFIX)
