"""The settings as documents: the README's options and "coming from gunicorn" tables
(``--print-config-table``, ``--print-gunicorn-table``) and ``--print-config``'s resolved
settings, all made from :data:`~server.config.SETTINGS`."""

from __future__ import annotations

from .config import SETTINGS, Config, Setting, shown_default

__all__ = ["GUNICORN_ONLY", "gunicorn_table", "markdown_table", "reload_table",
           "resolved_config"]


def _usage(setting: Setting) -> str:
    """``--flag METAVAR`` as a Markdown table cell (a ``|`` would end the cell)."""
    flag = f"{setting.short}, {setting.flag}" if setting.short else setting.flag
    usage = flag if setting.is_flag else f"{flag} {setting.metavar}"
    return usage.replace("|", "\\|")


def _names(setting: Setting) -> str:
    """The config-file names as a table cell."""
    return ", ".join(f"`{name}`" for name in setting.file_names) or "—"


def markdown_table() -> str:
    """The settings table for the README: flag, environment variable, default, meaning."""
    lines = ["| flag | environment | config file | default | meaning |",
             "|---|---|---|---|---|",
             "| `APP` (positional) | `SERVER_APP` | `app`, `wsgi_app` | reference app | WSGI "
             "app as `module:attr` or `module:factory()` |"]
    for s in SETTINGS:
        lines.append(f"| `{_usage(s)}` | `{s.env}` | {_names(s)} | `{shown_default(s)}` | "
                     f"{s.help} |")
    return "\n".join(lines)


#: gunicorn options we have no setting for, and what happens instead.
GUNICORN_ONLY: tuple[tuple[str, str], ...] = (
    ("-D, --daemon", "not supported: run it under systemd, a container or supervisord"),
    ("--reload", "not supported: send HUP to load new code into new workers"),
    ("--threads", "not supported: gevent greenlets instead of threads"),
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


def reload_table() -> str:
    """The README's table of the settings a HUP cannot change (their ``restart`` reason)."""
    lines = ["| setting | config file | why a HUP keeps its running value |", "|---|---|---|"]
    for s in SETTINGS:
        if s.restart:
            lines.append(f"| `{s.flag}` | {_names(s)} | {s.restart} |")
    return "\n".join(lines)


def resolved_config(config: Config) -> str:
    """``--print-config``: every resolved setting as ``name = value`` — itself a valid
    config file (the hooks, which are code, are listed in a comment)."""
    lines = [f"# resolved settings (config file: {config.config or 'none'})",
             f"app = {config.app!r}"]
    for setting in SETTINGS:
        if setting.in_file:
            value = getattr(config, setting.name)
            shown = f"{setting.name} = {list(value) if isinstance(value, tuple) else value!r}"
            lines.append(f"# {shown}  (default)" if value == setting.default else shown)
    hooks = ", ".join(config.hooks) or "none"
    lines.append(f"# hooks: {hooks}")
    return "\n".join(lines)
