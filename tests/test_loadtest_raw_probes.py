"""The raw-byte shapes' judgement (loadtests/raw_probes.py), without a server or locust."""

from __future__ import annotations

import json
import socket
import threading

from loadtests.probe_check import VALUE_KEYS, failure_message
from loadtests.procs import Response
from loadtests.raw_probes import Outcome, RawConnection, judge, request
from tests.reliability.locust_run import REUSE_CHECK

TOKEN, OTHER = "a" * 32, "b" * 32


class _Conn:  # what judge() reads of a RawConnection
    told_close = False


CONN = _Conn()


def _answer(token: str, status: int = 200, ids: tuple[str, ...] = (TOKEN,)) -> Response:
    body = json.dumps({"token": token, "values": dict.fromkeys(VALUE_KEYS, token),
                       "stale": []}).encode() if status == 200 else b"500 Internal Server Error"
    return Response(status, "", [("X-Request-ID", rid) for rid in ids], body, b"")


def test_a_clean_answer_has_no_problem():
    assert judge(Outcome("x", TOKEN), _answer(TOKEN), CONN).problems == []
    assert judge(Outcome("x", TOKEN), _answer(TOKEN, 500), CONN, expect=500).problems == []


def test_the_next_requests_answer_passed_off_as_the_500_is_a_leak():
    outcome = judge(Outcome("x", TOKEN), _answer(OTHER, ids=(OTHER,)), CONN, expect=500)
    assert failure_message(outcome.problems).startswith("LEAK")


def test_a_missing_answer_is_a_failure_but_no_leak():
    message = failure_message(judge(Outcome("x", TOKEN), None, CONN).problems)
    assert message.startswith("BAD RESPONSE")


def test_request_ids_must_be_exactly_the_clients():
    for ids in ((), (TOKEN, TOKEN), (OTHER, TOKEN)):
        outcome = judge(Outcome("x", TOKEN), _answer(TOKEN, ids=ids), CONN)
        message = failure_message(outcome.problems)
        assert message.startswith("LEAK x-request-id"), (ids, message)


def test_a_body_that_is_never_sent_is_announced_all_the_same():
    raw = request("/p", TOKEN, length=400, headers="Expect: 100-continue\r\n")
    assert b"Content-Length: 400\r\n" in raw and raw.endswith(b"\r\n\r\n")


def test_after_connection_close_no_answer_is_a_broken_reuse_check_not_a_lost_request():
    """A draining worker answers with ``Connection: close`` and closes: the shape sends
    nothing more on that connection, and the missing answer is counted as a reuse check
    (what a reload legitimately breaks), not as a request the server lost."""
    listener = socket.create_server(("127.0.0.1", 0))
    sent_after: list[bytes] = []

    def serve() -> None:
        sock, _ = listener.accept()
        with sock:
            sock.recv(65536)
            sock.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n"
                         b"\r\nok")
            sock.shutdown(socket.SHUT_WR)
            sock.settimeout(1)
            try:
                sent_after.append(sock.recv(65536))
            except OSError:
                sent_after.append(b"?")

    server = threading.Thread(target=serve)
    server.start()
    conn = RawConnection(*listener.getsockname())
    conn.send(request("/first", TOKEN))
    assert conn.response().status == 200 and conn.told_close
    conn.send(request("/second", OTHER))
    conn.sock.shutdown(socket.SHUT_WR)
    second = judge(Outcome("x", OTHER), conn.response(), conn)
    server.join(5)
    conn.close()
    listener.close()
    assert sent_after == [b""]  # nothing was sent after the close notice
    assert failure_message(second.problems).startswith(REUSE_CHECK)
