"""Deliberately broken copies of the server: the bugs the leak harness must catch by itself.

Each :class:`Plant` is a textual edit of one or more source files, applied to a *temporary
copy* of the packages (:func:`planted_copy`) — never to the checkout, and with no switch in
the product that could turn a bug on.  ``tests/test_detector.py`` runs a short harness
(``python -m loadtests.run``) against each copy and asserts that it fails, and how
(:attr:`Plant.caught_by`); the README's planted-bug table is :func:`render_table` of
:data:`PLANTS`, checked by the same tests.

An edit names the exact text it replaces, which must occur once: when the code moves on, the
plant fails loudly instead of silently planting nothing.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

__all__ = ["CAUGHT_BY", "PACKAGES", "PLANTS", "Plant", "planted_copy", "render_table"]

PACKAGES = ("server", "ctxlocal", "loadtests")
"""What a planted copy holds: everything ``python -m loadtests.run`` and the server import."""

CAUGHT_BY = {
    "leaks": "probes saw another request's values (LEAK)",
    "failures": "answers broken or missing (non-leak failures)",
    "metrics": "/metrics: values of ended requests still live after the load",
}
"""How a run shows a plant, in the words of the README table."""


@dataclass(frozen=True)
class Plant:
    """One bug: ``edits`` are ``(file, old text, new text)`` in the repository."""

    name: str
    bug: str
    edits: tuple[tuple[str, str, str], ...]
    caught_by: str  # a key of CAUGHT_BY: what a short harness run must show

    def apply(self, root: Path) -> None:
        for file, old, new in self.edits:
            path = root / file
            text = path.read_text()
            count = text.count(old)
            if count != 1:
                raise AssertionError(f"plant {self.name}: {old!r} occurs {count} times in {file}")
            path.write_text(text.replace(old, new))


_WATCH = ("ctxlocal/ident.py", "weakref.ref(context, _on_collected(key))", "weakref.ref(context)")
_RAWLINK = ("ctxlocal/ident.py", """        rawlink = getattr(context, "rawlink", None)
        if rawlink is not None:
            rawlink(_on_finished)""", "        pass")

PLANTS: tuple[Plant, ...] = (
    Plant("connection-greenlet", "each request handled in its connection's greenlet (as "
          "pywsgi and gunicorn do), not a fresh one",
          (("server/handler.py", "                request_greenlet.switch(request, response)",
            "                self._handle(request, response)"),), "leaks"),
    Plant("no-release", "end-of-request `release_context()` skipped",
          (("server/context.py", """    try:
        context.pop()
    finally:
        ctxlocal.release_context()""", "    context.pop()"),), "metrics"),
    Plant("no-weakref-cleanup", "the weakref cleanup of `ctxlocal/ident.py` dropped "
          "(`rawlink` kept)", (_WATCH,), "metrics"),
    Plant("no-cleanup-at-all", "the weakref cleanup and `rawlink` both dropped",
          (_WATCH, _RAWLINK), "metrics"),
    Plant("shared-child-context", "children share the parent's context objects instead "
          "of copies (`ctxlocal/propagate.py`)",
          (("ctxlocal/propagate.py",
            "copied = None if namespace is None else copy_namespace(namespace, is_stack)",
            "copied = namespace or None"),
           ("ctxlocal/propagate.py",
            "                for name, value in fresh_namespace(namespace, is_stack).items():\n"
            "                    setattr(local, name, value)",
            "                type(local).__storage__[local.__ident_func__()] = namespace"),),
          "leaks"),
    Plant("shared-environ", "one base environ dict shared by the requests, not copied",
          (("server/http/environ.py", "    environ = base.copy()\n",
            "    environ = base\n"),), "leaks"),
    Plant("hole-1-late-write", "hole 1: `write()` accepted after the response ended",
          (("server/http/response.py", """        if self._request.ended:
            raise refused_after_end(self._request, "write()")
""", ""),), "leaks"),
    Plant("hole-2-base-exception", "hole 2: only `Exception` caught from the app "
          "(`GreenletExit` passes for a return)",
          (("server/handler.py",
            "        except BaseException:  # the app's, whatever it is: this request alone fails",
            "        except (Exception, gevent.Timeout):"),), "leaks"),
    Plant("hole-3-header-list", "hole 3: `X-Request-ID` appended to the app's own header list",
          (("server/context.py", '    return [*headers, ("X-Request-ID", rid)]',
            '    headers.append(("X-Request-ID", rid))\n    return headers'),), "leaks"),
    Plant("hole-4-threadpool", "hole 4: gevent's plain threadpool (tasks share their "
          "thread's greenlet)",
          (("server/worker.py", "        install_threadpool()  # before",
            "        pass  # before"),), "leaks"),
)


def planted_copy(plant: Plant, repo: Path, into: Path) -> Path:
    """A copy of the packages under ``into`` with ``plant`` applied; returns its root."""
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for package in PACKAGES:
        shutil.copytree(repo / package, into / package, ignore=ignore)
    plant.apply(into)
    return into


def render_table() -> str:
    """The README's planted-bug table (Markdown)."""
    rows = ["| planted bug | short harness run (`tests/test_detector.py`) | caught by |",
            "|---|---|---|"]
    rows += [f"| {p.bug} | FAIL | {CAUGHT_BY[p.caught_by]} |" for p in PLANTS]
    return "\n".join(rows)
