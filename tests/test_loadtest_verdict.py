"""The leak-probe judgement and the run's verdict, without a server.

``probe_check`` and ``summary`` are pure and tested with hand-made payloads and counts; the
``quitting`` listener is exercised on real locust ``Environment`` objects (a local runner, and
a master runner fed a real worker report), so what is tested is what runs under load.
"""

from __future__ import annotations

import json
import os
from argparse import Namespace
from collections.abc import Callable, Iterator

import pytest

from loadtests.probe_check import (
    LEAK_PREFIX,
    OTHER_VALUE,
    VALUE_KEYS,
    check_error_status,
    check_probe,
    check_probe_body,
    check_stream_body,
    failure_detail,
    failure_message,
    is_leak_message,
)
from loadtests.procs import free_port
from loadtests.summary import Tally, decide, format_summary, parse_summary
from tests.locust_unpatched import (
    PATCHED_BY_LOCUST,
    SKIP_WAS_PRESET,
    CatchResponseError,
    Environment,
    locustfile,
    run,
    setup_distributed_stats_event_listeners,
    verdict,
)


def test_importing_locust_here_left_the_process_unpatched() -> None:
    assert not PATCHED_BY_LOCUST
    assert "LOCUST_SKIP_MONKEY_PATCH" not in os.environ or SKIP_WAS_PRESET


TOKEN = "0123456789abcdef0123456789abcdef"
OTHER = "fedcba9876543210fedcba9876543210"


def payload(token: str = TOKEN, **changes: object) -> dict[str, object]:
    """A correct probe answer for ``token``, with ``changes`` applied on top."""
    body: dict[str, object] = {"token": token, "values": dict.fromkeys(VALUE_KEYS, token),
                               "stale": [], "pid": 1}
    body.update(changes)
    return body


def child(token: str = TOKEN, **changes: str | None) -> dict[str, str | None]:
    return {"g": token, "local": token, "stack": token, "header": token, **changes}


# -- probe_check: what counts as a leak -------------------------------------------------------

def test_a_correct_probe_has_no_problems() -> None:
    assert check_probe(TOKEN, payload()) == []
    assert check_probe(TOKEN, payload(children=[child()] * 4), children=4) == []
    assert failure_message([]) is None


def test_another_requests_value_is_a_leak_naming_the_context_and_kind() -> None:
    values = dict.fromkeys(VALUE_KEYS, TOKEN) | {"g": OTHER}
    problems = check_probe(TOKEN, payload(values=values))
    assert [(p.where, p.expected, p.seen, p.leak, p.context, p.kind) for p in problems] == [
        ("values.g", TOKEN, OTHER, True, "g", OTHER_VALUE)]
    message = failure_message(problems)
    assert message == "LEAK g: value of another request"
    assert is_leak_message(message)
    # The tokens are in the detail, for the log and the examples, never in the message.
    assert failure_detail(TOKEN, problems) == (
        f"token {TOKEN}: values.g: expected {TOKEN!r}, seen {OTHER!r}")


def test_a_lost_value_is_a_leak_too() -> None:
    """The contract: any value other than the token fails, ``null`` included."""
    values = dict.fromkeys(VALUE_KEYS, TOKEN) | {"threadlocal": None}
    [problem] = check_probe(TOKEN, payload(values=values))
    assert (problem.where, problem.seen, problem.leak) == ("values.threadlocal", None, True)
    assert failure_message([problem]) == "LEAK threadlocal: no value"


def test_a_wrong_echoed_token_is_a_leak() -> None:
    [problem] = check_probe(TOKEN, payload(token=OTHER) | {"values": payload()["values"]})
    assert (problem.where, problem.seen, problem.leak) == ("token", OTHER, True)


def test_a_stale_value_is_a_leak() -> None:
    problems = check_probe(TOKEN, payload(stale=[f"g.token={OTHER}"]))
    assert [(p.where, p.seen, p.leak) for p in problems] == [("stale", f"g.token={OTHER}", True)]
    assert failure_message(problems) == f"{LEAK_PREFIX} g: left over from an earlier request"


