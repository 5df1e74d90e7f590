"""TLS for a listener: the server's SSL context (``--certfile`` & co.) and each connection's
handshake, with a deadline.

gevent's ``ssl`` module, so a handshake waits cooperatively. The handshake runs in the
connection's own greenlet, never in the accept loop, and is cut at ``--read-timeout``
as a whole (a client that trickles its ClientHello byte by byte cannot hold a connection
slot for longer). Whatever goes wrong in it -- plain HTTP sent to the TLS port, an
unknown CA, a scanner's junk, a reset -- is the client's problem: logged at debug, the
connection closed, the worker unaffected.
"""

from __future__ import annotations

from typing import Any

import gevent
from gevent import ssl

__all__ = ["CERT_REQS", "TLSHandshakeError", "handshake", "server_context"]

#: ``--cert-reqs`` values: gunicorn's integers (ssl.CERT_*) and their names.
CERT_REQS: dict[str, int] = {
    "0": ssl.CERT_NONE, "none": ssl.CERT_NONE,
    "1": ssl.CERT_OPTIONAL, "optional": ssl.CERT_OPTIONAL,
    "2": ssl.CERT_REQUIRED, "required": ssl.CERT_REQUIRED,
}


class TLSHandshakeError(Exception):
    """The handshake of one connection failed or stalled: close it and serve the others."""


def server_context(certfile: str, keyfile: str = "", ca_certs: str = "",
                   cert_reqs: int = ssl.CERT_NONE, ciphers: str = "") -> ssl.SSLContext:
    """The SSL context of a TLS listener; raises OSError/ssl.SSLError on unusable files.

    TLS 1.2 at least (the ``ssl`` module's server default); ALPN offers only
    ``http/1.1``, so a client that would prefer h2 knows at once what it gets.
    """
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(certfile, keyfile or None)
    if ca_certs:
        context.load_verify_locations(cafile=ca_certs)
    context.verify_mode = cert_reqs
    if ciphers:
        context.set_ciphers(ciphers)
    context.set_alpn_protocols(["http/1.1"])
    return context


def handshake(sock: Any, context: ssl.SSLContext, timeout: float) -> Any:
    """Wrap an accepted socket and complete the server handshake within ``timeout`` s.

    Returns the gevent SSLSocket, which owns the connection from now on; on failure it is
    closed and :class:`TLSHandshakeError` says why.
    """
    tls_sock = context.wrap_socket(sock, server_side=True, do_handshake_on_connect=False)
    timer = gevent.Timeout(timeout)
    timer.start()
    try:
        tls_sock.do_handshake()
    except gevent.Timeout as exc:
        if exc is not timer:
            raise
        tls_sock.close()
        raise TLSHandshakeError(f"TLS handshake not complete within {timeout:g} s") from None
    except (OSError, ValueError) as exc:  # ssl.SSLError is an OSError
        tls_sock.close()
        raise TLSHandshakeError(f"TLS handshake failed: {exc}") from None
    finally:
        timer.close()
    return tls_sock
