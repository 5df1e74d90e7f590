"""Builds the optional C accelerators (``make speedups``): ctxlocal._speedups, and
server._arena (the cache of greenlet frame-stack chunks, see server/accelerators.py).

Everything else about the project is in pyproject.toml.  ``optional=True``: without a C
compiler or Python headers a build is skipped and that module runs its pure-Python path.
"""

from setuptools import Extension, setup

setup(ext_modules=[
    Extension("ctxlocal._speedups", ["ctxlocal/_speedups.c"], optional=True),
    Extension("server._arena", ["server/_arena.c"], optional=True),
])
