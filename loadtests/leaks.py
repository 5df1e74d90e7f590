"""The leak board: what a person reads about leaks during and after a run, without locust.

Counting is locust's (its error table, merged from every worker onto the master); this module
turns those counts into rows a person can read — one per probe variant and kind of leak — with
a rate, a share of the variant's requests and the last examples, and renders the examples as a
section of the HTML report.  Examples carry the tokens (whose data was seen); they are made on
the process that judged the response and travel to the master with locust's own worker
reports, so a distributed run shows the same board as a local one.

Pure: the locust side (web UI routes, listeners, the /metrics poll) is ``loadtests.leak_view``.
"""

from __future__ import annotations

import html
import time
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

from .probe_check import is_leak_message

__all__ = [
    "EXAMPLES_PER_ROW",
    "RATE_WINDOW",
    "ErrorRow",
    "ExampleBook",
    "LeakExample",
    "LeakRow",
    "RateMeter",
    "leak_rows",
    "live_entries",
    "render_report_section",
]

EXAMPLES_PER_ROW = 5
"""Examples kept per row (the most recent ones)."""

RATE_WINDOW = 10.0
"""Seconds over which a rate is measured: long enough to be steady, short enough to be now."""


@dataclass(frozen=True)
class LeakExample:
    """One leaking response, with its tokens: ``detail`` is ``probe_check.failure_detail``."""

    name: str
    """The request name locust shows (the probe variant), e.g. ``/probe/[token]/stream``."""
    message: str
    """The grouped failure message: the row it belongs to."""
    detail: str
    seen_at: float
    """Wall-clock time (``time.time()``) the response was judged."""
    node: str = "local"
    """Which locust process judged it (a worker's id, or ``local``)."""

    @property
    def row(self) -> tuple[str, str]:
        return (self.name, self.message)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> LeakExample:
        return cls(str(data["name"]), str(data["message"]), str(data["detail"]),
                   float(data["seen_at"]), str(data.get("node", "local")))


class ExampleBook:
    """The last :data:`EXAMPLES_PER_ROW` examples of every row, and those not yet shipped.

    A worker adds what it judged and hands :meth:`take_unshipped` to its next report; the
    master :meth:`add` s what arrives.  Both are bounded per row, so a flood of leaks costs a
    few examples per report, not one per leak.
    """

    def __init__(self, per_row: int = EXAMPLES_PER_ROW) -> None:
        self.per_row = per_row
        self._latest: dict[tuple[str, str], deque[LeakExample]] = {}
        self._unshipped: dict[tuple[str, str], deque[LeakExample]] = {}

    def add(self, example: LeakExample) -> None:
        for book in (self._latest, self._unshipped):
            book.setdefault(example.row, deque(maxlen=self.per_row)).append(example)

    def latest(self, name: str, message: str) -> list[LeakExample]:
        """Most recent first."""
        return list(reversed(self._latest.get((name, message), ())))

    def take_unshipped(self) -> list[LeakExample]:
        taken = [example for row in self._unshipped.values() for example in row]
        self._unshipped.clear()
        return taken

    def clear(self) -> None:
        self._latest.clear()
        self._unshipped.clear()


class RateMeter:
    """Per-key rates (per second) over the last :data:`RATE_WINDOW` seconds of samples.

    Fed with cumulative counts whenever someone looks (each UI poll); a key's rate is its
    growth between the oldest sample in the window and now.
    """

    def __init__(self, window: float = RATE_WINDOW) -> None:
        self.window = window
        self._samples: deque[tuple[float, dict[Any, int]]] = deque()

    def update(self, now: float, counts: Mapping[Any, int]) -> dict[Any, float]:
        self._samples.append((now, dict(counts)))
        while len(self._samples) > 2 and now - self._samples[1][0] >= self.window:
            self._samples.popleft()
        then, before = self._samples[0]
        elapsed = now - then
        if elapsed <= 0:
            return dict.fromkeys(counts, 0.0)
        return {key: max(0, count - before.get(key, 0)) / elapsed for key, count in counts.items()}

    def clear(self) -> None:
        self._samples.clear()


@dataclass(frozen=True)
class ErrorRow:
    """One row of locust's error table, message unwrapped (``verdict.error_message``)."""

    method: str
    name: str
    message: str
    occurrences: int


@dataclass(frozen=True)
class LeakRow:
    """One row of the Leaks tab: a probe variant and one kind of leak."""

    name: str
    message: str
    count: int
    rate: float
    share: float
    """Leaking responses of this kind per request of this variant (0..1)."""
    examples: tuple[LeakExample, ...]

    def to_dict(self) -> dict[str, Any]:
        last = self.examples[0] if self.examples else None
        return {
            "request": self.name,
            "leak": self.message,
            "count": self.count,
            "rate": round(self.rate, 1),
            "share": f"{self.share:.1%}",
            "last_seen": time.strftime("%H:%M:%S", time.localtime(last.seen_at)) if last else "",
            "example": last.detail if last else "",
            "examples": [e.to_dict() for e in self.examples],
        }


def leak_rows(errors: Iterable[ErrorRow], requests_by_name: Mapping[str, int],
              rates: Mapping[tuple[str, str], float], book: ExampleBook) -> list[LeakRow]:
    """The rows of the errors that are leaks, most frequent first."""
    rows = []
    for error in errors:
        if not is_leak_message(error.message):
            continue
        key = (error.name, error.message)
        requests = requests_by_name.get(error.name, 0)
        rows.append(LeakRow(error.name, error.message, error.occurrences, rates.get(key, 0.0),
                            error.occurrences / requests if requests else 0.0,
                            tuple(book.latest(*key))))
    return sorted(rows, key=lambda row: (-row.count, row.name, row.message))


def live_entries(samples: Mapping[str, Mapping[str, float]]) -> dict[str, int]:
    """``{local name: live entries}`` from parsed ``/metrics`` samples (``server_metrics``)."""
    found = samples.get("ctxserver_ctxlocal_live_entries", {})
    live = {}
    for labels, value in found.items():
        name = labels.partition('local="')[2].partition('"')[0] or labels or "?"
        live[name] = live.get(name, 0) + int(value)
    return live


def render_report_section(rows: list[LeakRow], verdict_text: str) -> str:
    """The leak detail for the HTML report: every row with its examples (tokens included)."""
    cells = []
    for row in rows:
        examples = "".join(f"<li><code>{html.escape(e.detail)}</code> ({html.escape(e.node)})</li>"
                           for e in row.examples) or "<li>none received</li>"
        cells.append(f"<tr><td>{html.escape(row.name)}</td><td>{html.escape(row.message)}</td>"
                     f"<td>{row.count}</td><td>{row.share:.1%}</td><td><ul>{examples}</ul></td></tr>")
    body = ("<table><thead><tr><th>Request</th><th>Leak</th><th># leaks</th>"
            "<th>Share of requests</th><th>Last examples (tokens)</th></tr></thead>"
            f"<tbody>{''.join(cells)}</tbody></table>") if cells else "<p>No leaks.</p>"
    return ('<section id="leak-report" style="font-family: sans-serif; margin: 2em;">'
            f"<h2>Leaks</h2><p><strong>{html.escape(verdict_text)}</strong></p>{body}</section>")
