"""Every setting declared once → CLI flags (ours, the short one, gunicorn's), ``SERVER_*``
environment variable, config-file names (ours and gunicorn's), README tables.

Precedence: default < ``PORT`` / ``WEB_CONCURRENCY`` < config file < environment variable
< command-line flag.  A bad value, from any source, is a one-line error naming the source,
and exit code 2 (see :class:`ConfigError`).  The tables the README quotes are made in
:mod:`server.config_docs`; value parsers are in :mod:`server.setting_types`; reading the
config file is :mod:`server.config_file`.
"""

from __future__ import annotations

import argparse
import difflib
import os
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NoReturn

from . import setting_types as parse_as
from .config_file import AUTO_CONFIG, ConfigFileError, FileSettings, read_config_file
from .http.limits import Limits
from .http.proxy_protocol import MODES as PROXY_MODES
from .http.tls import server_context

__all__ = ["COMMANDS", "SETTINGS", "Config", "ConfigError", "Setting", "fail", "load_config",
           "shown_default"]


class ConfigError(Exception):
    """A bad setting: reported as ``server: error: <message>`` and exit code 2."""


@dataclass(frozen=True)
class Setting:
    """One setting: its name is the Config attribute, the flag and the env var."""

    name: str
    parse: Callable[[str], Any]
    default: Any
    help: str
    metavar: str = ""
    repeatable: bool = False
    is_flag: bool = False
    #: gunicorn's short flag for it, which we accept too (``-b``, ``-w``...).
    short: str = ""
    #: gunicorn's flag(s) for the same setting ("" if gunicorn has none; accepted as aliases
    #: of ours), and how we differ ("" when name, meaning and default are the same): the
    #: README's "coming from gunicorn" table is made of these.
    gunicorn: str = ""
    vs_gunicorn: str = ""
    #: gunicorn's name for it in a config file (``keepalive``, ``preload_app``) when that is
    #: not ours: a gunicorn.conf.py naming it sets this setting (see :attr:`file_names`).
    gunicorn_name: str = ""
    #: False for the settings that choose the config file itself (it cannot set them).
    in_file: bool = True
    #: How the README shows the default, when ``str(default)`` would not say it.
    shown_default: str = ""
    #: Why a HUP cannot change it ("" when the next generation of workers runs with the
    #: re-read value): what the master applies once, at start. See :mod:`server.reload`.
    restart: str = ""

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")

    @property
    def flags(self) -> tuple[str, ...]:
        """Every flag that sets it: ours, the short one, gunicorn's spellings."""
        theirs = [f.strip() for f in self.gunicorn.split(",") if f.strip()]
        found = [self.flag, *([self.short] if self.short else []), *theirs]
        return tuple(dict.fromkeys(found))

    @property
    def env(self) -> str:
        return "SERVER_" + self.name.upper()

    @property
    def file_names(self) -> tuple[str, ...]:
        """The names a config file may give it: ours and gunicorn's."""
        if not self.in_file:
            return ()
        return tuple(dict.fromkeys([self.name, *([self.gunicorn_name] if self.gunicorn_name
                                                 else [])]))


#: The protocol limits' defaults are the HTTP layer's own (server/http/limits.py), so that
#: ``Limits()`` there and the flags here cannot disagree.
_LIMITS = Limits()

