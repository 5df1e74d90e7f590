"""The leak view: rows, rates and examples (pure), and its locust wiring on real environments.

The pure board (``loadtests.leaks``) is fed hand-made rows; the wiring (``loadtests.leak_view``)
runs on real locust objects: a worker environment whose examples ride in its real stats report
to a master environment, and the master's web UI Flask app asked through its test client —
the same routes the browser test (``tests/test_leak_ui_browser.py``) drives in Chromium.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from loadtests.leaks import (
    ErrorRow,
    ExampleBook,
    LeakExample,
    RateMeter,
    leak_rows,
    live_entries,
    render_report_section,
)
from loadtests.run import free_port
from loadtests.server_metrics import parse_samples
from tests.locust_unpatched import (
    STATE_STOPPED,
    CatchResponseError,
    Environment,
    leak_view,
    parse_options,
    setup_distributed_stats_event_listeners,
)
from tests.support import running_server

NAME = "/unsafe/probe/[token]"
OTHER_VALUE = "LEAK g, local, stack, threadlocal: value of another request"
NO_VALUE = "LEAK g, local, stack, threadlocal: no value; global: left over from an earlier request"


def example(message: str = OTHER_VALUE, n: int = 0, name: str = NAME) -> LeakExample:
    return LeakExample(name, message, f"token {n:032x}: values.g: ...", seen_at=1000.0 + n)


# -- the board, pure --------------------------------------------------------------------------

def test_the_book_keeps_the_last_examples_of_each_row_and_ships_each_once() -> None:
    book = ExampleBook(per_row=3)
    for n in range(5):
        book.add(example(n=n))
    book.add(example(NO_VALUE, n=9))
    assert [e.seen_at for e in book.latest(NAME, OTHER_VALUE)] == [1004.0, 1003.0, 1002.0]
    shipped = book.take_unshipped()
    assert len(shipped) == 4 and book.take_unshipped() == []
    assert len(book.latest(NAME, NO_VALUE)) == 1  # shipping does not forget


def test_examples_survive_the_trip_as_plain_data() -> None:
    original = LeakExample(NAME, OTHER_VALUE, "token x: ...", 12.5, "worker-1")
    assert LeakExample.from_dict(json.loads(json.dumps(original.to_dict()))) == original


def test_rates_are_growth_over_the_window() -> None:
    meter = RateMeter(window=10.0)
    assert meter.update(0.0, {"a": 0}) == {"a": 0.0}
    assert meter.update(5.0, {"a": 50, "b": 5}) == {"a": 10.0, "b": 1.0}
    meter.update(10.0, {"a": 100})
    # The samples at 0 and 5 s have left the window: the rate is over 10..20 s.
    assert meter.update(20.0, {"a": 250}) == {"a": 15.0}


def test_rows_are_the_leaks_only_most_frequent_first_with_share_and_examples() -> None:
    book = ExampleBook()
    book.add(example(NO_VALUE, n=1))
    errors = [ErrorRow("GET", NAME, OTHER_VALUE, 10), ErrorRow("GET", NAME, NO_VALUE, 30),
              ErrorRow("GET", "/probe/[token]", "TimeoutError('timed out')", 99),
              ErrorRow("GET", "/probe/[token]", "BAD RESPONSE status: expected 200, seen 503", 1)]
    rows = leak_rows(errors, {NAME: 50}, {(NAME, NO_VALUE): 3.0}, book)
    assert [(r.message, r.count, r.share, r.rate) for r in rows] == [
        (NO_VALUE, 30, 0.6, 3.0), (OTHER_VALUE, 10, 0.2, 0.0)]
    assert rows[0].to_dict()["example"].startswith("token ")
    assert rows[1].to_dict()["example"] == ""


def test_live_entries_per_local_from_metrics_text() -> None:
    text = ('# TYPE ctxserver_ctxlocal_live_entries gauge\n'
            'ctxserver_ctxlocal_live_entries{local="probe_local"} 3.0\n'
            'ctxserver_ctxlocal_live_entries{local="probe_stack"} 0.0\n')
    assert live_entries(parse_samples(text)) == {"probe_local": 3, "probe_stack": 0}
    assert live_entries({}) == {}


def test_the_report_section_escapes_and_lists_examples() -> None:
    book = ExampleBook()
    book.add(LeakExample(NAME, OTHER_VALUE, "token <b>: seen '<script>'", 1.0))
    section = render_report_section(
        leak_rows([ErrorRow("GET", NAME, OTHER_VALUE, 1)], {NAME: 1}, {}, book), "PASS: ok")
    assert "<script>" not in section and "&lt;script&gt;" in section
    assert 'id="leak-report"' in section and "PASS: ok" in section
    assert "No leaks." in render_report_section([], "PASS: ok")


# -- the wiring on real locust environments -----------------------------------------------------

@pytest.fixture
def master(monkeypatch: pytest.MonkeyPatch) -> Iterator[Environment]:
    """A master with the leak view and a (not listening) web UI, shut down afterwards."""
    # The web UI re-parses sys.argv for its extra options; pytest's own would be refused.
    monkeypatch.setattr(sys, "argv", ["locust"])
    options = parse_options(["--expect-leaks", "--min-requests", "1"])  # + the locustfile's
    env = Environment(host=f"http://127.0.0.1:{free_port()}",  # nobody listens: no metrics
                      parsed_options=options)
    env.create_master_runner("127.0.0.1", free_port())
    env.create_web_ui("127.0.0.1", 0, delayed_start=True)
    leak_view.install(env)
    yield env
    env.runner.quit()
    env.runner.server.close(linger=0)


def worker_report(leaks: dict[str, int], successes: int) -> dict[str, object]:
    """A worker's real stats report, leak examples included, as its listeners build it."""
    worker = Environment()
    setup_distributed_stats_event_listeners(worker.events, worker.stats)
    view = leak_view.LeakView(worker)
    worker.events.report_to_master.add_listener(view.on_report_to_master)
    index = 0
    for message, count in leaks.items():
        for _ in range(count):
            index += 1
            worker.stats.log_request("GET", NAME, 5, 200)
            worker.stats.log_error("GET", NAME, CatchResponseError(message))
            view.record(NAME, message, f"token {index:032x}: values.g: seen another")
    for _ in range(successes):
        worker.stats.log_request("GET", NAME, 5, 200)
    data: dict[str, object] = {}
    worker.events.report_to_master.fire(client_id="worker-1", data=data)
    return data


