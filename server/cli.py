"""``ctxserver`` / ``python -m server``: parse settings, check the patch, prepare the master, run.

Imported by ``server/__main__.py`` only *after* ``gevent.monkey.patch_all()``.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
from collections.abc import Sequence

import gevent
from gevent import monkey

from .config import Config, ConfigError, fail, load_config
from .config_docs import gunicorn_table, markdown_table, resolved_config
from .loader import AppLoadError, load_configured_app
from .logs import AccessLog, configure_logging, configured_access_log, hand_to_workers
from .metrics_dir import metrics_directory
from .reload import ConfigSources

log = logging.getLogger("server")


def verify_patched() -> None:
    """Fail loudly unless ``threading.local`` is greenlet-local (gevent patched it).

    Libraries that create a ``threading.local`` before patching keep the real, thread-wide
    one — shared by every request in the worker.  That is why the patch must come first.
    """
    if not monkey.is_object_patched("threading", "local"):
        fail("gevent did not patch threading.local; run the server as `python -m server`, "
             "which patches before importing anything else")
    probe = threading.local()
    probe.value = "main"
    seen = gevent.spawn(lambda: getattr(probe, "value", None)).get()
    if seen is not None:
        fail("threading.local is shared between greenlets; the gevent patch did not take")


def _apply_environment(config: Config, sources: ConfigSources) -> None:
    """``--env KEY=VALUE`` and ``--chdir``: before the app is imported (gunicorn's order)."""
    sources.apply_env(config.env)
    if config.chdir:
        os.chdir(config.chdir)
        sys.path.insert(0, config.chdir)  # ``app:module`` is found there, as gunicorn does


def _open_logs(config: Config) -> AccessLog:
    try:
        configure_logging(config.log_level, config.log_format, config.error_log,
                          config.capture_output)
    except OSError as exc:
        fail(f"cannot open error log {config.error_log!r}: {exc.strerror or exc}")
    try:
        return configured_access_log(config.access_log, config.log_format,
                                     config.access_log_format)
    except OSError as exc:
        fail(f"cannot open access log {config.access_log!r}: {exc.strerror or exc}")


def _check_config(config: Config) -> int:
    """--check-config: the config loaded (or we would not be here); now the app."""
    try:
        load_configured_app(config.app, unsafe_probe=config.unsafe_probe)
    except AppLoadError as exc:
        fail(str(exc))
    print(f"config OK: app {config.app or 'reference app'}, config file "
          f"{config.config or 'none'}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    warnings: list[str] = []
    # Kept for HUP, which resolves the settings again from the same sources.
    sources = ConfigSources(sys.argv[1:] if argv is None else argv)
    try:
        config, args = load_config(argv, warn=warnings.append)
    except ConfigError as exc:
        fail(str(exc))
    if args.print_config_table:
        print(markdown_table())
        return 0
    if args.print_gunicorn_table:
        print(gunicorn_table())
        return 0
    if args.print_config:
        print(resolved_config(config))
        return 0
    _apply_environment(config, sources)
    access_log = _open_logs(config)
    for line in warnings:
        log.warning("%s", line)
    if config.access_log_format and config.log_format == "json":
        log.warning("--access-log-format applies to text logs; the JSON access log keeps "
                    "its fields")
    verify_patched()
    if args.check_config:
        return _check_config(config)
    if config.unsafe_probe:
        log.warning("--unsafe-probe: the negative-control endpoint /unsafe/probe/<token> is "
                    "mounted; it leaks across requests ON PURPOSE. Never use it in production.")
    # prometheus-client picks its storage when first imported, from the directory's
    # environment variable: it must be set before the arbiter (which imports our metrics)
    # and before a preloaded app (which may import prometheus-client itself).
    with metrics_directory() as metrics_path:
        hand_to_workers([metrics_path, access_log.path,
                         None if config.error_log == "-" else config.error_log],
                        config.user, config.group)
        app = None
        if config.preload:
            try:
                app = load_configured_app(config.app, unsafe_probe=config.unsafe_probe)
            except AppLoadError as exc:
                fail(str(exc))
        from .arbiter import Arbiter  # noqa: PLC0415 - after the metrics directory exists

        return Arbiter(config, app, access_log, sources).run()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
