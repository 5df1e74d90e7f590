"""Group ``hostile``: malformed, smuggling and over-limit requests, with a good client served
throughout every case."""

from __future__ import annotations

import json
import re
import select
import socket
import struct
import time
from collections.abc import Iterator

from loadtests.procs import ResponseReader
from tests import corpus
from tests.reliability.framework import case, expect, group
from tests.reliability.session import Session, no_live_context_case
from tests.reliability.wire import (
    connect,
    exchange,
    expect_reject,
    get,
    hits,
    new_token,
    probe_problems,
    probe_request,
    read_reply,
)

MAX_BODY = corpus.LIMITS["max_body_size"]
group(
    "hostile", "Hostile HTTP (a good client is served throughout every case)",
    ("tests.apps.hostile:app", *corpus.SERVER_FLAGS, "--read-timeout", "2", "--keep-alive", "2"))


def _reject_case(name: str, raw: bytes, statuses: tuple[int, ...]) -> None:
    want = "/".join(map(str, statuses))

    def run(sess: Session) -> str:
        whole = exchange(sess.port, raw)
        got = expect_reject(whole, statuses)
        split = exchange(sess.port, raw, pieces=40)
        expect(split.statuses == whole.statuses and split.closed,
               f"{got}; in 40 small writes: {split.describe()}")
        return got + " (also in 40 small writes)"

    case("hostile", name, f"{want}, closed")(run)


# Every request of the invalid corpus that has a row in the report (tests/requests/invalid/
# outcomes.toml) must be answered and closed; it is sent in one write and again in 40 small
# ones (the parser must not depend on how bytes arrive). The smuggling ones come below.
for _request in corpus.INVALID:
    if _request.reliability and not _request.smuggled:
        _reject_case(_request.reliability, _request.raw(), _request.status)


@case("hostile", "limits are exact: URI, header count at the limit are served",
      "200, 200")
def _limits_exact(sess: Session) -> str:
    one = exchange(sess.port, corpus.valid("015").raw(), responses=1)  # a 1024-byte line
    two = exchange(sess.port, corpus.valid("016").raw(), responses=1)  # 20 fields
    got = f"{one.describe()}; {two.describe()}"
    expect(one.statuses == [200] and two.statuses == [200], got)
    return f"{one.statuses[0]}, {two.statuses[0]}"


# -- request smuggling: the request hidden in the body must never run

def _smuggle_case(name: str, request: corpus.Request, statuses: tuple[int, ...]) -> None:
    want = "/".join(map(str, statuses))

    def run(sess: Session) -> str:
        tag = new_token()
        reply = exchange(sess.port, request.raw(tag))
        got = reply.describe()
        if statuses == (200,):  # framed by the real headers: the "body" is a 2nd request
            expect(reply.statuses[:1] == [200] and reply.closed, got)
        else:
            expect_reject(reply, statuses)
        count = hits(sess.port, tag)
        expect(count == 0, f"{got}; SMUGGLED REQUEST RAN ({count}x)")
        return f"{got}; smuggled request ran 0x"

    case("hostile", name, f"{want}, closed, smuggled request not run")(run)


# The corpus requests that end with a hidden `GET /hostile/mark/{tag}`: a fresh tag each run,
# and /hostile/hits proves the hidden request never ran. The valid one (Content_Length) is
# framed by its real headers, so its "body" would be a second request.
for _request in [*corpus.INVALID, *corpus.VALID]:
    if _request.reliability and _request.smuggled:
        _smuggle_case(_request.reliability, _request,
                      _request.status if isinstance(_request, corpus.Invalid) else (200,))


@case("hostile", "bad chunk to an app that ignores the body",
      "200 for the valid head, then closed; the bytes after it never run")
def _bad_chunk_unread(sess: Session) -> str:
    tag = new_token()
    raw = (b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n"
           + get(f"/hostile/mark/{tag}"))
    reply = exchange(sess.port, raw)
    expect(reply.statuses == [200] and reply.closed and not reply.leftover, reply.describe())
    expect(hits(sess.port, tag) == 0, f"{reply.describe()}; SMUGGLED REQUEST RAN")
    return f"{reply.describe()}; smuggled request ran 0x"


