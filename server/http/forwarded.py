"""Who the client really is behind a trusted proxy: scheme and address from forwarded headers.

Pure functions of the peer and the request's (environ-keyed) headers; the connection asks
them once per request, and only when the peer is a trusted forwarder
(``--forwarded-allow-ips``). From any other peer the headers are plain headers that change
nothing: anyone can send ``X-Forwarded-For``.

Which headers: ``X-Forwarded-Proto`` / ``X-Forwarded-Ssl`` (gunicorn's
``secure_scheme_headers``) and ``X-Forwarded-For`` -- what nginx, HAProxy and the cloud
load balancers set -- and RFC 7239 ``Forwarded``, which is used only when the request has
no X-Forwarded-* header of the same kind. A proxy passes through whatever header it does
not manage itself, so the operator should make the proxy set (not append to) the header it
uses; see the README's "Behind a proxy".
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Any

__all__ = ["TrustedPeers", "parse_forwarded", "resolve_client", "resolve_scheme",
           "split_host_port"]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True)
class TrustedPeers:
    """A set of addresses and networks (gunicorn's ``--forwarded-allow-ips`` value).

    ``*`` trusts every peer. A unix-socket peer (no address) is always trusted, as in
    gunicorn: only a local process that may open the socket file can be on the other end.
    """

    networks: tuple[IPNetwork, ...] = ()
    everyone: bool = False

    @classmethod
    def parse(cls, spec: str) -> TrustedPeers:
        """``"127.0.0.1,::1"``, ``"10.0.0.0/8,*"``...; ValueError naming a bad entry."""
        networks = []
        everyone = False
        for raw in spec.split(","):
            entry = raw.strip()
            if not entry:
                continue
            if entry == "*":
                everyone = True
                continue
            try:
                networks.append(ipaddress.ip_network(entry, strict=False))
            except ValueError:
                raise ValueError(f"{entry!r} is not an IP address or network") from None
        return cls(tuple(networks), everyone)

    def __contains__(self, address: object) -> bool:
        """Whether ``address`` (a string, "" for a unix-socket peer) is trusted."""
        if self.everyone or address == "":
            return True
        ip = _ip(address) if isinstance(address, str) else None
        if ip is None:
            return False
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped  # ::ffff:127.0.0.1 on a dual-stack listener
        return any(ip in network for network in self.networks)


def _ip(text: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


def split_host_port(node: str) -> tuple[str, str] | None:
    """``1.2.3.4``, ``1.2.3.4:80``, ``2001:db8::1``, ``[2001:db8::1]:80`` → (address, port).

    The port is ``""`` when none is given; None when ``node`` holds no IP address (RFC 7239
    ``unknown``, an obfuscated ``_hidden`` identifier, garbage).
    """
    node = node.strip()
    if node.startswith("["):
        host, sep, rest = node[1:].partition("]")
        port = rest[1:] if rest.startswith(":") else ""
        if not sep or (rest and not rest.startswith(":")):
            return None
    elif node.count(":") == 1:
        host, _, port = node.partition(":")
    else:
        host, port = node, ""
    if port and not (port.isdigit() and port.isascii() and int(port) <= 65535):
        return None
    ip = _ip(host)
    if ip is None:
        return None
    return str(ip), port


def _unquote(value: str) -> str:
    """An RFC 7239 value: a token, or a quoted-string (RFC 9110 5.6.4)."""
    value = value.strip()
    if len(value) >= 2 and value[0] == value[-1] == '"':
        inner = value[1:-1]
        out = []
        escaped = False
        for char in inner:
            if escaped or char != "\\":
                out.append(char)
                escaped = False
            else:
                escaped = True
        return "".join(out)
    return value


def parse_forwarded(value: str) -> list[dict[str, str]]:
    """RFC 7239 ``Forwarded``: one dict per element (hop), left to right; keys lower-cased.

    Splitting on ``,`` and ``;`` is not aware of quotes, which is safe for the parameters we
    read (``for`` and ``proto``: an address with an optional port, and a scheme), whose
    values never contain either.
    """
    elements = []
    for element in value.split(","):
        pairs: dict[str, str] = {}
        for pair in element.split(";"):
            name, sep, raw = pair.partition("=")
            if sep:
                pairs.setdefault(name.strip().lower(), _unquote(raw))
        elements.append(pairs)
    return elements


#: Scheme header → value → scheme (gunicorn's secure_scheme_headers, plus the plain values).
SCHEME_HEADERS: dict[str, dict[str, str]] = {
    "HTTP_X_FORWARDED_PROTO": {"https": "https", "http": "http"},
    "HTTP_X_FORWARDED_SSL": {"on": "https", "off": "http"},
}


def resolve_scheme(headers: dict[str, Any]) -> str | None:
    """The scheme the client used, as the trusted proxy reports it; None if it does not.

    1. ``X-Forwarded-Proto`` (``https``/``http``), then ``X-Forwarded-Ssl`` (``on``/``off``):
       of a list of values (proxies that append), the rightmost -- the one our own proxy
       added; anything else is ignored.
    2. Else the ``proto=`` of the rightmost ``Forwarded`` element that has one.
    """
    for key, meanings in SCHEME_HEADERS.items():
        value = headers.get(key)
        if value is not None:
            scheme = meanings.get(value.rpartition(",")[2].strip().lower())
            if scheme is not None:
                return scheme
    forwarded = headers.get("HTTP_FORWARDED")
    if forwarded is not None:
        for element in reversed(parse_forwarded(forwarded)):
            proto = element.get("proto", "").lower()
            if proto in ("http", "https"):
                return proto
            if proto:
                return None
    return None


def resolve_client(headers: dict[str, Any], trusted: TrustedPeers) -> tuple[str, str] | None:
    """(address, port) of the client as the trusted proxy chain reports it; None if it does
    not (then REMOTE_ADDR stays the peer's).

    The hops are ``X-Forwarded-For``'s addresses (else ``Forwarded``'s ``for=``), left to
    right, the peer itself being the last one. Every proxy appends the address it saw, so
    only the entries added by trusted proxies can be believed:

    1. Walk from the right; an entry that is itself a trusted address is another proxy of
       ours, go on to its left.
    2. The first entry that is not trusted is the client (the rightmost untrusted hop).
       Everything to its left was written by the client and is ignored.
    3. An entry that is not an IP address (``unknown``, an obfuscated name, garbage) ends
       the walk: the trusted proxy nearest to it is the last address we know, so the
       answer is None if that is the peer itself, else that proxy.
    4. When every entry is trusted, the leftmost is the client.
    """
    value = headers.get("HTTP_X_FORWARDED_FOR")
    if value is not None:
        nodes = value.split(",")
    else:
        forwarded = headers.get("HTTP_FORWARDED")
        if forwarded is None:
            return None
        nodes = [element["for"] for element in parse_forwarded(forwarded) if "for" in element]
    found: tuple[str, str] | None = None
    for node in reversed(nodes):
        hop = split_host_port(node)
        if hop is None:
            return found
        found = hop
        if hop[0] not in trusted:
            return hop
    return found
