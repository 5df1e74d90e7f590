"""Reading a Python config file (``-c FILE``, ``./ctxserver.conf.py``): which of its names
set which setting, which are hooks, and one warning for each name we do not support.

The format is gunicorn's: a Python file whose module-level names are settings and hooks, so
an existing ``gunicorn.conf.py`` runs unchanged for everything we support. A name may be
ours (``keep_alive``) or gunicorn's (``keepalive``): each :class:`~server.config.Setting`
declares its gunicorn name, so a setting added with one is understood here with no change.
Names gunicorn has and we do not (:data:`GUNICORN_UNSUPPORTED`) are one warning line each,
saying why; a name the file assigns that neither of us knows (``wokers = 3``) is one
warning too — a typo must not go unnoticed. What it imports, its functions that are not
hooks (unless named like one), and ``_private`` names are its own business.
"""

from __future__ import annotations

import ast
import difflib
import os
import runpy
import types
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from .hooks import HOOKS, check_hook
from .loader import failing_line

__all__ = ["AUTO_CONFIG", "GUNICORN_UNSUPPORTED", "FileSettings", "read_config_file"]

#: Loaded when no ``-c`` / ``SERVER_CONFIG`` names a file and it exists in the current
#: directory (as gunicorn loads ``./gunicorn.conf.py``).
AUTO_CONFIG = "ctxserver.conf.py"

_TLS = "not supported: TLS is set by --certfile, --keyfile, --ca-certs, --cert-reqs, --ciphers"
_PROXY = "not supported: see --forwarded-allow-ips"
_LOGGING = "logging is configured by --error-log / --log-level / --log-format"
_HTTP2 = "HTTP/2 is not supported (HTTP/1.1 only)"
_DIRTY = "gunicorn's dirty arbiters are not supported"

#: gunicorn 27's settings and hooks that no setting of ours declares, and why (the warning
#: says it). A Setting that declares one of these names as its ``gunicorn_name`` wins.
GUNICORN_UNSUPPORTED: dict[str, str] = {
    "threads": "gevent greenlets instead of threads",
    "reload": "send HUP to load new code into new workers",
    "reload_engine": "send HUP to load new code into new workers",
    "reload_extra_files": "send HUP to load new code into new workers",
    "spew": "not supported",
    "sendfile": "not supported (responses are written by the HTTP layer)",
    "reuse_port": "not supported: the master binds once and the workers share the socket",
    "daemon": "run it under systemd, a container or supervisord",
    "worker_tmp_dir": "the heartbeat is in shared memory, not a file",
    "initgroups": "not supported: the workers keep the master's supplementary groups "
                  "minus all but --group",
    "tmp_upload_dir": "not supported",
    "secure_scheme_headers": _PROXY,
    "disable_redirect_access_to_syslog": _LOGGING,
    "logger_class": _LOGGING,
    "logconfig": _LOGGING,
    "logconfig_dict": _LOGGING,
    "logconfig_json": _LOGGING,
    "syslog_addr": _LOGGING,
    "syslog": _LOGGING,
    "syslog_prefix": _LOGGING,
    "syslog_facility": _LOGGING,
    "enable_stdio_inheritance": "not supported",
    "statsd_host": "metrics are Prometheus, at --metrics-path",
    "dogstatsd_tags": "metrics are Prometheus, at --metrics-path",
    "statsd_prefix": "metrics are Prometheus, at --metrics-path",
    "enable_backlog_metric": "metrics are Prometheus, at --metrics-path",
    "proc_name": "not supported",
    "default_proc_name": "not supported",
    "pythonpath": "not supported: set PYTHONPATH",
    "paste": "PasteDeploy is not supported",
    "raw_paste_global_conf": "PasteDeploy is not supported",
    "pre_exec": "USR2 binary upgrade is not supported, so there is no exec",
    "ssl_context": _TLS,
    "protocol": "HTTP only (no uwsgi protocol)",
    "uwsgi_allow_ips": "HTTP only (no uwsgi protocol)",
    "ssl_version": _TLS,
    "suppress_ragged_eofs": _TLS,
    "do_handshake_on_connect": _TLS,
    "http_protocols": _HTTP2,
    "http2_cleartext": _HTTP2,
    "http2_max_concurrent_streams": _HTTP2,
    "http2_initial_window_size": _HTTP2,
    "http2_max_frame_size": _HTTP2,
    "http2_max_header_list_size": _HTTP2,
    "permit_obsolete_folding": "the HTTP layer's parsing rules are fixed (strict)",
    "strip_header_spaces": "the HTTP layer's parsing rules are fixed (strict)",
    "permit_unconventional_http_method": "the HTTP layer's parsing rules are fixed (strict)",
    "permit_unconventional_http_version": "the HTTP layer's parsing rules are fixed (strict)",
    "casefold_http_method": "the HTTP layer's parsing rules are fixed (strict)",
    "forwarder_headers": _PROXY,
    "header_map": "header names with '_' are always dropped (the safe choice)",
    "asgi_loop": "WSGI only",
    "asgi_lifespan": "WSGI only",
    "asgi_disconnect_grace_period": "WSGI only",
    "websocket_max_message_size": "WSGI only",
    "http_parser": "the parser is always httptools (llhttp)",
    "dirty_apps": _DIRTY,
    "dirty_workers": _DIRTY,
    "dirty_timeout": _DIRTY,
    "dirty_threads": _DIRTY,
    "dirty_graceful_timeout": _DIRTY,
    "on_dirty_starting": _DIRTY,
    "dirty_post_fork": _DIRTY,
    "dirty_worker_init": _DIRTY,
    "dirty_worker_exit": _DIRTY,
    "control_socket": "no control socket: signals (TTIN/TTOU, HUP, USR1) instead",
    "control_socket_mode": "no control socket: signals (TTIN/TTOU, HUP, USR1) instead",
    "control_socket_disable": "no control socket: signals (TTIN/TTOU, HUP, USR1) instead",
}

