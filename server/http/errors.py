"""Protocol errors: the exceptions of the HTTP layer and the error responses they become."""

from __future__ import annotations

from .headers import date_line, status_phrase

__all__ = ["ClientDisconnected", "HTTPError", "error_body", "error_response"]


class HTTPError(Exception):
    """A protocol violation, answered with ``status`` and the connection closed."""

    def __init__(self, status: int, reason: str = "") -> None:
        super().__init__(status, reason)
        self.status = status
        self.reason = reason

    def __str__(self) -> str:
        return f"{self.status} {self.reason}" if self.reason else str(self.status)


class ClientDisconnected(HTTPError, ConnectionError):
    """The peer went away (or stopped reading/sending) in the middle of a request.

    It is both an ``HTTPError(400)`` -- so an application catching protocol errors from
    ``wsgi.input`` sees a client error -- and a ``ConnectionError`` (an ``OSError``) -- so
    generic "client went away" handling works. There is nobody left to answer.
    """

    def __init__(self, reason: str = "client disconnected") -> None:
        super().__init__(400, reason)




class ResponseEnded(RuntimeError):
    """The request this ``write()`` callable or ``wsgi.input`` belongs to has ended.

    Raised to whoever kept them past the end (a child greenlet, a callback): what they would
    send or read belongs to the connection's *next* request by then (issue 10, hole 1).
    """


def error_body(status: int, reason: str | None) -> bytes:
    """The text/plain body of an error response: status, phrase, and our reason if any."""
    phrase = status_phrase(status)
    text = f"{status} {phrase}: {reason}\n" if reason else f"{status} {phrase}\n"
    return text.encode("utf-8", "replace")


def error_response(status: int, reason: str | None, server_line: bytes,
                   extra: bytes = b"") -> tuple[bytes, bytes]:
    """Head and body of a text/plain error response that ends the connection.

    The head announces the body's length even when the caller sends only the head (the
    answer to HEAD), as RFC 9110 9.3.2 allows. ``extra``: encoded header lines to add
    (the request's ``X-Request-ID`` when the error is met inside a request).
    """
    body = error_body(status, reason)
    head = b"".join(
        (
            b"HTTP/1.1 %d %s\r\n" % (status, status_phrase(status).encode("latin-1")),
            b"Content-Type: text/plain; charset=utf-8\r\n",
            b"Content-Length: %d\r\n" % len(body),
            b"Connection: close\r\n",
            date_line(),
            server_line,
            extra,
            b"\r\n",
        )
    )
    return head, body
