"""Load tests that prove no request ever sees another request's context.

``probe_check`` judges one response, ``summary`` turns counts into a pass/fail decision and
its printout (both pure, no locust), ``verdict`` reads locust's statistics at the end of a
run and sets its exit code, ``locustfile`` drives the probe variants of
``docs/probe-contract.md`` and ``run`` is the ``make loadtest`` entry point.  The package
speaks only HTTP to the server; it imports nothing from ``server`` or ``ctxlocal``.
"""