SETTINGS: tuple[Setting, ...] = (
    Setting("bind", parse_as.bind, ("127.0.0.1:8000",),
            "Address to listen on: HOST:PORT, [IPV6]:PORT, :PORT or unix:PATH. Repeatable; "
            "in the environment, separate several with commas. Port 0 picks a free port "
            "(the log says which).",
            metavar="ADDRESS", repeatable=True, short="-b", gunicorn="-b, --bind",
            shown_default="127.0.0.1:8000, or 0.0.0.0:$PORT when PORT is set",
            vs_gunicorn="a port is required (gunicorn reads a bare HOST as HOST:8000); no "
                        "fd://N; a changed bind needs a restart (gunicorn re-binds on HUP)",
            restart="the master binds the listeners once, at start; the workers inherit them"),
    Setting("workers", parse_as.positive_int, 1,
            "Number of pre-forked worker processes. The master supervises them and restarts "
            "one that dies (with backoff while they keep crashing); TTIN/TTOU add or "
            "remove one.", metavar="N", short="-w", gunicorn="-w, --workers",
            shown_default="1, or $WEB_CONCURRENCY when set"),
    Setting("worker_class", parse_as.worker_class, "gevent",
            "Worker type: only gevent (with a greenlet of its own for every request).",
            metavar="gevent", short="-k", gunicorn="-k, --worker-class",
            vs_gunicorn="only gevent; and each request gets a greenlet of its own (`-k "
                        "gevent` runs all requests of a connection in one, so "
                        "greenlet-keyed data leaks into the next request)"),
    Setting("worker_connections", parse_as.positive_int, 1000,
            "Concurrent connections per worker (bounded greenlet pool); further connections "
            "wait in the listen backlog.", metavar="N", gunicorn="--worker-connections"),
    Setting("backlog", parse_as.positive_int, 2048, "Listen backlog of each socket.", metavar="N",
            gunicorn="--backlog",
            restart="set when the master binds the listeners, at start"),
    Setting("keep_alive", parse_as.non_negative_float, _LIMITS.keep_alive,
            "Seconds an idle keep-alive connection is kept open; 0 disables keep-alive.",
            metavar="SECONDS", gunicorn="--keep-alive", gunicorn_name="keepalive",
            vs_gunicorn="default 5 s (gunicorn: 2 s)"),
    Setting("read_timeout", parse_as.positive_float, _LIMITS.header_timeout,
            "Seconds a client has to send a complete request head, and for each read of a "
            "request body to make progress (defeats slowloris).", metavar="SECONDS",
            vs_gunicorn="gunicorn's gevent worker has none: a client that sends its request "
                        "slowly holds a connection for as long as it likes"),
    Setting("timeout", parse_as.non_negative_float, 30.0,
            "Watchdog: a worker whose event loop has been blocked this long (a CPU loop, a "
            "blocking C call) is killed and replaced at once; the log shows the stack of "
            "what blocked it and the request ids it had in flight. Also bounds a worker's "
            "boot (importing the app). 0 disables.", metavar="SECONDS",
            short="-t", gunicorn="-t, --timeout",
            vs_gunicorn="same meaning; before the kill the master logs the blocking stack "
                        "and the request ids in flight"),
    Setting("block_warning", parse_as.non_negative_float, 0.0,
            "Early warning: log the stack of any greenlet that blocks the event loop longer "
            "than this, without killing anything (gevent's monitor thread; it traces "
            "greenlet switches, which costs some throughput). 0 disables.",
            metavar="SECONDS"),
    Setting("graceful_timeout", parse_as.non_negative_float, 30.0,
            "On TERM/INT/HUP, TTOU and recycling: seconds in-flight requests get to finish. "
            "A worker still alive 1 s after that is killed (SIGKILL).", metavar="SECONDS",
            gunicorn="--graceful-timeout",
            vs_gunicorn="also enforced by the master for old workers after HUP, TTOU and "
                        "--max-requests (gunicorn: only at shutdown)"),
    Setting("max_requests", parse_as.non_negative_int, 0,
            "Recycle a worker after this many requests (0 = never): a successor is started "
            "first, then the old worker drains, answering keep-alive clients with "
            "Connection: close so they move on.", metavar="N", gunicorn="--max-requests",
            vs_gunicorn="the successor is ready before the old worker stops accepting, and "
                        "kept-alive clients are told Connection: close (gunicorn's gevent "
                        "worker keeps serving them past the limit)"),
    Setting("max_requests_jitter", parse_as.non_negative_int, 0,
            "Add randint(0, N) to --max-requests per worker, so workers do not all recycle "
            "at once.", metavar="N", gunicorn="--max-requests-jitter"),
    Setting("preload", parse_as.bool, False,
            "Import the app once in the master before forking (less memory, faster boot) "
            "instead of in each worker. Then HUP does not load new code, and whatever the "
            "app opens at import (database connections) is shared by every worker.",
            is_flag=True, gunicorn="--preload", gunicorn_name="preload_app",
            restart="the master imported the app once, at start"),
    Setting("umask", parse_as.umask, 0,
            "Bit mask for the mode of unix socket files (0 = mode 0777: a front-end running "
            "as another user can connect; 007 = owner and group only). Accepts 0o22, "
            "022, 18, 0x12.", metavar="MASK", short="-m", gunicorn="-m, --umask",
            vs_gunicorn="applies to unix socket files only (gunicorn makes it the process "
                        "umask)",
            restart="applied when the master creates the unix socket files, at start"),
    Setting("max_request_line", parse_as.positive_int, _LIMITS.max_request_line,
            "Longest request line (method, URI, version) in bytes; longer gets 414.",
            metavar="BYTES", gunicorn="--limit-request-line",
            gunicorn_name="limit_request_line",
            vs_gunicorn="default 8190 (gunicorn: 4094)"),
    Setting("max_header_size", parse_as.positive_int, _LIMITS.max_header_size,
            "Largest request header block in bytes; larger gets 431.", metavar="BYTES",
            gunicorn="--limit-request-field_size", gunicorn_name="limit_request_field_size",
            vs_gunicorn="limits the whole header block (gunicorn: each field, 8190)"),
    Setting("max_header_count", parse_as.positive_int, _LIMITS.max_header_count,
            "Most request header fields; more gets 431.", metavar="N",
            gunicorn="--limit-request-fields", gunicorn_name="limit_request_fields"),
    Setting("max_body_size", parse_as.non_negative_int, _LIMITS.max_body_size,
            "Largest request body in bytes (0 = unlimited); larger gets 413 without the body "
            "being read.", metavar="BYTES",
            vs_gunicorn="gunicorn has no limit"),
    Setting("access_log", parse_as.path_or_off, "off",
            "Access log: '-' for stdout, a file path, or 'off'. USR1 reopens the file (in "
            "the master and every worker).",
            metavar="-|PATH|off", gunicorn="--access-logfile", gunicorn_name="accesslog",
            vs_gunicorn="a line with the request id unless --access-log-format says "
                        "otherwise; off by default as in gunicorn"),
    Setting("access_log_format", parse_as.access_format, "",
            "Format of a text access log line, with gunicorn's atoms: %(h)s remote address, "
            "%(l)s '-', %(u)s user, %(t)s time, %(r)s request line, %(m)s method, %(U)s "
            "path, %(q)s query, %(H)s protocol, %(s)s status, %(B)s / %(b)s body bytes, "
            "%(f)s referer, %(a)s user agent, %(T)s / %(M)s / %(D)s / %(L)s duration in s / "
            "ms / µs / decimal s, %(p)s pid, %({name}i)s a request header, %({name}o)s a "
            "response header the app sent, %({name}e)s an environ key, and %(request_id)s. "
            "Empty: our line (with the request id).",
            metavar="FORMAT", gunicorn="--access-logformat", shown_default="(our line)",
            vs_gunicorn="gunicorn's atoms, plus %(request_id)s"),
    Setting("error_log", parse_as.path_or_off, "-",
            "Error log: '-' for stderr, or a file path. USR1 reopens the file.",
            metavar="-|PATH", gunicorn="--error-logfile, --log-file",
            gunicorn_name="errorlog",
            restart="the master opened the error log once, at start (USR1 reopens it)"),
    Setting("capture_output", parse_as.bool, False,
            "Send the app's stdout and stderr (print(), C libraries) to the error log file; "
            "only with --error-log PATH.", is_flag=True, gunicorn="--capture-output",
            vs_gunicorn="an error without --error-log PATH (gunicorn ignores it then)",
            restart="the master redirected its stdout and stderr once, at start"),
    Setting("log_level", parse_as.choice("debug", "info", "warning", "error", "critical"), "info",
            "Error log level.", metavar="LEVEL",
            gunicorn="--log-level", gunicorn_name="loglevel"),
    Setting("log_format", parse_as.choice("text", "json"), "text",
            "Format of the error and access logs: text, or json (one object per line).",
            metavar="text|json"),
    Setting("metrics_path", parse_as.path_or_off, "/metrics",
            "Path where the server answers Prometheus metrics (aggregated over workers) "
            "before the app sees the request; 'off' passes it to the app.", metavar="PATH|off"),
    Setting("health_path", parse_as.path_or_off, "/healthz",
            "Path where the server answers its health check before the app sees the "
            "request; 'off' passes it to the app.", metavar="PATH|off"),
    Setting("config", parse_as.path_or_off, "",
            "Python config file: its module-level names set settings (ours or gunicorn's) "
            "and server hooks (gunicorn's). Flags and SERVER_* variables win over it.",
            metavar="FILE", short="-c", gunicorn="-c, --config", in_file=False,
            shown_default="./ctxserver.conf.py if present",
            vs_gunicorn="same format; gunicorn's names work; names we do not support are "
                        "one warning each; ./gunicorn.conf.py is not read; HUP re-reads "
                        "it, but what the master applies at start (bind, user...) needs a "
                        "restart"),
    Setting("chdir", parse_as.directory, "",
            "Change to this directory before loading the app (after reading the config "
            "file).", metavar="DIR", gunicorn="--chdir", shown_default="(stay)",
            restart="the master changed directory once, at start"),
    Setting("pid", parse_as.path_or_off, "",
            "Write the master's pid to this file; removed at exit.", metavar="FILE",
            short="-p", gunicorn="-p, --pid", gunicorn_name="pidfile",
            shown_default="(none)",
            restart="the master wrote its pid file once, at start"),
    Setting("user", parse_as.user, None,
            "Run the workers as this user (name or uid); the master keeps its own (it binds "
            "the sockets first, so a port below 1024 works). The app, imported in each worker "
            "after the switch unless --preload, must be readable by it.", metavar="USER",
            short="-u", gunicorn="-u, --user", shown_default="(unchanged)",
            restart="the master handed the log and metrics files to that user at start"),
    Setting("group", parse_as.group, None,
            "Run the workers as this group (name or gid).", metavar="GROUP", short="-g",
            gunicorn="-g, --group", shown_default="(unchanged)",
            restart="the master handed the log and metrics files to that group at start"),
    Setting("env", parse_as.key_value, (),
            "Set an environment variable KEY=VALUE in the server (before the app loads). "
            "Repeatable.", metavar="KEY=VALUE", repeatable=True, short="-e",
            gunicorn="-e, --env", gunicorn_name="raw_env", shown_default="(none)"),
    # -- Behind a proxy, and TLS (README "Behind a proxy", "TLS")
    Setting("forwarded_allow_ips", parse_as.trusted_peers, "127.0.0.1,::1",
            "Peers whose X-Forwarded-Proto/-Ssl/-For and Forwarded headers are believed: "
            "they set wsgi.url_scheme and REMOTE_ADDR (the rightmost address not in this "
            "list). Addresses, CIDR networks, or '*' for every peer; unix-socket peers are "
            "always trusted. From other peers the headers are plain headers. Without a "
            "setting, the FORWARDED_ALLOW_IPS environment variable (as gunicorn).",
            metavar="ADDRESSES", gunicorn="--forwarded-allow-ips",
            vs_gunicorn="X-Forwarded-For / Forwarded for= also set REMOTE_ADDR (gunicorn "
                        "leaves the proxy's); CIDR networks allowed"),
    Setting("proxy_protocol", parse_as.choice(*PROXY_MODES), "off",
            "Accept a PROXY protocol header (HAProxy's v1 text or v2 binary; auto: either) "
            "from --proxy-allow-from peers: the client address comes from it. A malformed "
            "or truncated header closes the connection unanswered.",
            metavar="off|v1|v2|auto", gunicorn="--proxy-protocol"),
    Setting("proxy_allow_from", parse_as.trusted_peers, "127.0.0.1,::1",
            "Peers that may send a PROXY protocol header (addresses, CIDR networks, '*'); "
            "from others a PROXY line is a bad request (400).", metavar="ADDRESSES",
            gunicorn="--proxy-allow-from", gunicorn_name="proxy_allow_ips"),
    Setting("root_path", parse_as.root_path, "",
            "Mount the app under this URL prefix: SCRIPT_NAME is the prefix, PATH_INFO the "
            "rest of a path under it (a path outside it is passed whole). Without a "
            "setting, the SCRIPT_NAME environment variable (as gunicorn).", metavar="PATH",
            shown_default="$SCRIPT_NAME or none",
            vs_gunicorn="gunicorn has the SCRIPT_NAME variable only, and answers 500 to a "
                        "path outside it"),
    Setting("certfile", parse_as.existing_file, "",
            "Serve HTTPS: the certificate chain (PEM), with the key unless --keyfile is "
            "given. Applies to every --bind address.", metavar="FILE",
            gunicorn="--certfile", shown_default="(none)"),
    Setting("keyfile", parse_as.existing_file, "", "The private key (PEM) of --certfile.",
            metavar="FILE", gunicorn="--keyfile", shown_default="(none)"),
    Setting("ca_certs", parse_as.existing_file, "", "CA certificates (PEM) to verify client "
            "certificates with (see --cert-reqs).", metavar="FILE", gunicorn="--ca-certs",
            shown_default="(none)"),
    Setting("cert_reqs", parse_as.cert_reqs, 0,
            "Client certificates: 0/none (not asked for), 1/optional (verified if sent), "
            "2/required.", metavar="0|1|2", gunicorn="--cert-reqs"),
    Setting("ciphers", str, "",
            "OpenSSL cipher list for TLS 1.2 (TLS 1.3 suites are OpenSSL's defaults); "
            "empty: Python's defaults.", metavar="CIPHERS", gunicorn="--ciphers",
            shown_default="(Python's)"),
    Setting("unsafe_probe", parse_as.bool, False,
            "Mount the reference app's negative-control endpoint /unsafe/probe/<token>, which "
            "leaks across requests on purpose (for testing the leak detector only).",
            is_flag=True),
)


