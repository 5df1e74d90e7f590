"""The raw-byte shapes' judgement (loadtests/raw_probes.py), without a server or locust."""

from __future__ import annotations

import json

from loadtests.probe_check import VALUE_KEYS, failure_message
from loadtests.procs import Response
from loadtests.raw_probes import Outcome, judge, request

TOKEN, OTHER = "a" * 32, "b" * 32


def _answer(token: str, status: int = 200, ids: tuple[str, ...] = (TOKEN,)) -> Response:
    body = json.dumps({"token": token, "values": dict.fromkeys(VALUE_KEYS, token),
                       "stale": []}).encode() if status == 200 else b"500 Internal Server Error"
    return Response(status, "", [("X-Request-ID", rid) for rid in ids], body, b"")


def test_a_clean_answer_has_no_problem():
    assert judge(Outcome("x", TOKEN), _answer(TOKEN)).problems == []
    assert judge(Outcome("x", TOKEN), _answer(TOKEN, 500), expect=500).problems == []


def test_the_next_requests_answer_passed_off_as_the_500_is_a_leak():
    outcome = judge(Outcome("x", TOKEN), _answer(OTHER, ids=(OTHER,)), expect=500)
    assert failure_message(outcome.problems).startswith("LEAK")


def test_a_missing_answer_is_a_failure_but_no_leak():
    message = failure_message(judge(Outcome("x", TOKEN), None).problems)
    assert message.startswith("BAD RESPONSE")


def test_request_ids_must_be_exactly_the_clients():
    for ids in ((), (TOKEN, TOKEN), (OTHER, TOKEN)):
        message = failure_message(judge(Outcome("x", TOKEN), _answer(TOKEN, ids=ids)).problems)
        assert message.startswith("LEAK x-request-id"), (ids, message)


def test_a_body_that_is_never_sent_is_announced_all_the_same():
    raw = request("/p", TOKEN, length=400, headers="Expect: 100-continue\r\n")
    assert b"Content-Length: 400\r\n" in raw and raw.endswith(b"\r\n\r\n")
