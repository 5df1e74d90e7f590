"""Protocol limits of one server: how much and how long a client may send.

Every limit defends against a hostile client. Nothing here does I/O; the connection,
the parser and the transport read their limits from one :class:`Limits` value. Its
defaults are the server's: ``server/config.py`` declares the matching settings with them.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["RECV_SIZE", "Limits"]

#: Bytes asked of the kernel per recv; also the slack allowed past the header limits,
#: because one recv may carry that much before the parser can complain.
RECV_SIZE = 65536


@dataclass(frozen=True)
class Limits:
    """Protocol limits of one server; every one of them defends against a hostile client."""

    #: Bytes of the request line (method, target, version); a longer target gets 414.
    max_request_line: int = 8190
    #: Total bytes of the header block (names, values and separators); over it gets 431.
    max_header_size: int = 65536
    #: Number of header fields; more gets 431.
    max_header_count: int = 100
    #: Bytes of request body; 0 means unlimited. Over it gets 413, before the body is read
    #: when Content-Length announces it, else as soon as a chunked body exceeds it.
    max_body_size: int = 100 * 1024 * 1024
    #: Seconds for a whole request head to arrive (a total, not per recv: defeats
    #: slowloris) and for each body read to make progress.
    header_timeout: float = 30.0
    #: Seconds a connection may sit idle between requests; 0 disables keep-alive.
    keep_alive: float = 5.0
    #: Seconds one send may wait for a client that does not read (defeats slow readers).
    send_timeout: float = 60.0
