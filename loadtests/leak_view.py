"""Leaks a person can read in locust: examples, the "Leaks" tab, the banner, the report detail.

Wired into locust through its documented extension points only:

- every leaking response becomes a :class:`~loadtests.leaks.LeakExample` (with its tokens) on
  the process that judged it; the first few of each row go to the locust log, and workers ship
  the most recent ones to the master inside locust's own stats report (``report_to_master`` /
  ``worker_report``), so the master — the only process that sees the whole run — shows them;
- the web UI (``environment.web_ui``) gets a "Leaks" tab (``extended_tabs`` /
  ``extended_tables`` in ``template_args``, rows in ``extended_stats`` of ``/stats/requests``),
  a JSON summary at ``/leaks`` and a banner above every tab (``/leaks/banner.js``, added to the
  index page) with the leak count and rate, the server's live ctxlocal entries (its
  ``/metrics``) and, once the run stops, the verdict of ``loadtests.verdict``;
- the HTML report (``--html`` and the UI's "Download Report") gets the rows with their
  examples.

Counts are never kept here: they are locust's error table (merged from the workers on the
master), read whenever someone looks.
"""

from __future__ import annotations

import json
import logging
import time
import urllib.request
from collections import Counter
from pathlib import Path
from typing import Any
from weakref import WeakKeyDictionary

from flask import Response, request
from locust.env import Environment
from locust.runners import STATE_STOPPED, WorkerRunner

from .leaks import (
    EXAMPLES_PER_ROW,
    ErrorRow,
    ExampleBook,
    LeakExample,
    LeakRow,
    RateMeter,
    leak_rows,
    live_entries,
    render_report_section,
)
from .server_metrics import parse_samples
from .summary import Decision, Tally, decide, headline
from .verdict import DEFAULT_MIN_REQUESTS, error_message, tally

__all__ = ["EXAMPLES_PER_ROW", "LOGGED_PER_ROW", "TAB_KEY", "LeakView", "add_arguments",
           "install", "view_of"]

log = logging.getLogger("loadtests.leaks")

TAB_KEY = "leaks"
TABLE_COLUMNS = (
    ("request", "Request"), ("leak", "Leak"), ("count", "# leaks"), ("rate", "Leaks/s"),
    ("share", "Share of requests"), ("last_seen", "Last seen"),
    ("example", "Last example (tokens)"),
)
"""The Leaks tab's columns: keys of :meth:`LeakRow.to_dict`, titles as shown."""

LOGGED_PER_ROW = 5
"""Leaks of one row (variant and kind) logged with their tokens, per locust process."""

REPORT_KEY = "leak_examples"
"""Key of the examples in a worker's stats report."""

METRICS_CACHE = 2.0
"""Seconds one reading of the server's /metrics is reused (every UI poll asks)."""
METRICS_TIMEOUT = 1.0

BANNER_JS = Path(__file__).with_name("leak_banner.js")

_NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def add_arguments(parser: Any) -> None:
    """``init_command_line_parser`` listener: where the server's metrics are."""
    parser.add_argument(
        "--metrics-url", default="", env_var="LOCUST_METRICS_URL",
        help="The server's Prometheus metrics, for the live ctxlocal entries in the Leaks view "
             "(default: <host>/metrics).")