@case("hostile", "valid chunk extensions and trailers", "200, body intact, connection reused")
def _chunk_ext_trailers(sess: Session) -> str:
    tag = new_token()
    request = corpus.valid("012")
    raw = request.raw() + get(f"/hostile/mark/{tag}", close=True)
    reply = exchange(sess.port, raw, responses=2)
    got = reply.describe()
    expect(reply.statuses == [200, 200], got)
    expect(reply.responses[0].body == request.body, f"{got}; body {reply.responses[0].body!r}")
    expect(hits(sess.port, tag) == 1, f"{got}; request after the trailers did not run")
    return f"{got}; body {reply.responses[0].body!r}"


@case("hostile", "chunked body with upper-case CHUNKED and HTTP/1.0 chunked",
      "200 each; HTTP/1.0 one closed")
def _chunked_variants(sess: Session) -> str:
    upper, http10 = corpus.valid("013"), corpus.valid("014")
    one = exchange(sess.port, upper.raw())
    two = exchange(sess.port, http10.raw())
    got = f"{one.describe()}; {two.describe()}"
    expect(one.statuses == [200] and one.responses[0].body == upper.body, got)
    expect(two.statuses == [200] and two.responses[0].body == http10.body and two.closed, got)
    return got


def _send_until_answered(sock: socket.socket, pieces: Iterator[bytes], pause: float
                         ) -> tuple[int, bool]:
    """Send pieces until the server has something to say; (bytes sent, finished)."""
    sent = 0
    for piece in pieces:
        readable, _, _ = select.select([sock], [], [], 0)
        if readable:
            return sent, False
        try:
            sock.sendall(piece)
        except OSError:
            return sent, False
        sent += len(piece)
        time.sleep(pause)
    return sent, True


@case("hostile", "body over the limit (Content-Length 8 MB): 413 before the upload ends",
      "413 while the client is still sending, closed")
