"""Every setting declared once → CLI flag, ``SERVER_*`` environment variable, README table.

Precedence: built-in default < environment variable < command-line flag.  A bad value,
from either source, is a one-line error and exit code 2 (see :class:`ConfigError`).
``python -m server --print-config-table`` prints the Markdown table the README quotes.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NoReturn

from .http.limits import Limits

__all__ = ["GUNICORN_ONLY", "SETTINGS", "Config", "ConfigError", "gunicorn_table",
           "load_config", "markdown_table"]


class ConfigError(Exception):
    """A bad setting: reported as ``server: error: <message>`` and exit code 2."""


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise ValueError("must be >= 1")
    return value


def _non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise ValueError("must be >= 0")
    return value


def _non_negative_float(text: str) -> float:
    value = float(text)
    if not value >= 0 or value == float("inf"):
        raise ValueError("must be a finite number >= 0")
    return value


def _positive_float(text: str) -> float:
    value = _non_negative_float(text)
    if value == 0:
        raise ValueError("must be > 0")
    return value


def _bool(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off", ""):
        return False
    raise ValueError("must be one of 1/0, true/false, yes/no, on/off")


def _bind(text: str) -> str:
    """``HOST:PORT``, ``[IPv6]:PORT``, ``:PORT`` (all interfaces) or ``unix:PATH``."""
    if text.startswith("unix:"):
        if not text[5:]:
            raise ValueError("unix: needs a path")
        return text
    host, sep, port = text.rpartition(":")
    if not sep:
        raise ValueError("expected HOST:PORT or unix:PATH")
    if not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"bad port {port!r}")
    if host.startswith("[") != host.endswith("]"):
        raise ValueError(f"bad IPv6 host {host!r}")
    return text


def _choice(*choices: str) -> Callable[[str], str]:
    def parse(text: str) -> str:
        lowered = text.lower()
        if lowered not in choices:
            raise ValueError(f"must be one of {', '.join(choices)}")
        return lowered
    return parse


def _umask(text: str) -> int:
    """gunicorn's ``--umask``: ``int(text, 0)``, with a leading ``0`` meaning octal (``022``)."""
    value = int("0o" + text[1:], 0) if len(text) > 1 and text[0] == "0" and text[1].isdigit() \
        else int(text, 0)
    if not 0 <= value <= 0o777:
        raise ValueError("must be between 0 and 0o777")
    return value


def _path_or_off(text: str) -> str:
    if not text:
        raise ValueError("must be -, off, or a file path")
    return text


@dataclass(frozen=True)
class Setting:
    """One setting: its name is the Config attribute, the flag and the env var."""

    name: str
    parse: Callable[[str], Any]
    default: Any
    help: str
    metavar: str = ""
    repeatable: bool = False
    flag_only: bool = False
    is_flag: bool = False
    #: gunicorn's flag for the same setting ("" if gunicorn has none), and how we differ
    #: ("" when name, meaning and default are the same): the README's "coming from
    #: gunicorn" table is made of these.
    gunicorn: str = ""
    vs_gunicorn: str = ""

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")

    @property
    def env(self) -> str:
        return "SERVER_" + self.name.upper()


#: The protocol limits' defaults are the HTTP layer's own (server/http/limits.py), so that
#: ``Limits()`` there and the flags here cannot disagree.
_LIMITS = Limits()