def test_a_child_leak_names_the_child_and_its_key() -> None:
    kids = [child(), child(), child(local=OTHER), child()]
    problems = check_probe(TOKEN, payload(children=kids), children=4)
    assert [(p.where, p.seen, p.leak) for p in problems] == [("children[2].local", OTHER, True)]
    assert failure_message(problems) == "LEAK child local: value of another request"


def test_missing_children_or_keys_are_failures_but_not_leaks() -> None:
    problems = check_probe(TOKEN, payload(children=[child()] * 3), children=4)
    assert [(p.where, p.leak) for p in problems] == [("children", False)]
    assert check_probe(TOKEN, payload(), children=4)[0].where == "children"

    values = {k: TOKEN for k in VALUE_KEYS if k != "stack"}
    problems = check_probe(TOKEN, payload(values=values, stale=None))
    assert [(p.where, p.leak) for p in problems] == [("values.stack", False), ("stale", False)]
    message = failure_message(problems)
    assert message.startswith("BAD RESPONSE ") and not is_leak_message(message)


def test_leaks_come_first_so_a_mixed_response_counts_as_a_leak() -> None:
    values = {k: TOKEN for k in VALUE_KEYS if k != "stack"} | {"g": OTHER}
    message = failure_message(check_probe(TOKEN, payload(values=values)))
    assert message == ("LEAK g: value of another request; "
                       "also values.stack: expected 'present', seen 'missing'")


def test_identical_leaks_share_one_message_whatever_their_tokens() -> None:
    """Unique tokens would make every message unique: one row per leak in locust."""
    first = check_probe(TOKEN, payload(stale=[f"local={OTHER}"]))
    second = check_probe(OTHER, payload(OTHER, stale=[f"local={TOKEN}"]))
    assert failure_message(first) == failure_message(second) == (
        "LEAK local: left over from an earlier request")
    assert failure_detail(TOKEN, first) != failure_detail(OTHER, second)


def test_the_message_groups_contexts_by_kind_in_contract_order() -> None:
    """The negative control's typical answer, and every child and stream line folded in."""
    values = dict.fromkeys(VALUE_KEYS, TOKEN) | {
        "threadlocal": OTHER, "g": OTHER, "local": None, "stack": OTHER}
    kids = [child(g=OTHER), child(g=OTHER, header=None), child()]
    problems = check_probe(TOKEN, payload(values=values, children=kids,
                                          stale=[f"global={OTHER}", f"g.token={OTHER}"]),
                           children=3)
    assert failure_message(problems) == (
        "LEAK g, stack, threadlocal, child g: value of another request; "
        "local, child header: no value; g, global: left over from an earlier request")


@pytest.mark.parametrize("kinds", [
    # the different leaks the negative control produces; each must stay its own row
    [("g", OTHER)], [("g", None)], [("g", OTHER), ("local", OTHER)], [("stack", None)]])
def test_distinct_kinds_are_distinct_rows(kinds: list[tuple[str, str | None]]) -> None:
    messages = set()
    for leaked in ([], kinds):
        values = dict.fromkeys(VALUE_KEYS, TOKEN) | dict(leaked)
        messages.add(failure_message(check_probe(TOKEN, payload(values=values))))
    messages.add(failure_message(check_probe(TOKEN, payload(stale=[f"g.token={OTHER}"]))))
    assert len(messages) == 3  # None (no leak), this kind, and the stale one


def test_a_context_the_contract_does_not_name_yet_is_judged_and_named() -> None:
    """Issue 10 adds storage kinds: an extra value is a context like the others."""
    values = dict.fromkeys(VALUE_KEYS, TOKEN) | {"contextvar": OTHER, "g": OTHER}
    message = failure_message(check_probe(TOKEN, payload(values=values)))
    assert message == "LEAK g, contextvar: value of another request"


