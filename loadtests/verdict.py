"""The run's verdict from locust's own statistics: the ``quitting`` listener and its options.

Everything is counted by locust: requests and failures in ``stats.total``, failure messages
with their occurrences in ``stats.errors``, exceptions raised by user code in
``runner.exceptions``.  Leaks are the failures whose message starts with ``LEAK``.  This works
unchanged when locust runs distributed, because workers ship their errors to the master, which
merges them by message into its own ``stats.errors`` — so the master, which alone sees the
whole run, classifies them, and workers decide nothing.  The rules themselves are in
``loadtests.summary``.
"""

from __future__ import annotations

import ast
from typing import Any

from locust.env import Environment
from locust.exception import CatchResponseError
from locust.runners import WorkerRunner
from locust.stats import RequestStats

from .probe_check import is_leak_message
from .summary import Tally, decide, format_summary

__all__ = ["DEFAULT_MIN_REQUESTS", "add_arguments", "error_message", "on_quitting", "tally"]

DEFAULT_MIN_REQUESTS = 1
"""Without ``--min-requests`` a run must at least have made one request."""

_WRAPPER = "CatchResponseError("


def add_arguments(parser: Any) -> None:
    """``init_command_line_parser`` listener: the verdict's options (also as env vars)."""
    group = parser.add_argument_group("Leak-probe verdict")
    group.add_argument(
        "--min-requests", type=int, default=DEFAULT_MIN_REQUESTS, env_var="LOCUST_MIN_REQUESTS",
        help="Fail the run when fewer requests than this were made (default: %(default)s).")
    group.add_argument(
        "--expect-leaks", action="store_true", default=False, env_var="LOCUST_EXPECT_LEAKS",
        help="Negative control: pass only if leaks WERE detected (runs NegativeControlUser).")


def error_message(error: BaseException | str | None) -> str:
    """The text given to ``response.failure`` (or the error's repr), however locust stored it.

    Standalone, ``stats.errors`` holds the exception object; on the master of a distributed
    run it holds the worker's ``repr`` string, e.g. ``CatchResponseError('LEAK ...')``.
    """
    if isinstance(error, CatchResponseError):
        return str(error.args[0]) if error.args else ""
    if isinstance(error, BaseException):
        return repr(error)
    if error is None:
        return ""
    if error.startswith(_WRAPPER) and error.endswith(")"):
        inner = error[len(_WRAPPER):-1]
        try:
            value = ast.literal_eval(inner)
        except (ValueError, SyntaxError):
            return inner
        return value if isinstance(value, str) else inner
    return error


def tally(stats: RequestStats, exceptions: dict[Any, dict[str, Any]] | None = None) -> Tally:
    """Count from locust's own stats (and ``runner.exceptions``, errors in user code)."""
    leaks = sum(entry.occurrences for entry in stats.errors.values()
                if is_leak_message(error_message(entry.error)))
    total = stats.total
    return Tally(
        requests=total.num_requests,
        # num_failures and the error table are fed by the same events; max() keeps
        # other_failures non-negative should they ever disagree.
        failures=max(total.num_failures, leaks),
        leaks=leaks,
        user_errors=sum(int(row.get("count", 1)) for row in (exceptions or {}).values()),
        rps=total.total_rps,
        p50=total.get_response_time_percentile(0.50) or 0,
        p95=total.get_response_time_percentile(0.95) or 0,
        p99=total.get_response_time_percentile(0.99) or 0,
    )


def on_quitting(environment: Environment, **_kwargs: Any) -> None:
    """``quitting`` listener: set ``environment.process_exit_code`` and print the summary.

    Workers skip it: they see only their own share (and have already shipped their errors to
    the master), so a worker's verdict would be wrong and its exit code is not the run's.
    """
    runner = environment.runner
    if isinstance(runner, WorkerRunner):
        return
    options = environment.parsed_options
    min_requests = getattr(options, "min_requests", DEFAULT_MIN_REQUESTS)
    expect_leaks = bool(getattr(options, "expect_leaks", False))
    t = tally(environment.stats, runner.exceptions if runner is not None else None)
    decision = decide(t, min_requests=min_requests, expect_leaks=expect_leaks)
    environment.process_exit_code = decision.exit_code
    print(format_summary(t, decision, min_requests=min_requests, expect_leaks=expect_leaks),
          flush=True)
