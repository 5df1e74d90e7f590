"""Leak probes under load: every request asks "is the context I see my own?".

One user class per probe variant of ``docs/probe-contract.md``; each request carries a fresh
random token in the path, ``X-Probe-Token`` and ``X-Request-ID``, and fails (through locust's
``catch_response``) when the answer shows anything else.  What counts as a leak is decided in
``loadtests.probe_check``, the run's exit code in ``loadtests.verdict``, what a person reads
about leaks (log, web UI "Leaks" tab and banner, report) in ``loadtests.leak_view``; none of
them counts anything, locust does.

Run from the repository root (``python -m loadtests.run`` does it for you)::

    locust -f loadtests/locustfile.py --headless -u 200 -r 100 -t 30s -H http://127.0.0.1:8000
    locust -f loadtests/locustfile.py --headless ... --expect-leaks   # negative control

Without user classes named on the command line a normal run uses every probe class but not
:class:`NegativeControlUser`, and ``--expect-leaks`` uses only that one.
"""

from __future__ import annotations

import logging
import secrets
import sys
import time
from typing import Any
from urllib.parse import urlsplit

from locust import FastHttpUser, User, constant, events, task
from locust.contrib.fasthttp import FAILURE_EXCEPTIONS, ResponseContextManager
from locust.env import Environment
from locust.exception import CatchResponseError

from loadtests import leak_view, verdict
from loadtests.probe_check import (
    Problem,
    check_error_status,
    check_probe_body,
    check_stream_body,
    failure_detail,
    failure_message,
    is_leak_message,
)
from loadtests.raw_probes import SHAPES, Outcome, RawConnection

log = logging.getLogger("loadtests")

FANOUT_CHILDREN = 4


def _read(response: ResponseContextManager) -> str | None:
    """The body as text, or None when no complete HTTP response came back.

    Refused, reset, timed out or cut short: locust already holds that error and reports it
    when the ``with`` block ends, as long as we mark nothing.  JSON is UTF-8, so the body is
    decoded as such (``response.text`` would guess the charset, slowly).
    """
    if response.status_code == 0:
        return None
    try:
        return (response.content or b"").decode("utf-8", "replace")
    except FAILURE_EXCEPTIONS:
        return None


class ProbeUser(FastHttpUser):
    """Common ground of the probe users: tokens, headers and judging one probe."""

    abstract = True
    wait_time = constant(0)  # back to back: the most concurrency per user
    # A stuck request must become a counted failure inside the run, not vanish when it ends.
    network_timeout = 10.0
    connection_timeout = 10.0

    @staticmethod
    def new_token() -> tuple[str, dict[str, str]]:
        """A fresh token and the headers that carry it (the path carries it too)."""
        token = secrets.token_hex(16)
        return token, {"X-Probe-Token": token, "X-Request-ID": token}

    def report(self, response: ResponseContextManager, name: str, token: str,
               problems: list[Problem]) -> None:
        """Mark the response failed with the problems' message, or successful without any.

        The message names the kind of leak only, so locust's error table has one row per
        kind; the tokens go to this process's leak view (log, examples, report).
        """
        message = failure_message(problems)
        if message is None:
            response.success()
            return
        if is_leak_message(message):
            leak_view.view_of(self.environment).record(name, message,
                                                       failure_detail(token, problems))
        response.failure(message)

    def probe(self, path: str, name: str, *, extra_headers: dict[str, str] | None = None,
              children: int | None = None) -> None:
        """GET ``path`` (``{token}`` filled in) and judge it as one probe payload."""
        token, headers = self.new_token()
        headers.update(extra_headers or {})
        with self.client.get(path.format(token=token), headers=headers, name=name,
                             catch_response=True) as response:
            if (body := _read(response)) is not None:
                self.report(response, name, token,
                            check_probe_body(token, response.status_code, body,
                                             children=children))


class KeepAliveProbeUser(ProbeUser):
    """Plain probes, all on one kept-alive connection: context must not outlive a request."""

    @task
    def plain(self) -> None:
        self.probe("/probe/{token}", "/probe/[token]")


class ConnectionCloseProbeUser(ProbeUser):
    """Plain probes with ``Connection: close``: a fresh connection for every request."""

    @task
    def close(self) -> None:
        self.probe("/probe/{token}", "/probe/[token] (Connection: close)",
                   extra_headers={"Connection": "close"})


class StreamProbeUser(ProbeUser):
    """Streamed probes: the context is read while the server iterates the body."""

    @task
    def stream(self) -> None:
        token, headers = self.new_token()
        name = "/probe/[token]/stream"
        with self.client.get(f"/probe/{token}/stream", headers=headers, name=name,
                             catch_response=True) as response:
            if (body := _read(response)) is not None:
                self.report(response, name, token,
                            check_stream_body(token, response.status_code, body))


class FanoutProbeUser(ProbeUser):
    """Fan-out probes: children get a copy of the context; their writes stay theirs."""

    @task
    def fanout(self) -> None:
        self.probe(f"/probe/{{token}}/fanout?children={FANOUT_CHILDREN}",
                   f"/probe/[token]/fanout?children={FANOUT_CHILDREN}",
                   children=FANOUT_CHILDREN)


