"""Group ``fuzz``: hypothesis-generated requests and bytes; the worker must never crash."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.reliability.framework import Mismatch, case, expect, group
from tests.reliability.session import Session, no_live_context_case
from tests.reliability.wire import (
    exchange,
    fresh_probe,
)

group("fuzz", "Fuzzing (hypothesis; the worker must never crash)",
             ("tests.apps.hostile:app", "--read-timeout", "2", "--keep-alive", "1",
              "--max-body-size", "100000"))

FUZZ_EXAMPLES = int(os.environ.get("RELIABILITY_FUZZ_EXAMPLES", "200"))
_ALLOWED_5XX = {501, 505}
_FUZZ_PATH_OK_500 = ("/hostile/bad-header/",)  # 500 by design there


def _fuzz_exchange(port: int, raw: bytes, allow_500: bool,
                   tally: dict[str, int] | None = None) -> str | None:
    """Send one fuzz input; the failure text, or None when the server behaved."""
    reply = exchange(port, raw, timeout=6, half_close=True,
                     bodiless=int(raw[:5].upper() == b"HEAD "))
    if tally is not None:
        for status in reply.statuses or [0]:
            kind = ("no answer" if not status else str(status) if status >= 500
                    else f"{status // 100}xx")
            tally[kind] = tally.get(kind, 0) + 1
    if not reply.closed:
        return f"connection still open 6 s after EOF ({reply.describe()})"
    if reply.parse_error:
        return f"unparsable response: {reply.parse_error}"
    for status in reply.statuses:
        if status >= 500 and status not in _ALLOWED_5XX and not (allow_500 and status == 500):
            return f"status {status} for {raw[:120]!r}"
    return None


def _fuzz_followup(sess: Session) -> None:
    payload = fresh_probe(sess.port)
    expect(payload["pid"] == sess.worker_pid, f"worker pid changed to {payload['pid']}")


def _run_hypothesis(sess: Session, strategy: Any, name: str,
                    build: Callable[[Any], tuple[bytes, bool]]) -> str:
    failures: list[str] = []
    count = [0]
    tally: dict[str, int] = {}

    @settings(max_examples=FUZZ_EXAMPLES, deadline=None, database=None,
              suppress_health_check=list(HealthCheck), print_blob=True)
    @given(strategy)
    def check(example: Any) -> None:
        count[0] += 1
        raw, allow_500 = build(example)
        problem = _fuzz_exchange(sess.port, raw, allow_500, tally)
        if problem is not None:
            failures.append(problem)
            raise AssertionError(problem)
        _fuzz_followup(sess)

    try:
        check()
    except AssertionError as exc:
        raise Mismatch(f"{name}: {failures[-1] if failures else exc}") from None
    assert sess.server is not None
    log = sess.server.log()
    for marker in ("internal error serving", "crashed", "died"):
        at = log.find(marker)
        # the excerpt is the traceback: a random input that CI hit once must be readable there
        expect(at < 0, f"server log has {marker!r} after {name}:\n{log[at:at + 3000]}")
    answers = ", ".join(f"{n} {kind}" for kind, n in sorted(tally.items()))
    return (f"{count[0]} inputs ({answers}), none else; worker pid unchanged, new connection "
            f"served after each")


def _fuzz_strategies() -> dict[str, Any]:
    """Requests that are mostly well-formed (so they get past the parser into the app)
    with every part sometimes replaced by junk; and raw bytes."""
    def mostly(common: Any, *rare: Any) -> Any:  # ~3 in 4 draws from ``common``
        odd = st.one_of(*rare)
        return st.tuples(st.booleans(), st.booleans()).flatmap(
            lambda coins: odd if all(coins) else common)

    token = st.text("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.!~*'",
                    min_size=1, max_size=12)
    printable = st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=40)
    any_text = st.text(st.characters(min_codepoint=0, max_codepoint=255), max_size=40)
    method = mostly(st.sampled_from(["GET", "GET", "POST", "PUT", "HEAD", "DELETE", "OPTIONS",
                                     "PATCH"]),
                    st.sampled_from(["TRACE", "CONNECT", "PRI", "get", "G ET"]), token)
    target = mostly(
        st.sampled_from(["/", "/healthz", "/metrics", "/probe/abc", "/probe/abc/stream",
                         "/probe/abc/fanout?children=3", "/probe/abc?yields=2",
                         "/hostile/echo", "/hostile/path/x", "/hostile/mark/fuzz",
                         "/hostile/request-id", "/hostile/sleep/0.01", "/nope"]),
        st.builds(lambda p, q: f"/{p}?{q}", token, printable),
        st.builds(lambda b: "/hostile/path/" + "".join(f"%{x:02X}" for x in b),
                  st.binary(max_size=12)),
        st.sampled_from(["*", "http://h/hostile/echo", "example.com:443", ""]), any_text)
    version = mostly(st.sampled_from(["HTTP/1.1", "HTTP/1.1", "HTTP/1.0"]),
                     st.sampled_from(["HTTP/2.0", "HTTP/0.9", "HTTP/9.9", "http/1.1", ""]),
                     token)
    header_name = mostly(
        st.sampled_from(["Content-Length", "Transfer-Encoding", "Connection", "Expect",
                         "X-Request-ID", "X-Probe-Token", "Content-Type", "Accept",
                         "Cookie", "User-Agent"]),
        st.sampled_from(["Host", "Upgrade", "Content_Length", "Transfer-encoding"]),
        token, any_text)
    header_value = mostly(
        st.one_of(st.sampled_from(["chunked", "close", "keep-alive", "100-continue", "0", "5",
                                   "text/plain", "a=b; c=d"]),
                  st.integers(0, 400).map(str), printable),
        st.sampled_from(["-1", "99999999999999999999", "gzip, chunked", "h2c", "a" * 300]),
        any_text)
    headers = st.lists(st.tuples(header_name, header_value), max_size=6)
    body = st.one_of(st.just(b""), st.binary(max_size=300),
                     st.sampled_from([b"0\r\n\r\n", b"5\r\nhello\r\n0\r\n\r\n", b"zz\r\n",
                                      b"5\r\nhel", b"GET / HTTP/1.1\r\n\r\n"]))
    sep = mostly(st.just("\r\n"), st.just("\n"))
    structured = st.tuples(method, target, version, headers, body, sep,
                           st.booleans(), st.booleans())
    valid_head = st.sampled_from([b"GET / HTTP/1.1\r\nHost: x\r\n",
                                  b"POST /hostile/echo HTTP/1.1\r\nHost: x\r\n",
                                  b"POST /hostile/echo HTTP/1.1\r\nTransfer-Encoding: chunked"
                                  b"\r\n\r\n"])
    raw_bytes = st.one_of(st.binary(min_size=1, max_size=2048),
                          st.tuples(valid_head, st.binary(max_size=512)).map(b"".join))
    return {"structured": structured, "bytes": raw_bytes}


def _build_structured(example: Any) -> tuple[bytes, bool]:
    method, target, version, headers, body, sep, with_host, with_length = example
    line = " ".join(p for p in (method, target, version) if p)
    fields = [f"{n}: {v}" for n, v in headers]
    if with_host:
        fields.insert(0, "Host: fuzz")
    if with_length and body and not any(n.lower() in ("content-length", "transfer-encoding")
                                        for n, _ in headers):
        fields.append(f"Content-Length: {len(body)}")
    raw = (sep.join([line, *fields]) + sep + sep).encode("latin-1") + body
    return raw, any(p in target for p in _FUZZ_PATH_OK_500)


@case("fuzz", "structured random requests (methods, targets, versions, headers, bodies)",
      "every one answered 2xx-4xx/501/505 or closed; worker never crashes")
def _fuzz_structured(sess: Session) -> str:
    return _run_hypothesis(sess, _fuzz_strategies()["structured"], "structured",
                           _build_structured)


@case("fuzz", "random bytes (raw, and after a valid request head)",
      "every one answered 2xx-4xx/501/505 or closed; worker never crashes")
def _fuzz_bytes(sess: Session) -> str:
    return _run_hypothesis(sess, _fuzz_strategies()["bytes"], "bytes",
                           lambda b: (b, b"/hostile/bad-header/" in b))


no_live_context_case("fuzz")
