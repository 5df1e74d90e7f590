"""Would a Cython-compiled request path pay?  The hot modules compiled, measured against the .py.

``python -m bench compiled`` (or ``python -m bench.compiled [options]``) copies
``server/``, ``ctxlocal/``, ``bench/`` and ``loadtests/`` into temporary trees, compiles the
hot modules there with Cython 3 in pure-Python mode -- the .py files are the source; the
extension built next to each .py shadows it on import -- and runs the worker's request path
against each tree and against this checkout ("pure"), for hello and probe:

* ``plain``: the modules compiled as they are (Python semantics: ``annotation_typing``
  off, so a ``float`` hint does not become a C double nor a ``dict`` hint refuse a subclass);
* ``cdef``: the same plus a generated ``.pxd`` per module that declares each of its plain
  classes a ``cdef class`` with every attribute it assigns (``cdef public object``) --
  attribute access by struct offset instead of a dictionary or slot-descriptor look-up,
  the one thing Cython adds when the code is left untyped.  (Its ``__slots__`` are
  dropped in the copy: a cdef class has fixed fields already.)

Measured, per tree:

* instructions per request under callgrind (load-independent, the primary number on a
  shared machine): ``(Collected(base + 1000) - Collected(base)) / 1000``, as
  bench/hotpath.py says; two valgrind runs at a time;
* µs per request (:mod:`bench.hotpath`, best of rounds, pinned to core 0, the trees
  alternating);
* with ``--wrk``: req/s of ``python -m server --workers 1`` pinned to core 0 under
  ``wrk -t1 -c50`` on core 1 (2 s warm-up, 5 s timed), the trees alternating, medians.

Nothing is installed or kept (unless ``--build-dir``).  Needs Cython (requirements-dev.txt)
and a C compiler; valgrind for the instruction counts, wrk for ``--wrk``.  Writes
``bench/results/compiled.md``.
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import datetime
import fcntl
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from bench.server.matrix import APPS as SERVER_APPS
from bench.server.wrk import parse_wrk, run_wrk, wrk_command
from loadtests import procs

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results" / "compiled.md"
#: The modules every request runs through (bench/results/profile.md), by path.
HOT_MODULES = (
    "server/http/parser.py", "server/http/request.py", "server/http/response.py",
    "server/http/environ.py", "server/http/connection.py", "server/http/transport.py",
    "server/http/headers.py", "server/http/framing.py", "server/handler.py",
    "server/context.py", "server/worker.py", "server/liveness.py",
)
#: Cython directives that keep Python semantics (see the module docstring).
DIRECTIVES = {"language_level": 3, "annotation_typing": False, "binding": True}
#: Classes left plain in the ``cdef`` variant: ``g`` is an attribute bag (it needs a __dict__).
KEEP_PLAIN = {"Namespace"}
ENDPOINTS = ("hello", "probe")
COPIED = ("server", "ctxlocal", "bench", "loadtests")
VARIANTS = ("pure", "plain", "cdef")
#: Where the results file's hand-written part begins: a new run rewrites what is above it.
FINDINGS = "## Findings and decision"


def cdef_pxd(path: Path) -> None:
    """Write ``path``'s .pxd declaring its base-less classes cdef classes; drop their
    ``__slots__`` from the copy."""
    source = path.read_text()
    lines = source.splitlines(keepends=True)
    declared, slot_lines = [], []
    for node in ast.parse(source).body:
        if (not isinstance(node, ast.ClassDef) or node.bases or node.decorator_list
                or node.name in KEEP_PLAIN):
            continue
        names: set[str] = set()
        for item in ast.walk(node):
            if isinstance(item, ast.Assign) and any(
                    isinstance(t, ast.Name) and t.id == "__slots__" for t in item.targets):
                names.update(e.value for e in getattr(item.value, "elts", []))
                slot_lines.append((item.lineno, item.end_lineno))
            targets = (item.targets if isinstance(item, ast.Assign) else
                       [item.target] if isinstance(item, ast.AnnAssign | ast.AugAssign) else [])
            names.update(t.attr for target in targets for t in ast.walk(target)
                         if isinstance(t, ast.Attribute) and isinstance(t.value, ast.Name)
                         and t.value.id == "self")
        declared.append(f"cdef class {node.name}:\n"
                        + (f"    cdef public object {', '.join(sorted(names))}\n" if names else "")
                        + "    cdef object __weakref__\n")
    if not declared:
        return
    for first, last in sorted(slot_lines, reverse=True):  # same line count: tracebacks agree
        indent = lines[first - 1][: len(lines[first - 1]) - len(lines[first - 1].lstrip())]
        lines[first - 1 : last] = [f"{indent}pass\n"] * (last - first + 1)
    path.write_text("".join(lines))
    path.with_suffix(".pxd").write_text("".join(declared))


def build(dest: Path, modules: tuple[str, ...], *, cdef: bool) -> float:
    """Copy the packages to ``dest`` and compile ``modules`` there; seconds the build took."""
    for name in COPIED:
        shutil.copytree(ROOT / name, dest / name,
                        ignore=shutil.ignore_patterns("__pycache__", "results"))
    if cdef:
        for module in modules:
            cdef_pxd(dest / module)
    script = (
        "from setuptools import setup\n"
        "from Cython.Build import cythonize\n"
        f"setup(ext_modules=cythonize({list(modules)!r}, quiet=True,"
        f" compiler_directives={DIRECTIVES!r}),"
        " script_args=['build_ext', '--inplace', '-q'])\n"
    )
    started = datetime.datetime.now(datetime.UTC)
    subprocess.run([sys.executable, "-c", script], cwd=dest, check=True,
                   stdout=subprocess.DEVNULL)
    missing = [m for m in modules if not list((dest / m).parent.glob(Path(m).stem + ".*.so"))]
    if missing:
        raise SystemExit(f"not compiled: {', '.join(missing)}")
    return (datetime.datetime.now(datetime.UTC) - started).total_seconds()


def _hotpath(tree: Path, app: str, requests: int, rounds: int, *, callgrind: bool) -> str:
    cmd = [sys.executable, "-m", "bench.hotpath", "--app", app,
           "--requests", str(requests), "--rounds", str(rounds)]
    cmd = (["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null", *cmd]
           if callgrind else ["taskset", "-c", "0", *cmd])
    done = subprocess.run(cmd, cwd=tree, capture_output=True, text=True, check=True,
                          env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"})
    return done.stdout + done.stderr


def _collected(tree: Path, app: str, requests: int) -> int:
    out = _hotpath(tree, app, requests, 1, callgrind=True)
    return int(re.search(r"Collected : (\d+)", out).group(1))


def instructions(trees: dict[str, Path], base: int) -> dict[tuple[str, str], float]:
    """Instructions per request of every tree and endpoint, two valgrind runs at a time."""
    jobs = [(name, app, n) for app in ENDPOINTS for name in trees for n in (base, base + 1000)]
    with ThreadPoolExecutor(2) as pool:
        counts = dict(zip(jobs, pool.map(lambda j: _collected(trees[j[0]], j[1], j[2]), jobs),
                          strict=True))
    return {(name, app): (counts[name, app, base + 1000] - counts[name, app, base]) / 1000
            for app in ENDPOINTS for name in trees}


def microseconds(tree: Path, app: str, requests: int, rounds: int) -> float:
    out = _hotpath(tree, app, requests, rounds, callgrind=False)
    return float(re.search(r": ([\d.]+) us/request", out).group(1))


def wrk_rate(tree: Path, app: str, seconds: float) -> float:
    """req/s of one worker of ``tree`` pinned to core 0, wrk -c50 on core 1."""
    port = procs.free_port()
    server = subprocess.Popen(
        ["taskset", "-c", "0", sys.executable, "-m", "server", "--workers", "1", "--bind",
         f"127.0.0.1:{port}", "--access-log", "off", "--log-level", "warning",
         SERVER_APPS[app]], cwd=tree, start_new_session=True,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        procs.wait_healthy(f"http://127.0.0.1:{port}/healthz", server)
        run_wrk(wrk_command(app, port, 50, 2, 1), 2)
        return parse_wrk(run_wrk(wrk_command(app, port, 50, seconds, 1), seconds)).requests_per_sec
    finally:
        procs.stop_process_group(server, 5.0)


def proof(tree: Path) -> str:
    """The files ``server.http.parser`` and ``server.handler`` really are in ``tree``."""
    code = ("import pathlib, server.http.parser as p, server.handler as h;"
            " print(pathlib.Path(p.__file__).name, pathlib.Path(h.__file__).name)")
    return subprocess.run([sys.executable, "-c", code], cwd=tree, capture_output=True,
                          text=True, check=True).stdout.strip()


@contextlib.contextmanager
def _held(path: Path | None) -> Iterator[None]:
    """``flock`` on ``path`` held for the block (not inherited: Python's fds are CLOEXEC)."""
    if path is None:
        yield
        return
    with path.open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def _alternate(trees: dict[str, Path], runs: int, measure) -> dict[tuple[str, str], list[float]]:
    """``measure(tree, app)`` ``runs`` times per tree and endpoint, the order rotating."""
    got: dict[tuple[str, str], list[float]] = {}
    names = list(trees)
    for app in ENDPOINTS:
        for turn in range(runs):
            for name in names[turn % len(names):] + names[: turn % len(names)]:
                value = measure(trees[name], app)
                got.setdefault((name, app), []).append(value)
                print(f"{app} {name}: {value:,.1f}", flush=True)
    return got


def main(command: str = "python -m bench compiled", argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--modules", nargs="*", default=list(HOT_MODULES))
    parser.add_argument("--variants", nargs="*", default=list(VARIANTS), choices=VARIANTS)
    parser.add_argument("--requests", type=int, default=10000, help="per µs round")
    parser.add_argument("--rounds", type=int, default=3, help="µs: best of this many")
    parser.add_argument("--alternations", type=int, default=3, help="µs runs per tree")
    parser.add_argument("--base", type=int, default=300, help="callgrind's smaller run")
    parser.add_argument("--no-callgrind", action="store_true")
    parser.add_argument("--wrk", type=int, default=0, metavar="ROUNDS",
                        help="wrk rounds per tree and endpoint (default: none)")
    parser.add_argument("--lock", type=Path,
                        help="hold this flock(2) file while timing (a shared machine's lock)")
    parser.add_argument("--no-write", action="store_true")
    parser.add_argument("--build-dir", type=Path,
                        help="build the trees under it and keep them (reused when built)")
    args = parser.parse_args(argv)
    if not args.no_callgrind and shutil.which("valgrind") is None:
        raise SystemExit("bench compiled: valgrind is not installed (apt-get install valgrind), "
                         "or pass --no-callgrind")
    with tempfile.TemporaryDirectory(prefix="ctxserver-compiled-") as tmp:
        base_dir = args.build_dir or Path(tmp)
        trees, seconds = {}, {}
        for name in args.variants:
            trees[name] = ROOT if name == "pure" else base_dir / name
            if name != "pure" and not (trees[name] / "server").exists():
                seconds[name] = build(trees[name], tuple(args.modules), cdef=name == "cdef")
        files = {name: proof(tree) for name, tree in trees.items()}
        print(f"built {seconds} s; imported {files}", flush=True)
        ins = {} if args.no_callgrind else instructions(trees, args.base)
        for key, value in ins.items():
            print(f"{key}: {value:,.0f} instructions/request", flush=True)
        with _held(args.lock):  # the timed part only: callgrind counts do not mind load
            us = _alternate(trees, args.alternations,
                            lambda tree, app: microseconds(tree, app, args.requests, args.rounds))
            rates = _alternate(trees, args.wrk, lambda tree, app: wrk_rate(tree, app, 5))
    text = _report(command, args, seconds, files, ins, us, rates)
    print(text)
    if not args.no_write:
        write_results(RESULTS, text)
    return 0


def write_results(path: Path, tables: str) -> None:
    """Write the measured tables to ``path``, keeping its hand-written part (FINDINGS on)."""
    kept = "".join(path.read_text().partition(FINDINGS)[1:]) if path.exists() else ""
    path.write_text(tables.rstrip("\n") + "\n" + (f"\n{kept}" if kept else ""))


def _change(before: float, after: float) -> str:
    return f"{(after - before) / before * 100:+.1f} %"


def _table(title: str, names: list[str], cell, base) -> list[str]:
    lines = [title, "", "| endpoint | " + " | ".join(names) + " |",
             "|---|" + "---:|" * len(names)]
    for app in ENDPOINTS:
        cells = [cell(name, app) + ("" if name == "pure" or base(name, app) is None
                                    else f" ({_change(base('pure', app), base(name, app))})")
                 for name in names]
        lines.append(f"| {app} | " + " | ".join(cells) + " |")
    return [*lines, ""]


def _report(command, args, seconds, files, ins, us, rates) -> str:
    import Cython  # noqa: PLC0415 - only here, where it is certainly installed

    names = list(args.variants)
    lines = [
        "# A Cython-compiled request path vs the pure-Python one (bench.compiled)",
        "",
        f"- command: `{command}`",
        f"- date: {datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC; "
        f"Python {platform.python_version()}, Cython {Cython.__version__}, "
        f"{platform.machine()}, {os.cpu_count()} cores",
        "- compiled: " + ", ".join(f"`{m}`" for m in args.modules),
        f"- directives: `{DIRECTIVES}`; build seconds: {seconds}",
        f"- what `import server.http.parser, server.handler` loads per tree: {files}",
        "",
    ]
    if ins:
        lines += _table(f"## Instructions per request (callgrind; Collected({args.base + 1000})"
                        f" - Collected({args.base})) / 1000", names,
                        lambda n, a: f"{ins[n, a]:,.0f}", lambda n, a: ins[n, a])
    lines += _table(f"## µs per request (bench.hotpath, core 0; best of {args.rounds} x "
                    f"{args.requests}; best of {args.alternations} alternating runs)", names,
                    lambda n, a: f"{min(us[n, a]):.1f}", lambda n, a: min(us[n, a]))
    lines += [f"every run: {us}", ""]
    if rates:
        lines += _table(f"## wrk -t1 -c50, one worker on core 0, wrk on core 1 (median of "
                        f"{args.wrk} alternating rounds, req/s)", names,
                        lambda n, a: f"{statistics.median(rates[n, a]):,.0f}",
                        lambda n, a: statistics.median(rates[n, a]))
        lines += [f"every run: { {k: [round(v) for v in vs] for k, vs in rates.items()} }", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main(" ".join(["python -m bench.compiled", *sys.argv[1:]])))
