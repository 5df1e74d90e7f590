"""The HTTP/1.1 server protocol on gevent sockets, parsed by httptools (llhttp).

This package knows the wire protocol and PEP 3333, nothing about applications, routing
or logging configuration. :class:`HTTPConnection` turns the bytes of one accepted socket
into :class:`HTTPRequest` objects (with a complete WSGI environ) and :class:`HTTPResponse`
turns a WSGI ``start_response`` + iterable back into bytes. The keep-alive loop that
ties them to an application is :mod:`server.handler`.

One job per module, lowest first (each imports only those above it):

================== ======================================================================
``limits``         :class:`Limits`: how much and how long a client may send
``headers``        the response head's parts: status line, app headers checked, Date/Server
``errors``         :class:`HTTPError`, :class:`ClientDisconnected`, error response bytes
``request``        :class:`HTTPRequest` and its body, ``wsgi.input`` (:class:`RequestBody`)
``framing``        the two decisions of a response: its body's framing, the connection's reuse
``response``       :class:`HTTPResponse`: start_response, head + body out, ``close_after``
``environ``        the WSGI environ of a request, built in one place; ``mount`` (--root-path)
``forwarded``      a trusted proxy's word on the client: scheme and address (pure)
``parser``         httptools callbacks: bytes in, queued requests out, limits enforced
``transport``      the socket: recv with deadlines (:class:`IdleTimer`), send, sendfile, linger
``proxy_protocol`` the PROXY v1/v2 header before HTTP: parsed (pure), peeked off the socket
``tls``            the listener's SSL context and each connection's handshake, with a deadline
``connection``     :class:`HTTPConnection`: parser + transport, the next request, closing
================== ======================================================================
"""

from __future__ import annotations

from .connection import HTTPConnection
from .errors import ClientDisconnected, HTTPError, ResponseEnded
from .limits import Limits
from .request import HTTPRequest, RequestBody
from .response import FileWrapper, HTTPResponse
from .transport import IdleTimer

__all__ = [
    "ClientDisconnected",
    "FileWrapper",
    "HTTPConnection",
    "HTTPError",
    "HTTPRequest",
    "HTTPResponse",
    "IdleTimer",
    "Limits",
    "RequestBody",
    "ResponseEnded",
]