def test_a_distributed_run_shows_one_row_per_kind_with_the_workers_examples(
        master: Environment) -> None:
    view = leak_view.view_of(master)
    master.events.worker_report.fire(
        client_id="worker-1", data=worker_report({OTHER_VALUE: 40, NO_VALUE: 7}, 3))
    assert {e.node for row in view.rows() for e in row.examples} == {"worker-1"}
    master.events.worker_report.fire(
        client_id="worker-2", data=worker_report({OTHER_VALUE: 60}, 0))
    rows = view.rows()
    assert [(r.message, r.count) for r in rows] == [(OTHER_VALUE, 100), (NO_VALUE, 7)]
    assert rows[0].share == 100 / 110
    # The most recent examples of each row, from whichever worker sent them.
    assert [e.node for e in rows[0].examples] == ["worker-2"] * leak_view.EXAMPLES_PER_ROW
    assert [e.node for e in rows[1].examples] == ["worker-1"] * leak_view.EXAMPLES_PER_ROW


def test_the_web_ui_has_the_leaks_tab_rows_banner_summary_and_report(master: Environment
                                                                      ) -> None:
    master.events.worker_report.fire(
        client_id="worker-1", data=worker_report({OTHER_VALUE: 5, NO_VALUE: 2}, 3))
    args = master.web_ui.template_args
    assert args["extended_tabs"] == [{"title": "Leaks", "key": "leaks"}]
    assert [c["key"] for c in args["extended_tables"][0]["structure"]] == [
        key for key, _ in leak_view.TABLE_COLUMNS]
    client = master.web_ui.app.test_client()

    index = client.get("/").get_data(as_text=True)
    assert '<script src="./leaks/banner.js"></script></body>' in index
    assert "leak-banner" in client.get("/leaks/banner.js").get_data(as_text=True)

    stats = client.get("/stats/requests").get_json()
    [extended] = stats["extended_stats"]
    assert extended["key"] == "leaks"
    assert [(r["leak"], r["count"]) for r in extended["data"]] == [(OTHER_VALUE, 5), (NO_VALUE, 2)]
    assert all(r["example"].startswith("token ") for r in extended["data"])

    summary = client.get("/leaks").get_json()
    assert (summary["leaks"], summary["requests"], summary["kinds"]) == (7, 10, 2)
    assert summary["verdict"] is None  # still "ready": no verdict before a run stopped
    assert summary["live"]["total"] is None and "refused" in summary["live"]["error"]

    master.runner.update_state(STATE_STOPPED)
    verdict = client.get("/leaks").get_json()["verdict"]
    assert verdict["passed"] and verdict["text"].startswith("PASS (negative control)")

    report = client.get("/stats/report").get_data(as_text=True)
    assert report.index('<section id="leak-report"') < report.rindex("</body>")
    assert "token 00000000000000000000000000000001" in report


def test_a_normal_run_with_leaks_fails_in_the_banner(master: Environment) -> None:
    master.parsed_options.expect_leaks = False
    master.events.worker_report.fire(client_id="worker-1",
                                     data=worker_report({OTHER_VALUE: 1}, 9))
    master.runner.update_state(STATE_STOPPED)
    verdict = leak_view.view_of(master).summary()["verdict"]
    assert not verdict["passed"]
    assert verdict["text"] == "FAIL: 1 requests saw another request's context (LEAK)"


def test_the_live_entries_come_from_the_servers_metrics(master: Environment,
                                                        tmp_path: Path) -> None:
    with running_server(tmp_path=tmp_path) as server:
        master.host = server.url
        live = leak_view.view_of(master).live()
    assert live["error"] is None and live["url"] == f"{server.url}/metrics"
    assert live["total"] == 0 and "probe_local" in live["by_local"]


def test_the_first_leaks_of_each_row_are_logged_with_their_tokens(
        caplog: pytest.LogCaptureFixture) -> None:
    view = leak_view.LeakView(Environment())
    with caplog.at_level("WARNING", logger="loadtests.leaks"):
        for n in range(leak_view.LOGGED_PER_ROW + 3):
            view.record(NAME, OTHER_VALUE, f"token {n:032x}: ...")
        view.record(NAME, NO_VALUE, "token ffff: ...")
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == leak_view.LOGGED_PER_ROW + 1
    assert f"token {0:032x}" in lines[0] and "counted, not logged" in lines[-2]
    assert "token ffff" in lines[-1]