#: Names that only make sense on the command line; in a file they are ignored, with a word.
COMMAND_LINE_ONLY = {"config": "a config file cannot name another one",
                     "check_config": "use the --check-config flag",
                     "print_config": "use the --print-config flag"}

#: The app, which gunicorn's file calls ``wsgi_app``.
APP_NAMES = ("app", "wsgi_app")


@dataclass
class FileSettings:
    """What one config file says: raw values by setting name, hooks, warning lines."""

    path: str
    values: dict[str, tuple[str, Any]] = field(default_factory=dict)  # name -> (file name, value)
    hooks: dict[str, Callable[..., Any]] = field(default_factory=dict)
    app: Any = None
    warnings: list[str] = field(default_factory=list)


class ConfigFileError(Exception):
    """The file cannot be read or run, or a name in it has a bad value."""


def _is_own(value: Any) -> bool:
    """Names the file keeps for itself: modules, helpers, classes."""
    return isinstance(value, types.ModuleType | type | types.FunctionType
                      | types.BuiltinFunctionType)


_BLOCKS = (ast.If, ast.Try, ast.With, ast.For, ast.While)


def assigned_names(source: str) -> set[str]:
    """The names the file's top level assigns (also inside if/try/with/for blocks): only
    these can be a misspelt setting; imported names are the file's helpers."""
    found: set[str] = set()

    def visit(statements: list[ast.stmt]) -> None:
        for node in statements:
            targets = (node.targets if isinstance(node, ast.Assign) else
                       [node.target] if isinstance(node, ast.AnnAssign | ast.AugAssign)
                       else [])
            for target in targets:
                found.update(n.id for n in ast.walk(target) if isinstance(n, ast.Name))
            if isinstance(node, _BLOCKS):
                for field_name in ("body", "orelse", "finalbody", "handlers"):
                    visit(getattr(node, field_name, []))
            elif isinstance(node, ast.ExceptHandler):
                visit(node.body)

    visit(ast.parse(source).body)
    return found


def _run(path: str) -> dict[str, Any]:
    if not os.path.isfile(path):
        raise ConfigFileError(f"config file {path!r} not found")
    try:
        return runpy.run_path(path, run_name="__config__")
    except SyntaxError as exc:
        raise ConfigFileError(f"config file {path!r}: {exc.msg} ({failing_line(exc)})"
                              ) from None
    except Exception as exc:
        where = failing_line(exc)
        raise ConfigFileError(f"config file {path!r} failed: {type(exc).__name__}: {exc}"
                              + (f" ({where})" if where else "")) from None


def read_config_file(path: str, settings: Iterable[Any]) -> FileSettings:
    """Run ``path`` and sort its names into settings, hooks and warnings."""
    by_name = {name: s for s in settings for name in s.file_names}
    result = FileSettings(path)
    names = _run(path)
    with open(path, encoding="utf-8") as file:  # it ran, so it parses
        assigned = assigned_names(file.read())
    for name, value in names.items():
        if name.startswith("_"):
            continue
        if name in by_name:
            setting = by_name[name]
            if setting.name in result.values:
                theirs = result.values[setting.name][0]
                raise ConfigFileError(f"{path}: {name!r} and {theirs!r} both set "
                                      f"{setting.name}; keep one")
            result.values[setting.name] = (name, value)
        elif name in HOOKS:
            try:
                result.hooks[name] = check_hook(name, value)
            except ValueError as exc:
                raise ConfigFileError(f"{path}: {name}: {exc}") from None
        elif name in APP_NAMES:
            result.app = value
        elif name in COMMAND_LINE_ONLY:
            result.warnings.append(f"{path}: {name!r} ignored: {COMMAND_LINE_ONLY[name]}")
        elif name in GUNICORN_UNSUPPORTED:
            result.warnings.append(f"{path}: gunicorn setting {name!r} is not supported, "
                                   f"ignored: {GUNICORN_UNSUPPORTED[name]}")
        elif _is_own(value) or name not in assigned:
            close = _closest(name, list(HOOKS)) if callable(value) else None
            if close:  # ``def post_frok(server, worker)`` would never be called
                result.warnings.append(f"{path}: {name!r} is not a hook, ignored (did you "
                                       f"mean {close!r}?)")
        else:
            close = _closest(name, [*by_name, *HOOKS])
            result.warnings.append(f"{path}: unknown setting {name!r} ignored"
                                   + (f" (did you mean {close!r}?)" if close else
                                      " (name helpers _like_this to silence this)"))
    return result


def _closest(name: str, names: list[str]) -> str | None:
    found = difflib.get_close_matches(name, names, n=1, cutoff=0.8)
    return found[0] if found else None
