"""The ``ctxserver`` console script: patch with gevent first, then run the CLI.

``pyproject.toml`` points the script here. The script's own wrapper imports only ``sys``
and ``re`` before this module; ``server/__init__.py`` imports nothing — so the patch still
comes before anything that would keep an unpatched ``threading.local``.
"""

from gevent import monkey

monkey.patch_all()

import sys  # noqa: E402 - after the patch, on purpose

__all__ = ["run"]


def run() -> None:
    from server.cli import main  # noqa: PLC0415 - the patch above must come first

    sys.exit(main())
