"""The server in its Docker image, measured next to the same server on the host.

``make bench-docker`` (``scripts/bench-docker.sh``) builds the image as ``make test-docker``
does, derives the bench-only image ``ctxserver:bench`` from it (``bench/container/Dockerfile``:
gunicorn and ``bench/apps.py`` added, the runtime image itself untouched), then runs
``python -m bench.container``: hello and the probe endpoint, one worker pinned to core 0 and
wrk pinned to core 1 as in ``python -m bench.server``, for ours, ours with the accelerators
off and gunicorn -k gevent, on the host and in the container, in alternating rounds. Results:
``bench/results/docker.md`` and ``docker.json``.

One job per module: ``commands`` (what is compared and each command line), ``report``
(medians, ratios, the results files), ``run`` (the rounds).
"""

from __future__ import annotations

from bench.container.run import build_parser, main

__all__ = ["build_parser", "main"]