def test_http_status_and_json_problems_are_not_leaks() -> None:
    [status] = check_probe_body(TOKEN, 503, "Service Unavailable")
    assert (status.where, status.expected, status.seen, status.leak) == ("status", 200, 503, False)
    [bad_json] = check_probe_body(TOKEN, 200, "<html>")
    assert (bad_json.where, bad_json.leak) == ("body", False)
    assert check_probe_body(TOKEN, 200, '["a list"]')[0].where == "payload"
    assert check_error_status(500) == []
    assert [(p.where, p.seen) for p in check_error_status(200)] == [("status", 200)]


def test_every_streamed_line_is_checked() -> None:
    good = json.dumps(payload())
    leaked = json.dumps(payload(values=dict.fromkeys(VALUE_KEYS, TOKEN) | {"stack": OTHER}))
    assert check_stream_body(TOKEN, 200, f"{good}\n{good}\n{good}\n") == []
    [problem] = check_stream_body(TOKEN, 200, f"{good}\n{good}\n{leaked}\n")
    assert (problem.where, problem.seen, problem.leak) == ("line[3].values.stack", OTHER, True)
    both = check_stream_body(TOKEN, 200, f"{leaked}\n{good}\n{leaked}\n")
    assert failure_message(both) == "LEAK stack: value of another request"  # once, not per line
    [broken] = check_stream_body(TOKEN, 200, f"{good}\n{{truncated\n")
    assert (broken.where, broken.leak) == ("line[2]", False)
    assert check_stream_body(TOKEN, 200, "")[0].where == "body"


# -- summary: the decision ------------------------------------------------------------------

def tally_of(requests: int = 1000, failures: int = 0, leaks: int = 0, user_errors: int = 0
             ) -> Tally:
    return Tally(requests, failures, leaks, user_errors, rps=100.0, p50=1, p95=2, p99=3)


@pytest.mark.parametrize(("counts", "expect_leaks", "exit_code"), [
    ({}, False, 0),
    ({"failures": 1, "leaks": 1}, False, 1),
    ({"failures": 1}, False, 1),  # a timeout: not a leak, still a failed run
    ({"requests": 99}, False, 1),
    ({"requests": 0}, False, 1),
    ({"user_errors": 1}, False, 1),
    ({"failures": 50, "leaks": 50}, True, 0),
    ({}, True, 1),  # the detector went blind
    ({"failures": 51, "leaks": 50}, True, 1),
    ({"requests": 99, "failures": 99, "leaks": 99}, True, 1),
])
def test_decide(counts: dict[str, int], expect_leaks: bool, exit_code: int) -> None:
    decision = decide(tally_of(**counts), min_requests=100, expect_leaks=expect_leaks)
    assert decision.exit_code == exit_code
    assert bool(decision.reasons) == bool(exit_code)


def test_summary_round_trips_through_its_machine_line() -> None:
    t = tally_of(requests=1234, failures=7, leaks=5)
    text = format_summary(t, decide(t, min_requests=100, expect_leaks=False), min_requests=100,
                          expect_leaks=False)
    assert parse_summary(f"noise\n{text}\nmore noise") == {
        "verdict": "FAIL", "exit_code": "1", "requests": "1234", "leaks": "5",
        "other_failures": "2", "user_errors": "0", "rps": "100.0", "p50_ms": "1",
        "p95_ms": "2", "p99_ms": "3", "min_requests": "100", "expect_leaks": "0"}
    assert "FAIL: 5 requests saw another request's context (LEAK)" in text
    assert parse_summary("no summary here") == {}


# -- verdict: the quitting listener on real locust environments --------------------------------

MakeEnv = Callable[..., Environment]


@pytest.fixture
def make_env() -> Iterator[MakeEnv]:
    """Real environments with the verdict listener; their runners are shut down afterwards."""
    made: list[Environment] = []

    def make(*, min_requests: int = 10, expect_leaks: bool = False, master: bool = False
             ) -> Environment:
        env = Environment(parsed_options=Namespace(min_requests=min_requests,
                                                   expect_leaks=expect_leaks))
        if master:
            env.create_master_runner("127.0.0.1", free_port())
        else:
            env.create_local_runner()
        env.events.quitting.add_listener(verdict.on_quitting)
        made.append(env)
        return env

    yield make
    for env in made:
        env.runner.quit()
        server = getattr(env.runner, "server", None)
        if server is not None:
            server.close(linger=0)