_DEFAULTS = {setting.name: setting.default for setting in SETTINGS}
SETTINGS_BY_NAME = {setting.name: setting for setting in SETTINGS}


def _default(name: str) -> Any:
    """The default of setting ``name``, as its :class:`Setting` declares it."""
    return _DEFAULTS[name]


@dataclass(frozen=True)
class Config:
    """The resolved settings of one server run; every default is its Setting's."""

    app: str | None = None
    bind: tuple[str, ...] = _default("bind")
    workers: int = _default("workers")
    worker_class: str = _default("worker_class")
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
    access_log_format: str = _default("access_log_format")
    error_log: str = _default("error_log")
    capture_output: bool = _default("capture_output")
    log_level: str = _default("log_level")
    log_format: str = _default("log_format")
    metrics_path: str = _default("metrics_path")
    health_path: str = _default("health_path")
    config: str = _default("config")
    chdir: str = _default("chdir")
    pid: str = _default("pid")
    user: int | None = _default("user")
    group: int | None = _default("group")
    env: tuple[str, ...] = _default("env")
    forwarded_allow_ips: str = _default("forwarded_allow_ips")
    proxy_protocol: str = _default("proxy_protocol")
    proxy_allow_from: str = _default("proxy_allow_from")
    root_path: str = _default("root_path")
    certfile: str = _default("certfile")
    keyfile: str = _default("keyfile")
    ca_certs: str = _default("ca_certs")
    cert_reqs: int = _default("cert_reqs")
    ciphers: str = _default("ciphers")
    unsafe_probe: bool = _default("unsafe_probe")
    #: The config file's server hooks, by gunicorn's names (see :mod:`server.hooks`).
    hooks: Mapping[str, Callable[..., Any]] = field(default_factory=dict, compare=False)


