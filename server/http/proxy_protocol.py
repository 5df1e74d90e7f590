"""The PROXY protocol (HAProxy's, v1 text and v2 binary): the client's address, read before HTTP.

A load balancer that speaks it (HAProxy ``send-proxy``, AWS NLB, GCP, nginx ``proxy_protocol
on``) writes one header at the start of each TCP connection saying whom it accepted the
connection from. :func:`parse_header` decides on bytes alone (pure, tested as a table);
:func:`read_header` does the socket side: it *peeks* until the header is complete and then
consumes exactly its bytes, so that whatever follows -- an HTTP request or a TLS
ClientHello -- is left on the socket untouched.

Spec: https://www.haproxy.org/download/2.9/doc/proxy-protocol.txt (section numbers below).
Only trusted peers may send it (``--proxy-allow-from``); from anyone else, and with
``--proxy-protocol off``, a PROXY line is just a bad HTTP request (400).
"""

from __future__ import annotations

import socket
import struct
from dataclasses import dataclass
from time import monotonic
from typing import Any

import gevent

__all__ = ["MODES", "V2_SIGNATURE", "ProxyHeader", "ProxyHeaderError", "parse_header",
           "read_header"]

#: ``--proxy-protocol`` values (gunicorn 27's): which header versions a trusted peer may send.
MODES: dict[str, tuple[int, ...]] = {"off": (), "v1": (1,), "v2": (2,), "auto": (1, 2)}

V1_PREFIX = b"PROXY "
#: 2.1: "The maximum line lengths the receiver must support including the CRLF are: 107".
V1_MAX = 107
V2_SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"
#: Our bound on a v2 header: 16 bytes plus addresses and TLVs. Real ones are a few hundred
#: bytes (AWS's VPC endpoint TLV included); the format's own limit is 64 KiB.
V2_MAX = 16 + 4096
#: While a header is incomplete we look again this often (a peek cannot wait for *more*).
PEEK_INTERVAL = 0.005


class ProxyHeaderError(Exception):
    """A malformed, truncated or late PROXY header: the connection is closed, unanswered."""


@dataclass(frozen=True)
class ProxyHeader:
    """What a PROXY header says. ``client`` is None for v1 ``UNKNOWN``, v2 ``LOCAL`` and
    v2's unspecified or unix families: then the socket's own peer address stands."""

    version: int
    length: int  # bytes of the header on the wire
    client: tuple[str, int] | None


def _v1(buf: bytes) -> ProxyHeader | None:
    """2.1: ``PROXY TCP4|TCP6|UNKNOWN src dst sport dport\\r\\n`` (single spaces)."""
    end = buf.find(b"\r\n", 0, V1_MAX)
    if end < 0:
        if len(buf) >= V1_MAX or b"\n" in buf or b"\r" in buf[:-1]:
            raise ProxyHeaderError("PROXY v1 line without CRLF within 107 bytes")
        return None
    line = buf[:end]
    fields = line.split(b" ")
    if fields[1:2] == [b"UNKNOWN"]:  # "the receiver must ignore anything after UNKNOWN"
        return ProxyHeader(1, end + 2, None)
    if len(fields) != 6:
        raise ProxyHeaderError(f"malformed PROXY v1 line {line[:V1_MAX]!r}")
    families = {b"TCP4": socket.AF_INET, b"TCP6": socket.AF_INET6}
    family = families.get(fields[1])
    if family is None:
        raise ProxyHeaderError(f"PROXY v1: unknown protocol {fields[1]!r}")
    try:
        source = fields[2].decode("ascii")
        socket.inet_pton(family, source)
        socket.inet_pton(family, fields[3].decode("ascii"))
    except (OSError, UnicodeDecodeError):
        raise ProxyHeaderError(f"PROXY v1: bad address in {line!r}") from None
    ports = fields[4:6]
    if not all(p.isdigit() and len(p) <= 5 and int(p) <= 65535 for p in ports):
        raise ProxyHeaderError(f"PROXY v1: bad port in {line!r}")
    return ProxyHeader(1, end + 2, (source, int(ports[0])))


#: 2.2: address family (high nibble of byte 13) → (address bytes, inet_ntop family).
_V2_FAMILIES = {0x1: (4, socket.AF_INET), 0x2: (16, socket.AF_INET6)}


