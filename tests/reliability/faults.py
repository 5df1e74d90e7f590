"""Group ``faults``: SIGKILL, SIGTERM and SIGHUP under locust load, the drain race, a full disk.

Each case starts and stops its own servers (the group has none), with locust
(``tests.reliability.locust_run``) and recording probe clients running beside."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import threading
import time
from pathlib import Path

from loadtests.procs import Response, children_of
from tests.reliability.framework import Mismatch, case, expect, group
from tests.reliability.good_client import GoodClient, summarize_failures
from tests.reliability.locust_run import (
    LOCUST_USERS,
    REUSE_CHECK,
    LocustRun,
    describe_failures,
    locust_verdict,
    wait_for_load,
)
from tests.reliability.session import Session
from tests.reliability.wire import (
    connect,
    exchange,
    fresh_probe,
    get,
    new_token,
    probe_problems,
    probe_request,
    read_reply,
)
from tests.support import (
    running_server,
    wait_for_workers,
    worker_pids,
)

group("faults", "Faults under load (locust + recording probe clients)", None)


@case("faults", "SIGKILL one of 2 workers under load",
      "replaced within 1 s; the other worker keeps serving; only requests on the killed "
      "worker's connections fail; no leak")
def _sigkill(sess: Session) -> str:
    with running_server("--workers", "2", tmp_path=sess.tmp, workers=2) as srv:
        pids = {int(p.split('"')[1]) for p in wait_for_workers(srv, 2)}
        master = srv.proc.pid
        with LocustRun(srv.url, sess.tmp, "sigkill") as locust, \
                GoodClient(srv.port, keepalive=4, fresh=1, pause=0.005) as good:
            wait_for_load(srv, locust)
            before = good.mark()
            victim = min(pids)
            survivor = max(pids)
            killed_at = time.monotonic()
            os.kill(victim, signal.SIGKILL)
            forked_at = served_at = None
            deadline = killed_at + 5
            while time.monotonic() < deadline and (forked_at is None or served_at is None):
                kids = children_of(master)
                if forked_at is None and kids - pids:
                    forked_at = time.monotonic()
                new = {r.pid for r in good.since(before) if r.ok} - pids
                if served_at is None and new:
                    served_at = min(r.ended for r in good.since(before)
                                    if r.ok and r.pid in new)
                time.sleep(0.005)
            summary = locust.wait()
            records = good.since(before)
        requests, leaks, other = locust_verdict(summary)
    failed = [r for r in records if not r.ok]
    foreign = [r for r in failed if r.conn_pid not in (victim, None)
               or r.started > killed_at + 1.0]
    on_survivor = [r for r in records if r.pid == survivor]
    fork_ms = (forked_at - killed_at) * 1000 if forked_at else None
    serve_ms = (served_at - killed_at) * 1000 if served_at else None
    got = (f"fork after {fork_ms:.0f} ms, new worker serving after {serve_ms:.0f} ms; "
           if fork_ms is not None and serve_ms is not None else "no replacement seen; ")
    got += (f"probe clients: {len(failed)} failed of {len(records)} (all on the killed "
            f"worker's connections: {not foreign}), survivor served {len(on_survivor)}; "
            f"locust: {requests} requests, {other} failed, {leaks} leaks")
    expect(fork_ms is not None and fork_ms <= 1000 and serve_ms is not None, got)
    expect(not foreign and on_survivor and leaks == 0, got)
    expect(not any(r.leak for r in records), got + " (LEAK in a probe)")
    expect(other <= LOCUST_USERS, got + f" ({describe_failures(locust.failures())})")
    return got


@case("faults", "SIGKILL of a young worker (crash-loop backoff)",
      "replaced after the first 0.1 s backoff step (fork within 0.4 s), then serving")
def _young_kill(sess: Session) -> str:
    with running_server(tmp_path=sess.tmp) as srv:
        master = srv.proc.pid
        victim = fresh_probe(srv.port)["pid"]
        killed_at = time.monotonic()
        os.kill(victim, signal.SIGKILL)
        forked_s = None
        while time.monotonic() < killed_at + 3:
            if children_of(master) - {victim}:
                forked_s = time.monotonic() - killed_at
                break
            time.sleep(0.002)
        deadline = time.monotonic() + 5
        new_pid = None
        while time.monotonic() < deadline and new_pid in (None, victim):
            with contextlib.suppress(Mismatch, OSError):
                new_pid = fresh_probe(srv.port)["pid"]
            time.sleep(0.02)
    got = (f"fork after {forked_s * 1000:.0f} ms, new worker {new_pid} serving"
           if forked_s is not None else "no replacement forked within 3 s")
    expect(forked_s is not None and forked_s <= 0.4 and new_pid not in (None, victim), got)
    return got


@case("faults", "SIGTERM under load (graceful shutdown)",
      "exit 0 within --graceful-timeout; every request the server accepted is answered "
      "(in-flight ones with Connection: close); refused ones never got a byte; no leak")
def _sigterm(sess: Session) -> str:
    access = sess.tmp / "sigterm-access.log"
    graceful = 5.0
    with running_server("tests.apps.hostile:app", "--graceful-timeout", str(graceful),
                        "--access-log", str(access), "--log-format", "json",
                        tmp_path=sess.tmp, workers=2) as srv:
        wait_for_workers(srv, 2)
        slow_results: list[Response | str] = []

        def slow_request() -> None:  # in flight when the signal arrives
            try:
                reply = exchange(srv.port, get("/hostile/sleep/1.5"), timeout=10, responses=1)
                slow_results.append(reply.responses[0] if reply.responses else reply.describe())
            except OSError as exc:
                slow_results.append(repr(exc))

        with LocustRun(srv.url, sess.tmp, "sigterm", seconds=6) as locust, \
                GoodClient(srv.port, keepalive=3, fresh=2, pause=0.002, yields=5) as good:
            wait_for_load(srv, locust)
            slow = [threading.Thread(target=slow_request) for _ in range(4)]
            for thread in slow:
                thread.start()
            time.sleep(0.3)
            term_at = time.monotonic()
            srv.signal(signal.SIGTERM)
            try:
                code = srv.wait(graceful + 5)
            except subprocess.TimeoutExpired:
                code = None
            exit_s = time.monotonic() - term_at
            for thread in slow:
                thread.join(10)
            good.stop()
            summary = locust.wait()
        log = srv.log()
    records = good.records
    logged = set()
    for line in access.read_text().splitlines():
        with contextlib.suppress(ValueError):
            logged.add(json.loads(line).get("request_id"))
    accepted = [r for r in records if r.token in logged]
    lost = [r for r in accepted if not r.ok]
    refused = [r for r in records if not r.ok and r.token not in logged]
    partial = [r for r in refused if r.received]
    cut = [r for r in records if not r.ok and r.conn_pid is not None]  # on a served connection
    connect_refused = sum(r.error is not None and r.error.startswith("connect") for r in refused)
    slow_ok = sum(isinstance(r, Response) and r.status == 200 and r.closes
                  for r in slow_results)
    requests, leaks, _other = locust_verdict(summary)
    got = (f"exit {code} after {exit_s:.2f} s; probe clients: {len(accepted)} accepted, "
           f"{len(lost)} of them failed, {len(cut)} cut on kept-alive connections; "
           f"{len(refused)} new connections refused once listeners closed ({connect_refused} "
           f"at connect, {len(partial)} with partial bytes); 4 in-flight 1.5 s requests: "
           f"{slow_ok} answered 200 + Connection: close; locust {requests} requests, "
           f"{leaks} leaks")
    expect(code == 0 and exit_s <= graceful + 1, got)
    expect(not lost and not cut and not partial and slow_ok == 4 and leaks == 0,
           got + f" ({summarize_failures(lost + cut + partial)})")
    expect(not any(r.leak for r in records), got + " (LEAK in a probe)")
    expect("still busy after the graceful timeout" not in log, got + " (workers were killed)")
    return got


@case("faults", "request on an idle keep-alive connection just after SIGTERM",
      "answered with Connection: close (drain grace), not cut off; silent ones closed "
      "within ~1 s; exit 0")
def _drain_race(sess: Session) -> str:
    with running_server("--keep-alive", "30", tmp_path=sess.tmp) as srv:
        socks = [connect(srv.port) for _ in range(3)]
        try:
            for sock in socks:
                sock.sendall(probe_request(new_token()))
                first = read_reply(sock, timeout=5, responses=1)
                expect(first.statuses == [200], f"before the signal: {first.describe()}")
            term_at = time.monotonic()
            srv.signal(signal.SIGTERM)
            time.sleep(0.2)  # the drain has begun; two clients send their next request now
            tokens = [new_token(), new_token()]
            answers = []
            for sock, token in zip(socks, tokens, strict=False):
                with contextlib.suppress(OSError):
                    sock.sendall(probe_request(token))
            for sock, token in zip(socks, tokens, strict=False):
                reply = read_reply(sock, timeout=5)
                sock.close()  # as a client does on EOF (else the server lingers for it)
                ok = (reply.statuses == [200] and reply.responses[0].closes and reply.closed
                      and probe_problems(token, reply.responses[0]) is None)
                answers.append("answered+close" if ok else reply.describe())
            silent = read_reply(socks[2], timeout=5)
            silent_s = time.monotonic() - term_at
            socks[2].close()
            code = srv.wait(10)
            exit_s = time.monotonic() - term_at
        finally:
            for sock in socks:
                sock.close()
    got = (f"{', '.join(answers)}; silent one closed after {silent_s:.2f} s "
           f"({len(silent.raw)} bytes); exit {code} after {exit_s:.2f} s")
    expect(answers == ["answered+close"] * 2, got)
    expect(silent.closed and not silent.raw and silent_s <= 2.0, got)
    expect(code == 0 and exit_s <= 3.0, got)
    return got


@case("faults", "SIGHUP under load (graceful reload)",
      "all workers replaced; zero failed requests; no leak")
def _sighup(sess: Session) -> str:
    with running_server("--workers", "2", tmp_path=sess.tmp, workers=2) as srv:
        before = wait_for_workers(srv, 2)
        with LocustRun(srv.url, sess.tmp, "sighup") as locust, \
                GoodClient(srv.port, keepalive=3, fresh=1, pause=0.005) as good:
            wait_for_load(srv, locust)
            hup_at = time.monotonic()
            srv.signal(signal.SIGHUP)
            after = before
            deadline = hup_at + 10
            while time.monotonic() < deadline:
                after = worker_pids(srv)
                if len(after) == 2 and not after & before:
                    break
                time.sleep(0.1)
            replaced_s = time.monotonic() - hup_at
            summary = locust.wait()
            good.stop()
            records = good.records
            failures = locust.failures()
    requests, leaks, other = locust_verdict(summary)
    reuse = sum(n for n, error in failures if error.startswith(REUSE_CHECK))
    failed = [r for r in records if not r.ok]
    got = (f"2 new workers after {replaced_s:.2f} s; probe clients {len(records) - len(failed)}"
           f"/{len(records)} ok; locust {requests} requests, {other - reuse} failed, "
           f"{leaks} leaks (+{reuse} connection-reuse checks a reload legitimately breaks)")
    expect(len(after) == 2 and not after & before, got)
    expect(not failed and other == reuse and leaks == 0,
           got + f" ({summarize_failures(records)} {describe_failures(failures)})")
    return got


@case("faults", "access log on a full disk (--access-log /dev/full)",
      "requests still served; the failed log writes do not disturb serving")
def _disk_full(sess: Session) -> str:
    if not Path("/dev/full").exists():
        return "skipped: no /dev/full"
    with running_server("--access-log", "/dev/full", tmp_path=sess.tmp) as srv:
        ok = 0
        for _ in range(20):
            ok += "pid" in fresh_probe(srv.port)
        alive = srv.proc.poll() is None
        log = srv.log()
    got = f"{ok}/20 probes ok, server alive: {alive}"
    expect(ok == 20 and alive and "Traceback" not in log, got)
    return got


# -- start-up errors: one line on stderr, exit 2
