"""Benchmarks: ``python -m bench [name|all]`` (``make bench`` runs them all).

Each benchmark measures ctxlocal or the server side by side with what it is compared to,
in one process and one run (the machines are noisy; only ratios from the same run mean
anything), and writes a Markdown table to ``bench/results/<name>.md``.
"""