class LeakView:
    """The leak state of one locust process (one :class:`Environment`)."""

    def __init__(self, environment: Environment) -> None:
        self.environment = environment
        # Per run (cleared at test_start)
        self.book = ExampleBook()
        self.meter = RateMeter()
        self.logged: Counter[tuple[str, str]] = Counter()
        # Per reading of the server's /metrics
        self._metrics_read_at = float("-inf")
        self._metrics: dict[str, Any] = {}

    # ------------------------------------------------------------ where leaks are judged
    def record(self, name: str, message: str, detail: str) -> None:
        """One leaking response (``detail`` carries the tokens): keep it, log the first few."""
        runner = self.environment.runner
        node = runner.client_id if isinstance(runner, WorkerRunner) else "local"
        example = LeakExample(name, message, detail, time.time(), node)
        self.book.add(example)
        seen = self.logged[example.row]
        self.logged[example.row] += 1
        if seen < LOGGED_PER_ROW:
            more = (" (further leaks of this kind are counted, not logged)"
                    if seen == LOGGED_PER_ROW - 1 else "")
            log.warning("%s %s -- %s%s", name, message, detail, more)

    def on_report_to_master(self, client_id: str, data: dict[str, Any]) -> None:
        data[REPORT_KEY] = [example.to_dict() for example in self.book.take_unshipped()]

    def on_worker_report(self, client_id: str, data: dict[str, Any]) -> None:
        for raw in data.get(REPORT_KEY, ()):
            self.book.add(LeakExample.from_dict({**raw, "node": client_id}))

    def on_test_start(self, **_kwargs: Any) -> None:
        self.book.clear()
        self.meter.clear()
        self.logged.clear()

    # ------------------------------------------------------------ what a person reads
    def rows(self) -> list[LeakRow]:
        stats = self.environment.stats
        errors = [ErrorRow(e.method or "", e.name, error_message(e.error), e.occurrences)
                  for e in stats.errors.values()]
        requests = {entry.name: entry.num_requests for entry in stats.entries.values()}
        counts = {(e.name, e.message): e.occurrences for e in errors}
        rates = self.meter.update(time.monotonic(), counts)
        return leak_rows(errors, requests, rates, self.book)

    def tally(self) -> Tally:
        runner = self.environment.runner
        return tally(self.environment.stats, runner.exceptions if runner is not None else None)

    def verdict(self, t: Tally) -> Decision | None:
        """The run's verdict once it has stopped (None while it runs or before it started)."""
        runner = self.environment.runner
        if runner is None or runner.state != STATE_STOPPED:
            return None
        return decide(t, min_requests=self._option("min_requests", DEFAULT_MIN_REQUESTS),
                      expect_leaks=self._expect_leaks())

    def live(self) -> dict[str, Any]:
        """The server's live ctxlocal entries per Local, read from its /metrics (cached)."""
        now = time.monotonic()
        if now - self._metrics_read_at < METRICS_CACHE:
            return self._metrics
        url = self.metrics_url()
        reading: dict[str, Any] = {"url": url, "total": None, "by_local": {}, "error": None}
        if not url:
            reading["error"] = "no host set"
        else:
            try:
                with _NO_PROXY.open(url, timeout=METRICS_TIMEOUT) as response:
                    by_local = live_entries(parse_samples(response.read().decode("utf-8")))
                reading.update(total=sum(by_local.values()), by_local=by_local)
            except (OSError, ValueError) as exc:  # URLError is an OSError; .reason says why
                reading["error"] = f"{url}: {getattr(exc, 'reason', exc)}"
        self._metrics_read_at, self._metrics = now, reading
        return reading

    def metrics_url(self) -> str:
        explicit = self._option("metrics_url", "")
        host = self.environment.host or ""
        return explicit or (f"{host.rstrip('/')}/metrics" if host else "")

    def summary(self) -> dict[str, Any]:
        """Everything the banner shows, as JSON."""
        rows = self.rows()
        t = self.tally()
        decision = self.verdict(t)
        runner = self.environment.runner
        return {
            "state": runner.state if runner is not None else "missing",
            "requests": t.requests,
            "leaks": t.leaks,
            "leak_rate": round(sum(row.rate for row in rows), 1),
            "leak_share": f"{t.leaks / t.requests:.1%}" if t.requests else "0.0%",
            "kinds": len(rows),
            "expect_leaks": self._expect_leaks(),
            "live": self.live(),
            "verdict": None if decision is None else {
                "passed": decision.passed, "exit_code": decision.exit_code,
                "reasons": list(decision.reasons),
                "text": headline(t, decision, expect_leaks=self._expect_leaks())},
            "rows": [row.to_dict() for row in rows],
        }

    def report_section(self) -> str:
        t = self.tally()
        decision = decide(t, min_requests=self._option("min_requests", DEFAULT_MIN_REQUESTS),
                          expect_leaks=self._expect_leaks())
        return render_report_section(self.rows(), headline(t, decision,
                                                           expect_leaks=self._expect_leaks()))

    def _option(self, name: str, default: Any) -> Any:
        return getattr(self.environment.parsed_options, name, default)

    def _expect_leaks(self) -> bool:
        return bool(self._option("expect_leaks", False))

    # ------------------------------------------------------------ wiring
    def install_web_ui(self) -> None:
        """The Leaks tab, the /leaks routes, and the banner on the index page."""
        web_ui = self.environment.web_ui
        assert web_ui is not None and web_ui.app is not None
        web_ui.template_args["extended_tabs"] = [{"title": "Leaks", "key": TAB_KEY}]
        web_ui.template_args["extended_tables"] = [{
            "key": TAB_KEY,
            "structure": [{"key": key, "title": title} for key, title in TABLE_COLUMNS]}]
        base = (self._option("web_base_path", None) or "").rstrip("/")
        app = web_ui.app
        app.add_url_rule(f"{base}/leaks", "leaks_summary",
                         web_ui.auth_required_if_enabled(self._summary_response))
        app.add_url_rule(f"{base}/leaks/banner.js", "leaks_banner",
                         web_ui.auth_required_if_enabled(self._banner_response))
        extend = {f"{base}/": self._add_banner, f"{base}/stats/requests": self._add_rows,
                  f"{base}/stats/report": self._add_report_section}

        @app.after_request
        def extend_locust_pages(response: Response) -> Response:
            handler = extend.get(request.path)
            if handler is None or response.status_code != 200:
                return response
            return handler(response)

    def _summary_response(self) -> Response:
        return Response(json.dumps(self.summary()), mimetype="application/json",
                        headers={"Cache-Control": "no-store"})

    def _banner_response(self) -> Response:
        return Response(BANNER_JS.read_text(encoding="utf-8"), mimetype="text/javascript")

    def _add_rows(self, response: Response) -> Response:
        data = response.get_json()
        table = [{key: row[key] for key, _ in TABLE_COLUMNS}
                 for row in (r.to_dict() for r in self.rows())]
        data["extended_stats"] = [{"key": TAB_KEY, "data": table}]
        response.set_data(json.dumps(data))
        return response

    def _add_banner(self, response: Response) -> Response:
        return _insert_before_body_end(response, '<script src="./leaks/banner.js"></script>')

    def _add_report_section(self, response: Response) -> Response:
        return _insert_before_body_end(response, self.report_section())

    def on_test_stop(self, **_kwargs: Any) -> None:
        t = self.tally()
        decision = decide(t, min_requests=self._option("min_requests", DEFAULT_MIN_REQUESTS),
                          expect_leaks=self._expect_leaks())
        log.info("run stopped: %s", headline(t, decision, expect_leaks=self._expect_leaks()))

    def on_quitting(self, **_kwargs: Any) -> None:
        """Add the leak detail to the HTML report locust has just written (``--html``)."""
        path = self._option("html_file", None)
        if path and Path(path).is_file():
            text = Path(path).read_text(encoding="utf-8")
            Path(path).write_text(_insert_html(text, self.report_section()), encoding="utf-8")


def _insert_html(page: str, snippet: str) -> str:
    at = page.rfind("</body>")
    return page + snippet if at < 0 else page[:at] + snippet + page[at:]


def _insert_before_body_end(response: Response, snippet: str) -> Response:
    response.set_data(_insert_html(response.get_data(as_text=True), snippet))
    return response


_views: WeakKeyDictionary[Environment, LeakView] = WeakKeyDictionary()


def view_of(environment: Environment) -> LeakView:
    """The :class:`LeakView` of ``environment`` (made on first use)."""
    view = _views.get(environment)
    if view is None:
        view = _views[environment] = LeakView(environment)
    return view


def install(environment: Environment, **_kwargs: Any) -> None:
    """``init`` listener: examples travel worker → master; the UI and report on the master."""
    view = view_of(environment)
    events = environment.events
    events.test_start.add_listener(view.on_test_start)
    if isinstance(environment.runner, WorkerRunner):
        events.report_to_master.add_listener(view.on_report_to_master)
        return
    events.worker_report.add_listener(view.on_worker_report)
    events.test_stop.add_listener(view.on_test_stop)
    events.quitting.add_listener(view.on_quitting)
    if environment.web_ui is not None:
        view.install_web_ui()