def _body_limit_early(sess: Session) -> str:
    total, piece = 8 * 1024 * 1024, 64 * 1024
    with connect(sess.port, 10) as sock:
        sock.sendall(b"POST /hostile/echo HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n"
                     % total)
        sent, finished = _send_until_answered(sock, (b"x" * piece for _ in range(total // piece)),
                                              0.005)
        reply = read_reply(sock, timeout=5)
    got = f"{reply.describe()} after {sent // 1024} KiB of {total // 1024} KiB sent"
    expect(reply.statuses == [413] and reply.closed and not finished and sent < total // 2,
           got)
    return got


@case("hostile", "chunked body over the limit: 413 as soon as it exceeds it",
      "413 while the client is still sending, closed")
def _chunked_limit_early(sess: Session) -> str:
    total, piece = 4 * 1024 * 1024, 16 * 1024
    chunk = b"%x\r\n%s\r\n" % (piece, b"y" * piece)
    with connect(sess.port, 10) as sock:
        sock.sendall(b"POST /hostile/echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked"
                     b"\r\n\r\n")
        sent, finished = _send_until_answered(sock, (chunk for _ in range(total // piece)),
                                              0.002)
        reply = read_reply(sock, timeout=5)
    got = f"{reply.describe()} after {sent // 1024} KiB of {total // 1024} KiB sent"
    expect(reply.statuses == [413] and reply.closed and not finished and sent < total // 2,
           got)
    return got


@case("hostile", "Expect: 100-continue within the limit",
      "100 Continue, then 200 with the body")
def _expect_accepted(sess: Session) -> str:
    body = b"hello world"
    with connect(sess.port) as sock:
        sock.sendall(b"POST /hostile/echo HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n"
                     b"Content-Length: %d\r\n\r\n" % len(body))
        reader = ResponseReader()
        first = read_reply(sock, timeout=3, responses=1, reader=reader)
        expect(first.statuses == [100], f"before the body: {first.describe()}")
        sock.sendall(body)
        final = read_reply(sock, timeout=3, responses=2, reader=reader)
    got = final.describe()
    expect(final.statuses == [100, 200] and final.responses[1].body == body, got)
    return got


@case("hostile", "Expect: 100-continue over the limit",
      "413 before any body byte, no 100, closed")
def _expect_refused(sess: Session) -> str:
    with connect(sess.port) as sock:
        sock.sendall(b"POST /hostile/echo HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n"
                     b"Content-Length: %d\r\n\r\n" % (MAX_BODY * 10))
        reply = read_reply(sock, timeout=3)
    got = f"{reply.describe()} in {reply.elapsed * 1000:.0f} ms, no body sent"
    expect(reply.statuses == [413] and reply.closed, got)
    return got


@case("hostile", "Expect: 100-continue to an app that ignores the body",
      "final answer without 100, Connection: close")
def _expect_ignored(sess: Session) -> str:
    token = new_token()
    raw = probe_request(token)[:-2] + b"Expect: 100-continue\r\nContent-Length: 1000\r\n\r\n"
    with connect(sess.port) as sock:
        sock.sendall(raw)
        reply = read_reply(sock, timeout=3)
    got = reply.describe()
    expect(reply.statuses == [200] and reply.responses[0].closes and reply.closed, got)
    expect(probe_problems(token, reply.responses[0]) is None, f"{got}: wrong probe answer")
    return got


@case("hostile", "8 pipelined probes in one write", "8 answers in order, each its own token")
def _pipelined(sess: Session) -> str:
    tokens = [new_token() for _ in range(8)]
    raw = b"".join(probe_request(t, close=i == 7, yields=2) for i, t in enumerate(tokens))
    reply = exchange(sess.port, raw, responses=8)
    got = reply.describe()
    expect(len(reply.responses) == 8, got)
    for token, resp in zip(tokens, reply.responses, strict=True):
        problem = probe_problems(token, resp)
        expect(problem is None, f"{got}: {problem}")
    return "8 answers in order, tokens match, no stale context"


@case("hostile", "pipelined good requests before a bad one",
      "the good ones answered in order, then 400, closed")
def _pipelined_then_bad(sess: Session) -> str:
    tokens = [new_token() for _ in range(3)]
    raw = b"".join(probe_request(t) for t in tokens) + b"BAD REQUEST\r\n\r\n"
    reply = exchange(sess.port, raw)
    got = reply.describe()
    expect(reply.statuses == [200, 200, 200, 400] and reply.closed, got)
    for token, resp in zip(tokens, reply.responses, strict=False):
        expect(probe_problems(token, resp) is None, f"{got}: wrong probe answer")
    return got


@case("hostile", "bytes after a Connection: close request",
      "one answer, closed, the trailing request never runs")
def _after_close(sess: Session) -> str:
    first, second = new_token(), new_token()
    raw = get(f"/hostile/mark/{first}", close=True) + get(f"/hostile/mark/{second}") + \
        b"\x00garbage\r\n\r\n"
    reply = exchange(sess.port, raw)
    got = reply.describe()
    expect(reply.statuses == [200] and reply.closed and not reply.leftover, got)
    expect((hits(sess.port, first), hits(sess.port, second)) == (1, 0),
           f"{got}; the request after Connection: close ran")
    return f"{got}; trailing request ran 0x"


@case("hostile", "non-UTF-8 and percent-encoded path",
      "200; PATH_INFO carries the exact decoded bytes")
def _odd_paths(sess: Session) -> str:
    request = corpus.valid("017")
    reply = exchange(sess.port, request.raw(), responses=1)
    expect(reply.statuses == [200], reply.describe())
    seen = bytes.fromhex(json.loads(reply.responses[0].body)["path_hex"])
    want = request.environ["PATH_INFO"].encode("latin-1")
    expect(seen == want, f"PATH_INFO bytes {seen!r}, expected {want!r}")
    probe = exchange(sess.port, get("/probe/%FF%FE%00", close=True), responses=1)
    expect(probe.statuses and probe.statuses[0] < 500, f"reference app: {probe.describe()}")
    return f"200, PATH_INFO {seen!r}; reference app {probe.statuses[0]}"


def _bad_header_case(kind: str) -> None:
    def run(sess: Session) -> str:
        tag = new_token()
        raw = get(f"/hostile/bad-header/{kind}") + get(f"/hostile/mark/{tag}", close=True)
        reply = exchange(sess.port, raw)
        got = reply.describe()
        expect(reply.statuses[:1] == [500], got)
        expect(b"injected" not in reply.raw and b"never be sent" not in reply.raw,
               f"{got}: INJECTED BYTES ON THE WIRE")
        expect(not reply.leftover and reply.parse_error is None, f"{got}: split response")
        if len(reply.responses) == 2:  # connection kept: the next request is served
            expect(reply.statuses == [500, 200] and hits(sess.port, tag) == 1, got)
        else:
            expect(reply.closed and len(reply.responses) == 1, got)
        return got

    case("hostile", f"app puts {kind.replace('-', ' in ')} into its response",
         "500, nothing injected, never a split response")(run)


for _kind in ("crlf-value", "lf-value", "cr-value", "nul-value", "crlf-name", "colon-name",
              "crlf-status", "crlf-location"):
    _bad_header_case(_kind)


_REQUEST_IDS: dict[str, tuple[bytes, bool]] = {
    # name -> (raw header value, echoed as is?)
    "plain": (b"req-1.2:3_x", True),
    "128 chars": (b"r" * 128, True),
    "129 chars": (b"r" * 129, False),
    "3000 chars": (b"r" * 3000, False),
    "space and markup": (b"<script>alert(1)</script> x", False),
    "latin-1 bytes": (b"caf\xe9", False),
    "percent-encoded CRLF": (b"a%0d%0aSet-Cookie:%20x", False),
    "two headers": (b"a\r\nX-Request-ID: b", False),
}


@case("hostile", "odd X-Request-ID values",
      "echoed only when plain (<=128 of A-Za-z0-9._:-), else a fresh 16-hex id")
def _request_ids(sess: Session) -> str:
    seen = []
    for name, (value, echoed) in _REQUEST_IDS.items():
        raw = b"GET /hostile/request-id HTTP/1.1\r\nHost: x\r\nX-Request-ID: " + value + \
            b"\r\nConnection: close\r\n\r\n"
        reply = exchange(sess.port, raw, responses=1)
        expect(reply.statuses == [200], f"{name}: {reply.describe()}")
        resp = reply.responses[0]
        header = resp.header("X-Request-ID") or ""
        body = json.loads(resp.body)["request_id"]
        expect(header == body, f"{name}: header {header!r} vs app {body!r}")
        if echoed:
            expect(header == value.decode(), f"{name}: not echoed ({header!r})")
        else:
            expect(re.fullmatch(r"[0-9a-f]{16}", header), f"{name}: kept as {header[:40]!r}")
        seen.append(name)
    return f"{len(seen)} variants: plain ones echoed, the rest replaced by generated ids"


@case("hostile", "neighbours disconnect mid-request and mid-response",
      "good client unaffected (no failure, no leak)")
def _neighbours_disconnect(sess: Session) -> str:
    assert sess.server is not None
    for i in range(20):
        with connect(sess.port) as sock:
            token = new_token()
            if i % 3 == 0:  # leave during a streamed answer
                sock.sendall(get(f"/probe/{token}/stream?yields=20", f"X-Probe-Token: {token}"))
                sock.recv(100)
            elif i % 3 == 1:  # leave while the app is busy
                sock.sendall(get("/hostile/sleep/0.3"))
                time.sleep(0.01)
            else:  # leave half-way through the body
                sock.sendall(b"POST /hostile/echo HTTP/1.1\r\nHost: x\r\n"
                             b"Content-Length: 1000\r\n\r\n" + b"z" * 10)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    time.sleep(0.5)  # the abandoned sleeps end
    return "20 abandoned requests"


no_live_context_case("hostile")
