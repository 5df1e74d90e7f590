"""The two decisions every response makes: how its body is framed, and whether the
connection may serve another request after it.

Pure functions of what is known when the head goes out, after h11's ``_body_framing``
and ``_keep_alive``; :class:`~server.http.response.HTTPResponse` asks them once per
response and does the I/O. Anything that later rules out another request on the
connection (a body cut short, the client gone) goes through
:meth:`~server.http.response.HTTPResponse.close_after`, the only way to turn
keep-alive off.
"""

from __future__ import annotations

from .request import HTTPRequest

__all__ = [
    "CHUNKED",
    "CLOSE_DELIMITED",
    "CONTENT_LENGTH",
    "NO_BODY",
    "body_framing",
    "close_reason",
    "status_has_content",
]

# How the end of a response body is found (RFC 9112 6.3); plain ints, compared per write.
NO_BODY, CONTENT_LENGTH, CHUNKED, CLOSE_DELIMITED = range(4)


def status_has_content(status: int) -> bool:
    """False for 1xx, 204 and 304: such responses never have content (RFC 9110 6.4.1).

    Nor do we add a Content-Length to them (RFC 9110 8.6 forbids it for 1xx and 204).
    """
    return status >= 200 and status != 204 and status != 304


def body_framing(method: str, status: int, length: int | None, http_version: str) -> int:
    """How the body of the response to a ``method`` request is delimited (RFC 9112 6).

    ``length`` is the body length known when the head goes out (the application's
    Content-Length, or one computed from a body we hold whole), else None. In order:

    1. A response to HEAD, and any 1xx, 204 or 304 response, ends with its head
       (RFC 9112 6.3 rule 1): NO_BODY.
    2. A known length is sent as Content-Length (6.3 rule 6): CONTENT_LENGTH.
    3. Else an HTTP/1.1 client gets chunked coding (7.1); an HTTP/1.0 one never does
       (6.1: a server must not send Transfer-Encoding to it): CHUNKED.
    4. Else the body ends when we close the connection (6.3 rule 8): CLOSE_DELIMITED.
    """
    if method == "HEAD" or not status_has_content(status):
        return NO_BODY
    if length is not None:
        return CONTENT_LENGTH
    if http_version == "HTTP/1.1":
        return CHUNKED
    return CLOSE_DELIMITED


def close_reason(
    request: HTTPRequest,
    status: int,
    framing: int,
    *,
    app_close: bool,
    server_allows: bool,
    server_closing: bool,
) -> str | None:
    """Why the connection may not serve another request after this response; None if it may.

    Asked once, when the head goes out (its answer is that head's ``Connection``
    header). In order:

    1. The server keeps no connection alive (``--keep-alive 0``), or is closing this one
       (draining, or after an error response).
    2. The client did not offer it: ``Connection: close``, or HTTP/1.0 without
       ``Connection: keep-alive`` (RFC 9112 9.3).
    3. An Upgrade or CONNECT request: whatever follows its head is not HTTP/1.1 we could
       parse (we switch no protocol).
    4. A chunked HTTP/1.0 request: faulty framing, close after responding (RFC 9112 6.1).
    5. The application sent ``Connection: close`` (9.6).
    6. The client still waits for ``100 Continue`` and we never read its body: whether
       that body follows is unknowable, so the stream is out of sync (RFC 9110 10.1.1).
    7. The application answered with a 1xx status as its final response: the client
       still waits for one.
    8. The body is close-delimited (RFC 9112 6.3 rule 8): only our close ends it.
    """
    if not server_allows:
        return "keep-alive is disabled (--keep-alive 0)"
    if server_closing:
        return "the connection is closing"
    if not request.keep_alive:
        return "the client asked to close"
    if request.upgrade:
        return "an Upgrade/CONNECT request"
    if request.chunked and request.http_version == "HTTP/1.0":
        return "a chunked HTTP/1.0 request"
    if app_close:
        return "the application sent Connection: close"
    if request.expect_continue and not request.continue_sent and not request.message_complete:
        return "the client still waits for 100 Continue"
    if status < 200:
        return f"the application's final status is {status}"
    if framing == CLOSE_DELIMITED:
        return "the body is delimited by closing the connection"
    return None