SETTINGS: tuple[Setting, ...] = (
    Setting("bind", _bind, ("127.0.0.1:8000",),
            "Address to listen on: HOST:PORT, [IPV6]:PORT, :PORT or unix:PATH. Repeatable; "
            "in the environment, separate several with commas. Port 0 picks a free port "
            "(the log says which).",
            metavar="ADDRESS", repeatable=True, gunicorn="-b, --bind",
            vs_gunicorn="a port is required (gunicorn reads a bare HOST as HOST:8000); no "
                        "fd://N"),
    Setting("workers", _positive_int, 1,
            "Number of pre-forked worker processes. The master supervises them and restarts "
            "one that dies (with backoff while they keep crashing); TTIN/TTOU add or "
            "remove one.", metavar="N", gunicorn="-w, --workers"),
    Setting("worker_connections", _positive_int, 1000,
            "Concurrent connections per worker (bounded greenlet pool); further connections "
            "wait in the listen backlog.", metavar="N", gunicorn="--worker-connections"),
    Setting("backlog", _positive_int, 2048, "Listen backlog of each socket.", metavar="N",
            gunicorn="--backlog"),
    Setting("keep_alive", _non_negative_float, _LIMITS.keep_alive,
            "Seconds an idle keep-alive connection is kept open; 0 disables keep-alive.",
            metavar="SECONDS", gunicorn="--keep-alive",
            vs_gunicorn="default 5 s (gunicorn: 2 s)"),
    Setting("read_timeout", _positive_float, _LIMITS.header_timeout,
            "Seconds a client has to send a complete request head, and for each read of a "
            "request body to make progress (defeats slowloris).", metavar="SECONDS",
            vs_gunicorn="gunicorn's gevent worker has none: a client that sends its request "
                        "slowly holds a connection for as long as it likes"),
    Setting("timeout", _non_negative_float, 30.0,
            "Watchdog: a worker whose event loop has been blocked this long (a CPU loop, a "
            "blocking C call) is killed and replaced at once; the log shows the stack of "
            "what blocked it and the request ids it had in flight. Also bounds a worker's "
            "boot (importing the app). 0 disables.", metavar="SECONDS",
            gunicorn="-t, --timeout",
            vs_gunicorn="same meaning; before the kill the master logs the blocking stack "
                        "and the request ids in flight"),
    Setting("block_warning", _non_negative_float, 0.0,
            "Early warning: log the stack of any greenlet that blocks the event loop longer "
            "than this, without killing anything (gevent's monitor thread; it traces "
            "greenlet switches, which costs some throughput). 0 disables.",
            metavar="SECONDS"),
    Setting("graceful_timeout", _non_negative_float, 30.0,
            "On TERM/INT/HUP, TTOU and recycling: seconds in-flight requests get to finish. "
            "A worker still alive 1 s after that is killed (SIGKILL).", metavar="SECONDS",
            gunicorn="--graceful-timeout",
            vs_gunicorn="also enforced by the master for old workers after HUP, TTOU and "
                        "--max-requests (gunicorn: only at shutdown)"),
    Setting("max_requests", _non_negative_int, 0,
            "Recycle a worker after this many requests (0 = never): a successor is started "
            "first, then the old worker drains, answering keep-alive clients with "
            "Connection: close so they move on.", metavar="N", gunicorn="--max-requests",
            vs_gunicorn="the successor is ready before the old worker stops accepting, and "
                        "kept-alive clients are told Connection: close (gunicorn's gevent "
                        "worker keeps serving them past the limit)"),
    Setting("max_requests_jitter", _non_negative_int, 0,
            "Add randint(0, N) to --max-requests per worker, so workers do not all recycle "
            "at once.", metavar="N", gunicorn="--max-requests-jitter"),
    Setting("preload", _bool, False,
            "Import the app once in the master before forking (less memory, faster boot) "
            "instead of in each worker. Then HUP does not load new code, and whatever the "
            "app opens at import (database connections) is shared by every worker.",
            is_flag=True, gunicorn="--preload"),
    Setting("umask", _umask, 0,
            "Bit mask for the mode of unix socket files (0 = mode 0777: a front-end running "
            "as another user can connect; 007 = owner and group only). Accepts 0o22, "
            "022, 18, 0x12.", metavar="MASK", gunicorn="-m, --umask",
            vs_gunicorn="applies to unix socket files only (there are no other files)"),
    Setting("max_request_line", _positive_int, _LIMITS.max_request_line,
            "Longest request line (method, URI, version) in bytes; longer gets 414.",
            metavar="BYTES", gunicorn="--limit-request-line",
            vs_gunicorn="default 8190 (gunicorn: 4094)"),
    Setting("max_header_size", _positive_int, _LIMITS.max_header_size,
            "Largest request header block in bytes; larger gets 431.", metavar="BYTES",
            gunicorn="--limit-request-field_size",
            vs_gunicorn="limits the whole header block (gunicorn: each field, 8190)"),
    Setting("max_header_count", _positive_int, _LIMITS.max_header_count,
            "Most request header fields; more gets 431.", metavar="N",
            gunicorn="--limit-request-fields"),
    Setting("max_body_size", _non_negative_int, _LIMITS.max_body_size,
            "Largest request body in bytes (0 = unlimited); larger gets 413 without the body "
            "being read.", metavar="BYTES",
            vs_gunicorn="gunicorn has no limit"),
    Setting("access_log", _path_or_off, "off",
            "Access log: '-' for stdout, a file path, or 'off'. USR1 reopens the file.",
            metavar="-|PATH|off", gunicorn="--access-logfile",
            vs_gunicorn="a fixed format with the request id (text or json)"),
    Setting("log_level", _choice("debug", "info", "warning", "error", "critical"), "info",
            "Error log level (the error log goes to stderr).", metavar="LEVEL",
            gunicorn="--log-level"),
    Setting("log_format", _choice("text", "json"), "text",
            "Format of the error and access logs: text, or json (one object per line).",
            metavar="text|json"),
    Setting("metrics_path", _path_or_off, "/metrics",
            "Path where the server answers Prometheus metrics (aggregated over workers) "
            "before the app sees the request; 'off' passes it to the app.", metavar="PATH|off"),
    Setting("health_path", _path_or_off, "/healthz",
            "Path where the server answers its health check before the app sees the "
            "request; 'off' passes it to the app.", metavar="PATH|off"),
    Setting("unsafe_probe", _bool, False,
            "Mount the reference app's negative-control endpoint /unsafe/probe/<token>, which "
            "leaks across requests on purpose (for testing the leak detector only).",
            is_flag=True),
)


