"""Group ``slow``: slowloris heads, stalled and trickling bodies, idle and silent connections,
a connection flood beyond ``--worker-connections``."""

from __future__ import annotations

import contextlib
import time

from tests.reliability.framework import case, expect, group
from tests.reliability.session import Session, no_live_context_case
from tests.reliability.wire import (
    connect,
    get,
    new_token,
    probe_problems,
    probe_request,
    read_reply,
    server_quiet,
)

group(
    "slow", "Slow and idle clients (--read-timeout 1 --keep-alive 1 --worker-connections 20)",
    ("tests.apps.hostile:app", "--read-timeout", "1", "--keep-alive", "1",
     "--worker-connections", "20"))


@case("slow", "slowloris head (1 byte / 0.1 s)", "408 once --read-timeout (1 s) has passed, closed")
def _slowloris(sess: Session) -> str:
    raw = b"GET / HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 100
    with connect(sess.port) as sock:
        started = time.monotonic()
        for byte in raw:
            if not server_quiet(sock, 0.1):
                break
            try:
                sock.send(bytes([byte]))
            except OSError:
                break
        reply = read_reply(sock, timeout=3, started=started)
    got = f"{reply.describe()} after {reply.elapsed:.2f} s"
    expect(reply.statuses == [408] and reply.closed and 0.9 <= reply.elapsed <= 2.0, got)
    return got


@case("slow", "10 slowloris clients at once", "each cut at ~1 s, good client served throughout")
def _many_slowloris(sess: Session) -> str:
    socks = [connect(sess.port) for _ in range(10)]
    started = time.monotonic()
    try:
        for sock in socks:
            sock.sendall(b"GET / HTTP/1.1\r\n")
        deadline = started + 3
        while time.monotonic() < deadline and any(server_quiet(s) for s in socks):
            for sock in socks:
                with contextlib.suppress(OSError):
                    sock.send(b"X")
            time.sleep(0.1)
        open_after = sum(server_quiet(s) for s in socks)
    finally:
        for sock in socks:
            sock.close()
    elapsed = time.monotonic() - started
    got = f"{10 - open_after}/10 cut within {elapsed:.2f} s"
    expect(open_after == 0 and elapsed <= 2.5, got)
    return got


@case("slow", "body stalls half-way", "408 after --read-timeout without progress, closed")
def _slow_body(sess: Session) -> str:
    with connect(sess.port) as sock:
        sock.sendall(b"POST /hostile/echo HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n"
                     + b"b" * 10)
        reply = read_reply(sock, timeout=4)
    got = f"{reply.describe()} after {reply.elapsed:.2f} s"
    expect(reply.statuses == [408] and reply.closed and 0.9 <= reply.elapsed <= 2.0, got)
    return got


@case("slow", "body trickles (1 byte / 0.4 s, 2.4 s in all)",
      "read: the timeout is per read without progress (documented), 200")
def _trickle_body(sess: Session) -> str:
    body = b"abcdef"
    with connect(sess.port) as sock:
        sock.sendall(b"POST /hostile/echo HTTP/1.1\r\nHost: x\r\nContent-Length: 6\r\n"
                     b"Connection: close\r\n\r\n")
        for byte in body:
            time.sleep(0.4)
            sock.sendall(bytes([byte]))
        reply = read_reply(sock, timeout=3)
    got = reply.describe()
    expect(reply.statuses == [200] and reply.responses[0].body == body, got)
    return got


@case("slow", "idle keep-alive connection", "closed quietly after --keep-alive (1 s)")
def _idle_keepalive(sess: Session) -> str:
    with connect(sess.port) as sock:
        sock.sendall(get("/"))
        first = read_reply(sock, timeout=3, responses=1)
        expect(first.statuses == [200] and not first.responses[0].closes, first.describe())
        started = time.monotonic()
        rest = read_reply(sock, timeout=4, started=started)
    got = f"closed after {rest.elapsed:.2f} s idle, {len(rest.raw)} bytes"
    expect(rest.closed and not rest.raw and 0.9 <= rest.elapsed <= 2.0, got)
    return got


@case("slow", "connection that never sends", "closed quietly after --read-timeout (1 s)")
def _silent(sess: Session) -> str:
    with connect(sess.port) as sock:
        reply = read_reply(sock, timeout=4)
    got = f"closed after {reply.elapsed:.2f} s, {len(reply.raw)} bytes"
    expect(reply.closed and not reply.raw and 0.9 <= reply.elapsed <= 2.0, got)
    return got


@case("slow", "40 idle connections vs --worker-connections 20",
      "accepted connections keep being served; a new one queues in the backlog (not "
      "refused) and is served within 2 x --read-timeout; every idle one closed quietly")
def _connection_flood(sess: Session) -> str:
    assert sess.good is not None
    mark = sess.good.mark()
    socks = [connect(sess.port) for _ in range(40)]
    started = time.monotonic()
    try:
        # A new client arriving now waits behind the 40 in the listen backlog.
        token = new_token()
        with connect(sess.port, 10) as late:
            late.sendall(probe_request(token, close=True))
            reply = read_reply(late, timeout=8, responses=1)
        waited = time.monotonic() - started
        expect(reply.statuses == [200] and probe_problems(token, reply.responses[0]) is None,
               f"late client: {reply.describe()} after {waited:.2f} s")
        closed = 0
        deadline = time.monotonic() + 5
        for sock in socks:
            rest = read_reply(sock, timeout=max(0.0, deadline - time.monotonic()))
            closed += rest.closed and not rest.raw
        all_closed = time.monotonic() - started
    finally:
        for sock in socks:
            sock.close()
    during = [r for r in sess.good.since(mark) if r.ended <= started + waited]
    kept = [r for r in during if r.conn_pid is not None]  # on an already accepted connection
    got = (f"late client served after {waited:.2f} s; {closed}/40 idle closed quietly by "
           f"{all_closed:.2f} s; kept-alive good client {sum(r.ok for r in kept)}/{len(kept)} "
           f"ok meanwhile")
    expect(closed == 40 and 0.5 <= waited <= 2.8, got)
    expect(kept and all(r.ok for r in kept), got)
    return got


@case("slow", "neighbours time out (slowloris + stalled bodies) amid probes",
      "cut at the timeout; no probe sees another request's data")
def _neighbours_timeout(sess: Session) -> str:
    assert sess.server is not None and sess.good is not None
    socks = []
    for i in range(10):
        sock = connect(sess.port)
        token = new_token()
        if i % 2:
            sock.sendall(get(f"/probe/{token}")[:-2])  # head never finished
        else:
            sock.sendall(b"POST /hostile/echo HTTP/1.1\r\nHost: x\r\nContent-Length: 50\r\n"
                         b"X-Request-ID: " + token.encode() + b"\r\n\r\npartial")
        socks.append(sock)
    try:
        for sock in socks:
            read_reply(sock, timeout=3)
    finally:
        for sock in socks:
            sock.close()
    return "10 neighbours cut at the timeout"


no_live_context_case("slow")