def record(env: Environment, count: int, error: Exception | None = None,
           name: str = "/probe/[token]") -> None:
    """``count`` requests as a FastHttpUser reports them (``exception`` set on failure)."""
    for _ in range(count):
        env.events.request.fire(request_type="GET", name=name, response_time=5.0,
                                response_length=200, exception=error, context={})


def quit_run(env: Environment) -> int | None:
    """What locust does at shutdown: fire ``quitting``, then read the exit code."""
    env.events.quitting.fire(environment=env, reverse=True)
    return env.process_exit_code


def leak_error(token: str = TOKEN) -> CatchResponseError:
    return CatchResponseError(f"LEAK values.g: expected {token!r}, seen {OTHER!r}")


def test_a_clean_run_passes(make_env: MakeEnv, capsys: pytest.CaptureFixture[str]) -> None:
    env = make_env()
    record(env, 20)
    assert quit_run(env) == 0
    summary = parse_summary(capsys.readouterr().out)
    assert (summary["verdict"], summary["requests"], summary["leaks"]) == ("PASS", "20", "0")


def test_a_leak_fails_the_run(make_env: MakeEnv, capsys: pytest.CaptureFixture[str]) -> None:
    env = make_env()
    record(env, 20)
    record(env, 1, leak_error(), name="/probe/[token]/stream")
    assert quit_run(env) == 1
    summary = parse_summary(capsys.readouterr().out)
    assert (summary["leaks"], summary["other_failures"]) == ("1", "0")


