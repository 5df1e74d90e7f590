"""``python -m server``: parse settings, check the gevent patch, prepare the master, run.

Imported by ``server/__main__.py`` only *after* ``gevent.monkey.patch_all()``.
"""

from __future__ import annotations

import logging
import sys
import threading
from collections.abc import Sequence

import gevent
from gevent import monkey

from .config import ConfigError, fail, gunicorn_table, load_config, markdown_table
from .loader import AppLoadError, load_configured_app
from .logs import AccessLog, configure_logging, open_access_log
from .metrics_dir import metrics_directory

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


def main(argv: Sequence[str] | None = None) -> int:
    try:
        config, args = load_config(argv)
    except ConfigError as exc:
        fail(str(exc))
    if args.print_config_table:
        print(markdown_table())
        return 0
    if args.print_gunicorn_table:
        print(gunicorn_table())
        return 0
    configure_logging(config.log_level, config.log_format)
    verify_patched()
    try:
        stream = open_access_log(config.access_log)
    except OSError as exc:
        fail(f"cannot open access log {config.access_log!r}: {exc.strerror or exc}")
    path = config.access_log if config.access_log not in ("-", "off") else None
    access_log = AccessLog(stream, config.log_format, path)
    if config.unsafe_probe:
        log.warning("--unsafe-probe: the negative-control endpoint /unsafe/probe/<token> is "
                    "mounted; it leaks across requests ON PURPOSE. Never use it in production.")
    # prometheus-client picks its storage when first imported, from the directory's
    # environment variable: it must be set before the arbiter (which imports our metrics)
    # and before a preloaded app (which may import prometheus-client itself).
    with metrics_directory():
        app = None
        if config.preload:
            try:
                app = load_configured_app(config.app, unsafe_probe=config.unsafe_probe)
            except AppLoadError as exc:
                fail(str(exc))
        from .arbiter import Arbiter  # noqa: PLC0415 - after the metrics directory exists

        return Arbiter(config, app, access_log).run()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
