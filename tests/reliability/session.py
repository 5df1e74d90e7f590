"""Running reliability cases: a group's server and good client, and the invariants.

:func:`run_case` wraps every case of a group that has a server: the good client must have
kept being served during the case with no failure and no leak, a new connection must be
served afterwards, and the worker must be the same process (no crash). Every process
started here is stopped (``tests.support.running_server``), also when a case fails.
"""

from __future__ import annotations

import contextlib
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from tests.reliability.framework import GROUPS, Case, Group, Mismatch, case, cases_of, expect
from tests.reliability.good_client import GoodClient, summarize_failures
from tests.reliability.wire import fresh_probe
from tests.support import (
    ServerProcess,
    running_server,
    wait_no_live_entries,
)


@dataclass
class Session:
    """What a case gets: the group's server (if any), its good client, a scratch dir."""

    group: Group
    tmp: Path
    server: ServerProcess | None = None
    good: GoodClient | None = None
    worker_pid: int | None = None

    @property
    def port(self) -> int:
        assert self.server is not None
        return self.server.port


@contextlib.contextmanager
def session(group_: Group | str, tmp: Path) -> Iterator[Session]:
    """Start the group's server and good client; stop both, always."""
    grp = GROUPS[group_] if isinstance(group_, str) else group_
    sess = Session(grp, tmp)
    if grp.server is None:
        yield sess
        return
    with running_server(*grp.server, tmp_path=tmp, workers=grp.workers) as srv:
        sess.server = srv
        if grp.workers == 1:
            sess.worker_pid = fresh_probe(srv.port)["pid"]
        if not grp.good_client:
            yield sess
            return
        with GoodClient(srv.port) as good:
            sess.good = good
            expect(good.wait_served(0, 3), "good client never served")
            yield sess


class Sessions:
    """One lazily started :func:`session` per group, all stopped by ``close()`` (pytest)."""

    def __init__(self, make_tmp: Callable[[str], Path]) -> None:
        self._make_tmp = make_tmp
        self._stack = contextlib.ExitStack()
        self._sessions: dict[str, Session | BaseException] = {}

    def __enter__(self) -> Sessions:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def get(self, name: str) -> Session:
        if name not in self._sessions:
            try:
                self._sessions[name] = self._stack.enter_context(
                    session(name, self._make_tmp(name)))
            except Exception as exc:  # the server did not start: every case of it fails
                self._sessions[name] = exc
        found = self._sessions[name]
        if isinstance(found, BaseException):
            raise Mismatch(f"group {name!r} did not start: {found}")
        return found

    def close(self) -> None:
        self._stack.close()


@dataclass
class Outcome:
    case: Case
    passed: bool
    got: str
    seconds: float


def run_case(sess: Session, c: Case) -> Outcome:
    """Run one case plus the group's invariants; never raises (see ``Outcome.passed``)."""
    started = time.monotonic()
    mark = sess.good.mark() if sess.good else 0
    try:
        got = c.run(sess)
        got += _check_invariants(sess, mark)
        passed = True
    except Mismatch as exc:
        got, passed = str(exc), False
    except Exception as exc:  # a broken case is a failed case, with the reason shown
        got, passed = f"error: {type(exc).__name__}: {exc}", False
    return Outcome(c, passed, got, time.monotonic() - started)


def _check_invariants(sess: Session, mark: int) -> str:
    """The good client was served throughout; the worker is alive and the same process."""
    if sess.server is None:
        return ""
    srv = sess.server
    expect(srv.proc.poll() is None, f"server exited with {srv.proc.returncode}")
    suffix = ""
    if sess.good is not None:
        served = sess.good.wait_served(mark, 3)
        records = sess.good.since(mark)
        bad = [r for r in records if not r.ok]
        expect(not bad, f"good client failed {len(bad)}/{len(records)}: "
               f"{summarize_failures(records)}; the server log ends:\n{srv.log()[-1500:]}")
        expect(served >= 3, f"good client starved: {served} served after the case")
        suffix = f"; good client {len(records)}/{len(records)} ok"
    payload = fresh_probe(srv.port)
    if sess.worker_pid is not None:
        expect(payload["pid"] == sess.worker_pid,
               f"worker replaced: pid {sess.worker_pid} -> {payload['pid']} (crash?)")
    return suffix


def no_live_context_case(group_name: str) -> None:
    def run(sess: Session) -> str:
        assert sess.server is not None
        total = len(sess.good.records) if sess.good else 0
        with sess.good.paused() if sess.good else contextlib.nullcontext():
            left = wait_no_live_entries(sess.server)
        expect(left == 0, f"{left:g} live ctxlocal entries with no request running (LEAK)")
        return f"0 live entries; {total} good-client probes so far, none saw foreign data"

    case(group_name, "no request context outlives its request",
         "/metrics: 0 live ctxlocal entries once idle")(run)


def run_group(name: str, tmp: Path | None = None,
              on_outcome: Callable[[Outcome], None] | None = None) -> list[Outcome]:
    """Run every case of a group (for the report), in one session."""
    outcomes = []
    with contextlib.ExitStack() as stack:
        if tmp is None:
            tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="reliability-")))
        try:
            sess = stack.enter_context(session(name, tmp))
        except Exception as exc:  # the server did not even start
            failed = [Outcome(c, False, f"group did not start: {exc}"[:300], 0.0)
                      for c in cases_of(name)]
            for outcome in failed:
                if on_outcome:
                    on_outcome(outcome)
            return failed
        for c in cases_of(name):
            outcome = run_case(sess, c)
            outcomes.append(outcome)
            if on_outcome:
                on_outcome(outcome)
    return outcomes