def test_a_timeout_fails_the_run_but_is_not_a_leak(make_env: MakeEnv,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    env = make_env()
    record(env, 20)
    record(env, 2, TimeoutError("timed out"))
    record(env, 1, CatchResponseError("BAD RESPONSE status: expected 200, seen 503"))
    assert quit_run(env) == 1
    summary = parse_summary(capsys.readouterr().out)
    assert (summary["leaks"], summary["other_failures"]) == ("0", "3")


def test_too_few_requests_fail_the_run(make_env: MakeEnv) -> None:
    env = make_env(min_requests=10)
    record(env, 9)
    assert quit_run(env) == 1


def test_a_run_that_did_nothing_fails_even_with_the_default_minimum(make_env: MakeEnv) -> None:
    env = make_env()
    env.parsed_options = Namespace()  # no --min-requests given at all
    assert quit_run(env) == 1


def test_exceptions_in_user_code_fail_the_run(make_env: MakeEnv) -> None:
    env = make_env()
    record(env, 20)
    env.runner.log_exception("local", "KeyError('values')", "Traceback ...")
    assert quit_run(env) == 1


def test_expect_leaks_passes_only_when_leaks_were_found(make_env: MakeEnv) -> None:
    with_leaks = make_env(expect_leaks=True)
    record(with_leaks, 10)
    record(with_leaks, 10, leak_error())
    assert quit_run(with_leaks) == 0

    blind = make_env(expect_leaks=True)
    record(blind, 20)
    assert quit_run(blind) == 1


def worker_report(leaks: int, timeouts: int, successes: int) -> dict[str, object]:
    """The report a worker sends its master, built by locust's own worker-side listener."""
    worker = Environment()
    setup_distributed_stats_event_listeners(worker.events, worker.stats)
    for index in range(leaks):  # unique tokens: one error row each, as under real load
        token = f"{index:032x}"
        worker.stats.log_request("GET", "/unsafe/probe/[token]", 5, 200)
        worker.stats.log_error("GET", "/unsafe/probe/[token]", leak_error(token))
    for _ in range(timeouts):
        worker.stats.log_request("GET", "/probe/[token]", 5, 0)
        worker.stats.log_error("GET", "/probe/[token]", TimeoutError("timed out"))
    for _ in range(successes):
        worker.stats.log_request("GET", "/probe/[token]", 5, 200)
    data: dict[str, object] = {}
    worker.events.report_to_master.fire(client_id="worker-1", data=data)
    return data


def test_the_master_classifies_errors_merged_from_workers(make_env: MakeEnv,
                                                         capsys: pytest.CaptureFixture[str]
                                                         ) -> None:
    """Workers ship failures as repr strings; the master still tells leaks apart."""
    master = make_env(master=True, expect_leaks=True)
    master.events.worker_report.fire(client_id="worker-1",
                                     data=worker_report(leaks=3, timeouts=0, successes=5))
    master.events.worker_report.fire(client_id="worker-2",
                                     data=worker_report(leaks=4, timeouts=0, successes=5))
    assert all(isinstance(e.error, str) for e in master.stats.errors.values())
    assert quit_run(master) == 0
    summary = parse_summary(capsys.readouterr().out)
    assert (summary["requests"], summary["leaks"], summary["other_failures"]) == ("17", "7", "0")

    normal = make_env(master=True)
    normal.events.worker_report.fire(client_id="worker-1",
                                     data=worker_report(leaks=0, timeouts=2, successes=20))
    assert quit_run(normal) == 1
    summary = parse_summary(capsys.readouterr().out)
    assert (summary["leaks"], summary["other_failures"]) == ("0", "2")


@pytest.mark.parametrize("error", [
    leak_error(),
    repr(leak_error()),  # as the master holds it
    "CatchResponseError(\"LEAK stale: seen 'g.token=x'\")",
])
def test_error_message_unwraps_leaks_however_stored(error: Exception | str) -> None:
    assert verdict.error_message(error).startswith("LEAK ")


def test_error_message_keeps_other_errors_recognisable() -> None:
    assert verdict.error_message(TimeoutError("timed out")) == "TimeoutError('timed out')"
    assert verdict.error_message("ConnectionRefusedError(111)") == "ConnectionRefusedError(111)"
    assert verdict.error_message(None) == ""


# -- the locustfile's class selection -----------------------------------------------------------

ALL_USERS = [locustfile.KeepAliveProbeUser, locustfile.ConnectionCloseProbeUser,
             locustfile.StreamProbeUser, locustfile.ErrorThenProbeUser,
             locustfile.FanoutProbeUser, locustfile.RawProbeUser,
             locustfile.NegativeControlUser]


def selected(*, expect_leaks: bool, named: list[str]) -> list[str]:
    env = Environment(user_classes=list(ALL_USERS) if not named else
                      [c for c in ALL_USERS if c.__name__ in named],
                      parsed_options=Namespace(expect_leaks=expect_leaks, user_classes=named))
    locustfile.select_user_classes(env)
    return sorted(c.__name__ for c in env.user_classes)


def test_the_runner_names_every_probe_class_of_the_locustfile() -> None:
    probes = {c.__name__ for c in ALL_USERS} - set(run.NEGATIVE_CONTROL_USERS)
    defined = {name for name, obj in vars(locustfile).items()
               if isinstance(obj, type) and issubclass(obj, locustfile.User)
               and obj.__module__ == locustfile.__name__ and not obj.abstract}
    assert set(run.PROBE_USERS) == probes == defined - set(run.NEGATIVE_CONTROL_USERS)


def test_by_default_a_normal_run_excludes_the_negative_control_and_expect_leaks_runs_it_alone(
) -> None:
    assert selected(expect_leaks=False, named=[]) == sorted(run.PROBE_USERS)
    assert selected(expect_leaks=True, named=[]) == ["NegativeControlUser"]
    assert selected(expect_leaks=True, named=["NegativeControlUser"]) == ["NegativeControlUser"]
    assert selected(expect_leaks=False, named=["StreamProbeUser"]) == ["StreamProbeUser"]


@pytest.mark.parametrize(("expect_leaks", "named"), [
    (False, ["NegativeControlUser"]),
    (True, ["StreamProbeUser"]),
    (True, ["NegativeControlUser", "StreamProbeUser"]),
])
def test_a_mixed_or_mismatched_selection_is_refused(expect_leaks: bool, named: list[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        selected(expect_leaks=expect_leaks, named=named)
    assert exited.value.code == 2