_DEFAULTS = {setting.name: setting.default for setting in SETTINGS}


def _default(name: str) -> Any:
    """The default of setting ``name``, as its :class:`Setting` declares it."""
    return _DEFAULTS[name]


@dataclass(frozen=True)
class Config:
    """The resolved settings of one server run; every default is its Setting's."""

    app: str | None = None
    bind: tuple[str, ...] = _default("bind")
    workers: int = _default("workers")
    worker_connections: int = _default("worker_connections")
    backlog: int = _default("backlog")
    keep_alive: float = _default("keep_alive")
    read_timeout: float = _default("read_timeout")
    timeout: float = _default("timeout")
    block_warning: float = _default("block_warning")
    graceful_timeout: float = _default("graceful_timeout")
    max_requests: int = _default("max_requests")
    max_requests_jitter: int = _default("max_requests_jitter")
    preload: bool = _default("preload")
    umask: int = _default("umask")
    max_request_line: int = _default("max_request_line")
    max_header_size: int = _default("max_header_size")
    max_header_count: int = _default("max_header_count")
    max_body_size: int = _default("max_body_size")
    access_log: str = _default("access_log")
    log_level: str = _default("log_level")
    log_format: str = _default("log_format")
    metrics_path: str = _default("metrics_path")
    health_path: str = _default("health_path")
    unsafe_probe: bool = _default("unsafe_probe")