class ErrorThenProbeUser(ProbeUser):
    """A request that raises after filling the context, then a probe on the same connection.

    The pool holds a single connection, so the follow-up probe goes out on the connection
    the 500 came back on — unless the server closed it, which the user detects by the
    connection's identity and reports as a (non-leak) failure: the variant would otherwise
    silently test nothing.
    """

    concurrency = 1

    def _idle_connection(self) -> Any:
        """The connection the next request will use (None when the pool holds none).

        geventhttpclient exposes no public handle on its pooled sockets; this reads the
        (pinned) version's pool, a LIFO queue that with ``concurrency = 1`` holds at most one.
        """
        client = self.client.client.clientpool.get_client(self.host)
        idle = client._connection_pool._socket_queue.queue
        return idle[-1] if idle else None

    @task
    def error_then_probe(self) -> None:
        token, headers = self.new_token()
        name = "/probe/[token]/error"
        with self.client.get(f"/probe/{token}/error", headers=headers, name=name,
                             catch_response=True) as response:
            if _read(response) is None:
                return
            problems = check_error_status(response.status_code)
            if (response.headers or {}).get("Connection", "").lower() == "close":
                problems.append(Problem("connection", "kept alive after the 500",
                                        "Connection: close", leak=False))
            self.report(response, name, token, problems)
        connection = self._idle_connection()

        token, headers = self.new_token()
        name = "/probe/[token] (after error)"
        with self.client.get(f"/probe/{token}", headers=headers, name=name,
                             catch_response=True) as response:
            if (body := _read(response)) is None:
                return
            problems = check_probe_body(token, response.status_code, body)
            if connection is not None and self._idle_connection() is not connection:
                # The 500 did not announce a close (that is reported above), yet the
                # connection was gone: the probe did not test what it is meant to.
                problems.append(Problem("connection", "the connection of the 500",
                                        "a new connection", leak=False))
            self.report(response, name, token, problems)


class RawProbeUser(User):
    """Every shape of :mod:`loadtests.raw_probes` in turn, each on a fresh raw connection:
    pipelining, HTTP/1.0, partial and ignored bodies, a raising ``close()``, a client that
    leaves mid-response, a late ``write()``, a ``GreenletExit``, a shared header list,
    threadpool tasks.  Each answer is one request in locust's statistics (type ``RAW``)."""

    wait_time = constant(0)

    def on_start(self) -> None:
        url = urlsplit(self.host)
        self.address = (url.hostname or "127.0.0.1", url.port or 80)

    def record(self, outcome: Outcome) -> None:
        message = failure_message(outcome.problems)
        if message is not None and is_leak_message(message):
            leak_view.view_of(self.environment).record(
                outcome.name, message, failure_detail(outcome.token, outcome.problems))
        self.environment.events.request.fire(
            request_type="RAW", name=outcome.name,
            response_time=(time.perf_counter() - outcome.started) * 1000,
            response_length=outcome.length, context={},
            exception=None if message is None else CatchResponseError(message))

    @task
    def shapes(self) -> None:
        for shape in SHAPES:
            started = time.perf_counter()
            try:
                conn = RawConnection(*self.address)
            except OSError as exc:
                self.record(Outcome(f"RAW {shape.__name__}", "", [
                    Problem("connect", "a connection", str(exc), leak=False)], started))
                continue
            try:
                for outcome in shape(conn):  # each recorded as soon as it is judged
                    self.record(outcome)
            except OSError as exc:
                self.record(Outcome(f"RAW {shape.__name__}", "", [
                    Problem("socket", "the shape's answers", str(exc), leak=False)], started))
            finally:
                conn.close()


class NegativeControlUser(ProbeUser):
    """The negative control: ``/unsafe/probe/<token>`` must be reported as leaking.

    Selected only by ``--expect-leaks`` (or by naming it); the server mounts the endpoint only
    with ``--unsafe-probe``.
    """

    @task
    def unsafe(self) -> None:
        self.probe("/unsafe/probe/{token}", "/unsafe/probe/[token]")


@events.init.add_listener
def select_user_classes(environment: Environment, **_kwargs: Any) -> None:
    """Default class selection by mode, and a refusal to mix the negative control with probes.

    A mixed run has no meaningful verdict: the control's leaks would fail a normal run, and
    under ``--expect-leaks`` they would hide whether the real probes leaked.
    """
    options = environment.parsed_options
    expect_leaks = bool(getattr(options, "expect_leaks", False))
    named = bool(getattr(options, "user_classes", None))
    classes = environment.user_classes
    if not named:
        classes[:] = [c for c in classes if (c is NegativeControlUser) == expect_leaks]
        return
    has_control = NegativeControlUser in classes
    if expect_leaks != has_control or (has_control and len(classes) > 1):
        log.error("--expect-leaks runs NegativeControlUser alone, and a normal run never "
                  "includes it; selected: %s", ", ".join(c.__name__ for c in classes))
        sys.exit(2)


events.init_command_line_parser.add_listener(verdict.add_arguments)
events.init_command_line_parser.add_listener(leak_view.add_arguments)
events.init.add_listener(leak_view.install)
events.quitting.add_listener(verdict.on_quitting)