class _OneLineParser(argparse.ArgumentParser):
    """argparse prints usage + message on errors; we print one line, then exit 2.

    A misspelt flag is named as such (with the nearest real one), not taken for APP."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"server: error: {message} (see --help)\n")

    def parse_args(self, args: Sequence[str] | None = None,  # type: ignore[override]
                   namespace: argparse.Namespace | None = None) -> argparse.Namespace:
        args = list(sys.argv[1:] if args is None else args)
        known = {flag for action in self._actions for flag in action.option_strings}
        for arg in args:
            if arg == "--":
                break
            flag = arg.split("=", 1)[0]
            if flag.startswith("-") and len(flag) > 1 and flag not in known \
                    and not flag.lstrip("-").replace(".", "").isdigit():
                close = difflib.get_close_matches(flag, sorted(known), n=1, cutoff=0.6)
                self.error(f"unknown flag {flag}" + (f" (did you mean {close[0]}?)"
                                                     if close else ""))
        return super().parse_args(args, namespace)


def build_parser() -> argparse.ArgumentParser:
    parser = _OneLineParser(
        prog="ctxserver",
        description="A gevent WSGI application server with per-greenlet request context. "
                    "Every option can also be set by the environment variable shown, and "
                    "in a config file (-c) by its name or gunicorn's.",
        allow_abbrev=False,
    )
    parser.add_argument("app", nargs="?", metavar="APP",
                        help="WSGI app as module:attr or module:factory(); "
                             "default: the reference app (env SERVER_APP)")
    for setting in SETTINGS:
        help_text = f"{setting.help} (env {setting.env}; default: {shown_default(setting)})"
        help_text = help_text.replace("%", "%%")  # argparse %-formats help (our atoms)
        if setting.is_flag:
            parser.add_argument(*setting.flags, dest=setting.name, action="store_const",
                                const="1", default=None, help=help_text)
        else:
            parser.add_argument(*setting.flags, dest=setting.name, metavar=setting.metavar,
                                action="append" if setting.repeatable else "store",
                                default=None, help=help_text)
    for flag, what in COMMANDS.items():
        parser.add_argument(flag, action="store_true", help=what)
    return parser


#: Flags that do something instead of serving (they are not settings).
COMMANDS = {
    "--check-config": "load the config file and the app, then exit: 0 if both are fine, "
                      "else one line naming what is wrong and exit 2",
    "--print-config": "print the resolved settings (a valid config file) and exit",
    "--print-config-table": "print the settings as a Markdown table and exit",
    "--print-gunicorn-table": "print the gunicorn-to-ctxserver table and exit",
}


def _show(value: Any) -> str:
    if isinstance(value, tuple):
        return ",".join(value)
    if isinstance(value, bool):
        return "off" if not value else "on"
    return str(value)


def shown_default(setting: Setting) -> str:
    return setting.shown_default or _show(setting.default)


def _parse(setting: Setting, raw: str, source: str) -> Any:
    try:
        return setting.parse(raw)
    except ValueError as exc:
        reason = str(exc) if "invalid literal" not in str(exc) else "not a number"
        if reason.startswith("could not convert"):
            reason = "not a number"
        raise ConfigError(f"{source}: invalid value {raw!r}: {reason}") from None


def _file_texts(setting: Setting, value: Any, source: str) -> list[str]:
    """A config file's Python value as the text(s) the setting parses: ``workers = 4``,
    ``preload_app = True``, ``bind = ["a:1", "b:2"]``, ``umask = 0o22``."""
    values = list(value) if setting.repeatable and isinstance(value, list | tuple) \
        else [value]
    texts = []
    for item in values:
        if isinstance(item, bool) and setting.is_flag:
            texts.append("1" if item else "0")
        elif isinstance(item, str):
            texts.append(item)
        elif isinstance(item, int | float) and not isinstance(item, bool) \
                and not setting.repeatable:
            texts.append(str(item))
        else:
            kind = "a list of strings" if setting.repeatable else \
                "True or False" if setting.is_flag else "a string or a number"
            raise ConfigError(f"{source}: invalid value {value!r}: expected {kind}")
    return texts


def _conventions(environ: Mapping[str, str]) -> dict[str, tuple[str, str]]:
    """gunicorn's (and Heroku's) environment conventions: defaults, below the config file.

    ``PORT`` binds ``0.0.0.0:$PORT`` when nothing else sets a bind; ``WEB_CONCURRENCY`` is
    the default number of workers; ``FORWARDED_ALLOW_IPS`` and ``SCRIPT_NAME`` are the
    defaults of --forwarded-allow-ips and --root-path."""
    found = {}
    if environ.get("PORT"):
        found["bind"] = (f"0.0.0.0:{environ['PORT']}", "PORT")
    if environ.get("WEB_CONCURRENCY"):
        found["workers"] = (environ["WEB_CONCURRENCY"], "WEB_CONCURRENCY")
    for name, variable in (("forwarded_allow_ips", "FORWARDED_ALLOW_IPS"),
                           ("root_path", "SCRIPT_NAME")):  # gunicorn reads these too
        if environ.get(variable):
            found[name] = (environ[variable], variable)
    return found


def _config_path(args: argparse.Namespace, environ: Mapping[str, str]) -> str:
    """The config file: ``-c``, else ``SERVER_CONFIG``, else ``./ctxserver.conf.py`` if it
    exists ('' when none)."""
    path = args.config or environ.get("SERVER_CONFIG") or ""
    if path:
        return _parse(SETTINGS_BY_NAME["config"], path, "--config" if args.config
                      else "SERVER_CONFIG")
    return AUTO_CONFIG if os.path.isfile(AUTO_CONFIG) else ""


def _resolve(setting: Setting, args: argparse.Namespace, environ: Mapping[str, str],
             file: FileSettings | None, conventions: dict[str, tuple[str, str]]) -> Any:
    """One setting's value: flag > SERVER_* > config file > PORT/WEB_CONCURRENCY > default
    (``_UNSET`` for the default)."""
    cli_value = getattr(args, setting.name)
    env_value = environ.get(setting.env)
    if cli_value is not None:
        raws = cli_value if setting.repeatable else [cli_value]
        parsed = [_parse(setting, raw, setting.flag) for raw in raws]
    elif env_value is not None and env_value != "":
        raws = [part.strip() for part in env_value.split(",")] if setting.repeatable \
            else [env_value]
        parsed = [_parse(setting, raw, setting.env) for raw in raws if raw]
    elif file is not None and setting.name in file.values \
            and file.values[setting.name][1] is not None:
        name, value = file.values[setting.name]
        source = f"{file.path}: {name}"
        parsed = [_parse(setting, raw, source) for raw in _file_texts(setting, value, source)]
    elif setting.name in conventions:
        raw, source = conventions[setting.name]
        parsed = [_parse(setting, raw, source)]
    else:
        return _UNSET
    return tuple(parsed) if setting.repeatable else parsed[0]


_UNSET: Any = object()


def load_config(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None,
                warn: Callable[[str], None] | None = None
                ) -> tuple[Config, argparse.Namespace]:
    """Resolve defaults, PORT/WEB_CONCURRENCY, the config file, ``SERVER_*`` variables and
    flags into a :class:`Config`; each warning about the config file goes to ``warn``."""
    environ = os.environ if environ is None else environ
    args = build_parser().parse_args(argv)
    path = _config_path(args, environ)
    file = None
    if path:
        try:
            file = read_config_file(path, SETTINGS)
        except ConfigFileError as exc:
            raise ConfigError(str(exc)) from None
        for line in file.warnings:
            (warn or _stderr_warning)(line)
    conventions = _conventions(environ)
    values: dict[str, Any] = {}
    for setting in SETTINGS:
        value = _resolve(setting, args, environ, file, conventions)
        if value is not _UNSET:
            values[setting.name] = value
    values["config"] = path
    app = args.app or environ.get("SERVER_APP") or (file.app if file else None) or None
    if app is not None and not isinstance(app, str):
        raise ConfigError(f"{path}: wsgi_app: invalid value {app!r}: expected 'module:attr'")
    config = Config(app=app, hooks=file.hooks if file else {}, **values)
    _check(config)
    return config, args


def _stderr_warning(line: str) -> None:
    sys.stderr.write(f"server: warning: {line}\n")
    sys.stderr.flush()


def _check(config: Config) -> None:
    """Settings that are fine alone but contradict each other."""
    if config.timeout and config.block_warning >= config.timeout:
        raise ConfigError(f"--block-warning ({config.block_warning:g}) must be shorter than "
                          f"--timeout ({config.timeout:g}): the watchdog kills the worker first")
    changes = [(name, value, current) for name, value, current in
               (("--user", config.user, os.geteuid()), ("--group", config.group, os.getegid()))
               if value is not None and value != current]
    if changes and os.geteuid() != 0:  # else every worker would fail to boot
        raise ConfigError(f"{changes[0][0]} {changes[0][1]}: changing the workers' user or "
                          "group needs the master to run as root")
    if config.capture_output and config.error_log == "-":
        raise ConfigError("--capture-output needs --error-log PATH (stdout and stderr are "
                          "already where they would go)")
    _check_tls(config)


def _check_tls(config: Config) -> None:
    """The TLS files load and fit together, so a worker never fails to boot on them."""
    if not config.certfile:
        for name in ("keyfile", "ca_certs", "ciphers"):
            if getattr(config, name):
                raise ConfigError(f"--{name.replace('_', '-')} needs --certfile")
        if config.cert_reqs:
            raise ConfigError("--cert-reqs needs --certfile")
        return
    if config.cert_reqs and not config.ca_certs:
        raise ConfigError("--cert-reqs 1 or 2 needs --ca-certs to verify client "
                          "certificates with")
    try:
        server_context(config.certfile, config.keyfile, config.ca_certs, config.cert_reqs)
    except (OSError, ValueError) as exc:
        raise ConfigError(f"--certfile/--keyfile/--ca-certs: cannot load: {exc}") from None
    if config.ciphers:
        try:
            server_context(config.certfile, config.keyfile, "", 0, config.ciphers)
        except (OSError, ValueError) as exc:
            raise ConfigError(f"--ciphers: invalid value {config.ciphers!r}: {exc}") from None


def fail(message: str) -> NoReturn:
    """Print a one-line error and exit 2 (bad option, unloadable app, unusable address)."""
    sys.stderr.write(f"server: error: {message}\n")
    sys.stderr.flush()
    raise SystemExit(2)