def _v2(buf: bytes) -> ProxyHeader | None:
    """2.2: signature, version/command, family/protocol, length, addresses, TLVs."""
    if len(buf) < 16:
        return None
    version, command = buf[12] >> 4, buf[12] & 0x0F
    if version != 2:
        raise ProxyHeaderError(f"PROXY v2: unsupported version {version}")
    if command not in (0x0, 0x1):
        raise ProxyHeaderError(f"PROXY v2: unknown command {command}")
    (length,) = struct.unpack_from("!H", buf, 14)
    total = 16 + length
    if total > V2_MAX:
        raise ProxyHeaderError(f"PROXY v2 header of {total} bytes is over our {V2_MAX}")
    if len(buf) < total:
        return None
    family, transport = buf[13] >> 4, buf[13] & 0x0F
    if command == 0x0 or family not in _V2_FAMILIES:  # LOCAL (health checks), UNSPEC, UNIX
        if family > 0x3 or transport > 0x2:
            raise ProxyHeaderError(f"PROXY v2: bad family/protocol byte {buf[13]:#04x}")
        return ProxyHeader(2, total, None)
    if transport != 0x1:
        raise ProxyHeaderError("PROXY v2: only STREAM (TCP) connections are supported")
    size, inet = _V2_FAMILIES[family]
    if length < 2 * size + 4:
        raise ProxyHeaderError("PROXY v2: address block shorter than its family needs")
    source = socket.inet_ntop(inet, buf[16 : 16 + size])
    (port,) = struct.unpack_from("!H", buf, 16 + 2 * size)
    return ProxyHeader(2, total, (source, port))


def parse_header(buf: bytes, versions: tuple[int, ...]) -> ProxyHeader | bool | None:
    """Decide on the first bytes of a connection, for a peer that may send ``versions``.

    Returns a :class:`ProxyHeader`; ``False`` when the connection does not start with a
    header of an allowed version (then its bytes are HTTP's, or TLS's, to judge); ``None``
    when more bytes are needed to tell. Raises :class:`ProxyHeaderError` for a header that
    is malformed.
    """
    if 2 in versions and buf[:12] == V2_SIGNATURE[: len(buf)]:
        return _v2(buf) if len(buf) >= 12 else None
    if 1 in versions and buf[:6] == V1_PREFIX[: len(buf)]:
        return _v1(buf) if len(buf) >= 6 else None
    return False


def read_header(sock: Any, versions: tuple[int, ...], timeout: float) -> ProxyHeader | None:
    """Read the PROXY header off ``sock`` (a gevent socket) within ``timeout`` seconds.

    Returns it, or None when the connection does not start with one (nothing consumed).
    Raises :class:`ProxyHeaderError` when it is malformed, truncated by the peer's close,
    or not complete in time.

    Bytes are peeked, never read past the header: once the first bytes show a header
    has begun, every byte of an incomplete header is the header's and is consumed (so the
    next peek waits for new bytes, and sees the peer's close); the complete header is
    consumed exactly.
    """
    deadline = monotonic() + timeout
    buf = b""  # consumed bytes of a header known to have begun
    while True:
        remaining = deadline - monotonic()
        if remaining <= 0:
            raise ProxyHeaderError(f"no complete PROXY header within {timeout:g} s")
        sock.settimeout(remaining)
        try:
            peeked = sock.recv(V2_MAX - len(buf), socket.MSG_PEEK)
        except TimeoutError:
            continue
        except OSError as exc:
            raise ProxyHeaderError(f"connection failed before the PROXY header: {exc}") from None
        if not peeked:
            raise ProxyHeaderError("connection closed before the PROXY header was complete")
        data = buf + peeked
        header = parse_header(data, versions)
        if header is False:
            return None
        if header is not None:
            assert isinstance(header, ProxyHeader)
            _consume(sock, header.length - len(buf))
            return header
        if data[:6] == V1_PREFIX or data[:12] == V2_SIGNATURE:
            _consume(sock, len(peeked))  # all of it is the incomplete header's
            buf = data
        else:  # fewer bytes than it takes to tell (``PRO`` may be ``PROPFIND``): look again
            gevent.sleep(min(PEEK_INTERVAL, remaining))


def _consume(sock: Any, count: int) -> None:
    """Receive and drop ``count`` bytes that a peek showed are there."""
    while count > 0:
        data = sock.recv(count)
        if not data:
            raise ProxyHeaderError("connection closed inside the PROXY header")
        count -= len(data)