class _OneLineParser(argparse.ArgumentParser):
    """argparse prints usage + message on errors; we print one line, then exit 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"server: error: {message} (see --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _OneLineParser(
        prog="python -m server",
        description="A gevent WSGI application server with per-greenlet request context. "
                    "Every option can also be set by the environment variable shown.",
    )
    parser.add_argument("app", nargs="?", metavar="APP",
                        help="WSGI app as module:attr or module:factory(); "
                             "default: the reference app (env SERVER_APP)")
    for setting in SETTINGS:
        help_text = f"{setting.help} (env {setting.env}; default: {_show(setting.default)})"
        if setting.is_flag:
            parser.add_argument(setting.flag, dest=setting.name, action="store_const",
                                const="1", default=None, help=help_text)
        else:
            parser.add_argument(setting.flag, dest=setting.name, metavar=setting.metavar,
                                action="append" if setting.repeatable else "store",
                                default=None, help=help_text)
    parser.add_argument("--print-config-table", action="store_true",
                        help="print the settings as a Markdown table and exit")
    parser.add_argument("--print-gunicorn-table", action="store_true",
                        help="print the gunicorn-to-ctxserver flag table and exit")
    return parser


def _show(value: Any) -> str:
    if isinstance(value, tuple):
        return ",".join(value)
    if isinstance(value, bool):
        return "off" if not value else "on"
    return str(value)


def _parse(setting: Setting, raw: str, source: str) -> Any:
    try:
        return setting.parse(raw)
    except ValueError as exc:
        reason = str(exc) if "invalid literal" not in str(exc) else "not a number"
        if reason.startswith("could not convert"):
            reason = "not a number"
        raise ConfigError(f"{source}: invalid value {raw!r}: {reason}") from None


def load_config(argv: Sequence[str] | None = None,
                environ: Mapping[str, str] | None = None) -> tuple[Config, argparse.Namespace]:
    """Resolve defaults, ``SERVER_*`` variables and flags into a :class:`Config`."""
    environ = os.environ if environ is None else environ
    args = build_parser().parse_args(argv)
    values: dict[str, Any] = {}
    for setting in SETTINGS:
        cli_value = getattr(args, setting.name)
        env_value = environ.get(setting.env)
        if cli_value is not None:
            raws = cli_value if setting.repeatable else [cli_value]
            parsed = [_parse(setting, raw, setting.flag) for raw in raws]
        elif env_value is not None and env_value != "":
            raws = [part.strip() for part in env_value.split(",")] if setting.repeatable \
                else [env_value]
            parsed = [_parse(setting, raw, setting.env) for raw in raws if raw]
        else:
            continue
        values[setting.name] = tuple(parsed) if setting.repeatable else parsed[0]
    app = args.app or environ.get("SERVER_APP") or None
    config = Config(app=app, **values)
    _check(config)
    return config, args


def _check(config: Config) -> None:
    """Settings that are fine alone but contradict each other."""
    if config.timeout and config.block_warning >= config.timeout:
        raise ConfigError(f"--block-warning ({config.block_warning:g}) must be shorter than "
                          f"--timeout ({config.timeout:g}): the watchdog kills the worker first")


def _usage(setting: Setting) -> str:
    """``--flag METAVAR`` as a Markdown table cell (a ``|`` would end the cell)."""
    usage = setting.flag if setting.is_flag else f"{setting.flag} {setting.metavar}"
    return usage.replace("|", "\\|")


def markdown_table() -> str:
    """The settings table for the README: flag, environment variable, default, meaning."""
    lines = ["| flag | environment | default | meaning |", "|---|---|---|---|",
             "| `APP` (positional) | `SERVER_APP` | reference app | WSGI app as "
             "`module:attr` or `module:factory()` |"]
    for s in SETTINGS:
        lines.append(f"| `{_usage(s)}` | `{s.env}` | `{_show(s.default)}` | {s.help} |")
    return "\n".join(lines)


#: gunicorn options we have no setting for, and what happens instead.
GUNICORN_ONLY: tuple[tuple[str, str], ...] = (
    ("-k, --worker-class", "always a gevent worker — with a greenlet of its own for every "
                           "request (`-k gevent` runs all requests of a connection in one, "
                           "so greenlet-keyed data leaks into the next request)"),
)


def gunicorn_table() -> str:
    """The README's "coming from gunicorn" table, from the settings' gunicorn fields."""
    lines = ["| gunicorn | ctxserver | difference |", "|---|---|---|"]
    for s in SETTINGS:
        if s.gunicorn or s.vs_gunicorn:
            theirs = f"`{s.gunicorn}`" if s.gunicorn else "—"
            lines.append(f"| {theirs} | `{_usage(s)}` | {s.vs_gunicorn or 'same'} |")
    for theirs, instead in GUNICORN_ONLY:
        lines.append(f"| `{theirs}` | — | {instead} |")
    return "\n".join(lines)


def fail(message: str) -> NoReturn:
    """Print a one-line error and exit 2 (bad option, unloadable app, unusable address)."""
    sys.stderr.write(f"server: error: {message}\n")
    sys.stderr.flush()
    raise SystemExit(2)
