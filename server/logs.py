"""Error log and access log: text or JSON lines, configured once per process.

The error log (the ``logging`` loggers ``server.*``, and the app's) goes to stderr.  The
access log is not a logger: :class:`AccessLog` writes one line per request straight to
stdout, a file, or nowhere, so that turning it off costs one boolean check per request,
not a log record.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sys
import time
from typing import Any, TextIO

__all__ = ["AccessLog", "configure_logging", "open_access_log"]

_RESERVED = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, pid, message, extras, exception."""

    def format(self, record: logging.LogRecord) -> str:
        data: dict[str, Any] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
                    + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "pid": record.process,
            "message": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _RESERVED and not key.startswith("_"):
                data[key] = value
        if record.exc_info:
            data["exception"] = self.formatException(record.exc_info)
        return json.dumps(data, default=str)


TEXT_FORMAT = "%(asctime)s [%(process)d] %(levelname)s %(name)s: %(message)s"


def _formatter(log_format: str) -> logging.Formatter:
    return JsonFormatter() if log_format == "json" else logging.Formatter(TEXT_FORMAT)


def configure_logging(level: str, log_format: str) -> None:
    """Route the ``server`` logger (and the app's ``logging`` use) to stderr."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_formatter(log_format))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())


def open_access_log(target: str) -> TextIO | None:
    """Open the access log target; raises OSError for an unwritable path (checked at start)."""
    if target == "off":
        return None
    if target == "-":
        return sys.stdout
    return open(target, "a", buffering=1, encoding="utf-8")


class AccessLog:
    """Writes one line per request.  ``enabled`` is False when the target is ``off``.

    ``path`` is the file the stream was opened from (None for stdout): :meth:`reopen` opens
    it again, for logrotate's ``kill -USR1`` after it moved the file away.
    """

    def __init__(self, stream: TextIO | None, log_format: str, path: str | None = None) -> None:
        self.stream = stream
        self.path = path
        self.enabled = stream is not None
        self.json = log_format == "json"
        self.pid = os.getpid()

    def reopen(self) -> None:
        """Open ``path`` anew and write there from now on; OSError leaves the old stream."""
        if self.path is None or self.stream is None:
            return
        fresh = open_access_log(self.path)
        old, self.stream = self.stream, fresh
        with contextlib.suppress(OSError, ValueError):
            old.close()

    def __call__(self, environ: dict[str, Any], status: int, size: int, duration: float) -> None:
        if self.stream is None:
            return
        query = environ.get("QUERY_STRING")
        path = environ.get("RAW_URI") or (environ.get("PATH_INFO", "") +
                                          (f"?{query}" if query else ""))
        if self.json:
            line = json.dumps({
                "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                "remote": environ.get("REMOTE_ADDR"), "method": environ.get("REQUEST_METHOD"),
                "path": path, "protocol": environ.get("SERVER_PROTOCOL"), "status": status,
                "bytes": size, "duration_ms": round(duration * 1000, 3),
                "request_id": environ.get("ctxserver.request_id"),
                "user_agent": environ.get("HTTP_USER_AGENT"), "pid": self.pid,
            })
        else:
            line = (f'{environ.get("REMOTE_ADDR", "-")} - [{time.strftime("%d/%b/%Y:%H:%M:%S")}]'
                    f' "{environ.get("REQUEST_METHOD")} {path} {environ.get("SERVER_PROTOCOL")}"'
                    f' {status} {size} {duration * 1000:.2f}ms'
                    f' rid={environ.get("ctxserver.request_id", "-")}')
        # A full disk or a closed stdout must not fail requests.
        with contextlib.suppress(OSError, ValueError):
            self.stream.write(line + "\n")
