"""``python -m bench [name|all]``: run one benchmark, or all of them (the default) but
those in :data:`ON_DEMAND`.

A plain dispatch table, so that adding a benchmark is one import and one entry: each entry
takes the command line that ran it (recorded in its results file) and returns an exit code.
"""

from __future__ import annotations

import argparse
import contextlib
import shlex
import sys
from collections.abc import Callable
from pathlib import Path

from bench import arena, ceiling, compiled, local, profile, server, supervision, tls

BENCHMARKS: dict[str, Callable[[str], int]] = {
    "local": local.main,
    "arena": arena.main,
    "server": server.main,
    "supervision": supervision.main,
    "ceiling": lambda command: ceiling.main([], command),
    "profile": lambda command: profile.main([], command),
    "tls": tls.main,
    "compiled": lambda command: compiled.main(command, ["--wrk", "3"]),
}
#: Run only when named: a decision already taken and recorded (bench/results/compiled.md);
#: it builds two Cython trees and needs valgrind, some ten minutes that change no table.
ON_DEMAND = frozenset({"compiled"})


def _command_line(argv: list[str]) -> str:
    """How this run was started, for the results file: ``.venv/bin/python -m bench ...``."""
    python = Path(sys.executable)
    with contextlib.suppress(ValueError):  # not under the working directory: keep it whole
        python = python.relative_to(Path.cwd())
    return shlex.join([str(python), "-m", "bench", *argv])


def main(argv: list[str] | None = None) -> int:
    """Parse the command line and run the chosen benchmarks in table order."""
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description="Run one benchmark, or all of them (the default); each writes "
                    "bench/results/<name>.md.")
    parser.add_argument("benchmark", nargs="?", default="all",
                        choices=[*BENCHMARKS, "all"],
                        help="which benchmark to run (default: all)")
    args, extra = parser.parse_known_args(argv)
    names = ([name for name in BENCHMARKS if name not in ON_DEMAND]
             if args.benchmark == "all" else [args.benchmark])
    command = _command_line(argv)
    if extra and names != ["server"]:
        parser.error(f"options {' '.join(extra)} are for `python -m bench server` only")
    status = 0
    for name in names:
        if extra:  # e.g. `make bench ARGS="server --duration 2 --runs 1"`
            status = server.main(command, extra) or status
        else:
            status = BENCHMARKS[name](command) or status
    return status


if __name__ == "__main__":
    sys.exit(main())
