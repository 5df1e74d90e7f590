"""Error log and access log: text or JSON lines, configured once per process.

The error log (the ``logging`` loggers ``server.*``, and the app's) goes to stderr or a
file (``--error-log``); with ``--capture-output`` the process's stdout and stderr (file
descriptors 1 and 2: ``print()``, C libraries) go to that file too.  The access log is not
a logger: :class:`AccessLog` writes one line per request straight to stdout, a file, or
nowhere, so that turning it off costs one boolean check per request, not a log record.
Both reopen their file on USR1 (:func:`reopen_error_log`, :meth:`AccessLog.reopen`), in
the master and in every worker, for logrotate.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sys
import time
from typing import Any, TextIO

from .access_format import format_access_line

__all__ = ["AccessLog", "configure_logging", "configured_access_log", "hand_to_workers",
           "open_access_log", "reopen_error_log", "restyle_logging"]

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


class _ErrorLog:
    """Where the error log goes in this process: its handler, file and capture flag."""

    handler: logging.StreamHandler | None = None
    path: str | None = None
    capture = False


def _open_error_log(path: str, capture: bool) -> TextIO:
    stream = open(path, "a", buffering=1, encoding="utf-8")  # noqa: SIM115 - kept open
    if capture:  # print() and C code write to fds 1 and 2: make them the file
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(stream.fileno(), 1)
        os.dup2(stream.fileno(), 2)
    return stream


def configure_logging(level: str, log_format: str, target: str = "-",
                      capture_output: bool = False) -> None:
    """Route the ``server`` logger (and the app's ``logging`` use) to stderr or ``target``;
    OSError if the file cannot be opened (checked at start)."""
    path = None if target == "-" else target
    stream = _open_error_log(path, capture_output) if path else sys.stderr
    handler = logging.StreamHandler(stream)
    handler.setFormatter(_formatter(log_format))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    _ErrorLog.handler, _ErrorLog.path, _ErrorLog.capture = handler, path, capture_output


def restyle_logging(level: str, log_format: str) -> None:
    """A reload's ``--log-level`` and ``--log-format`` for the error log, which keeps its
    file (``--error-log`` needs a restart); workers forked from now on inherit them."""
    logging.getLogger().setLevel(level.upper())
    if _ErrorLog.handler is not None:
        _ErrorLog.handler.setFormatter(_formatter(log_format))


def reopen_error_log() -> None:
    """USR1: open the error log file anew (logrotate moved it); OSError keeps the old one."""
    if _ErrorLog.path is None or _ErrorLog.handler is None:
        return
    fresh = _open_error_log(_ErrorLog.path, _ErrorLog.capture)
    old = _ErrorLog.handler.setStream(fresh)
    if old is not None and old not in (sys.stderr, sys.stdout):
        with contextlib.suppress(OSError, ValueError):
            old.close()


def open_access_log(target: str) -> TextIO | None:
    """Open the access log target; raises OSError for an unwritable path (checked at start)."""
    if target == "off":
        return None
    if target == "-":
        return sys.stdout
    return open(target, "a", buffering=1, encoding="utf-8")


def configured_access_log(target: str, log_format: str, line_format: str) -> AccessLog:
    """The access log of ``--access-log``, ``--log-format``, ``--access-log-format``;
    OSError for an unwritable path."""
    path = target if target not in ("-", "off") else None
    return AccessLog(open_access_log(target), log_format, path, line_format)


def hand_to_workers(paths: list[str | None], user: int | None, group: int | None) -> None:
    """With --user/--group the workers must still write (and on USR1 reopen) these files."""
    if user is None and group is None:
        return
    for path in paths:
        if path:
            with contextlib.suppress(OSError):
                os.chown(path, -1 if user is None else user, -1 if group is None else group)


class AccessLog:
    """Writes one line per request.  ``enabled`` is False when the target is ``off``.

    ``path`` is the file the stream was opened from (None for stdout): :meth:`reopen` opens
    it again, for logrotate's ``kill -USR1`` after it moved the file away.
    """

    def __init__(self, stream: TextIO | None, log_format: str, path: str | None = None,
                 line_format: str = "") -> None:
        self.stream = stream
        self.path = path
        self.enabled = stream is not None
        self.json = log_format == "json"
        #: gunicorn's ``access_log_format`` (text only); "" for our own line.
        self.line_format = "" if self.json else line_format
        self.pid = os.getpid()  # each worker sets its own after the fork

    def reopen(self) -> None:
        """Open ``path`` anew and write there from now on; OSError leaves the old stream."""
        if self.path is None or self.stream is None:
            return
        fresh = open_access_log(self.path)
        old, self.stream = self.stream, fresh
        with contextlib.suppress(OSError, ValueError):
            old.close()

    def close_unless_shared(self, *others: AccessLog) -> None:
        """A reload superseded this log: close the master's copy of its file unless another
        log writes to the same stream (the workers that write here have their own)."""
        stream = self.stream
        if stream is None or stream is sys.stdout or any(o.stream is stream for o in others):
            return
        with contextlib.suppress(OSError, ValueError):
            stream.close()

    def __call__(self, environ: dict[str, Any], status: int, size: int, duration: float) -> None:
        if self.stream is None:
            return
        if self.line_format:
            line = format_access_line(self.line_format, environ, status, size, duration,
                                      self.pid)
            with contextlib.suppress(OSError, ValueError):
                self.stream.write(line + "\n")
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
