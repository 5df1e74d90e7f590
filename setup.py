"""Builds the optional C accelerator ctxlocal._speedups (``make speedups``).

Everything else about the project is in pyproject.toml.  ``optional=True``: without a C
compiler or Python headers the build is skipped and ctxlocal runs its pure-Python path.
"""

from setuptools import Extension, setup

setup(ext_modules=[Extension("ctxlocal._speedups", ["ctxlocal/_speedups.c"], optional=True)])
