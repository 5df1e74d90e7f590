"""The optional C accelerator: used exactly when it is built and not turned off.

Every other ctxlocal test runs on whichever path is active; ``make test`` builds the
accelerator (``make speedups``) and then runs them once more with CTXLOCAL_PURE_PYTHON=1, so
both paths pass the same suite.  What the C path could get wrong on its own is pinned here.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

import ctxlocal
import ctxlocal.local
from ctxlocal import Local, LocalManager, get_ident, release_local

BUILT = any(Path(ctxlocal.__file__).parent.glob("_speedups*.so"))
PURE_REQUESTED = bool(os.environ.get("CTXLOCAL_PURE_PYTHON"))


def test_the_accelerator_is_used_exactly_when_built_and_not_turned_off() -> None:
    assert ctxlocal.local.ACCELERATED is (BUILT and not PURE_REQUESTED)


# The rest holds on both paths; written for the C one, whose slots could get these wrong.


def test_object_setattr_still_switches_the_ident() -> None:
    """werkzeug 1.x's LocalManager assigns ``__ident_func__`` through
    ``object.__setattr__``; a C-level tp_setattro would make CPython refuse that call."""
    loc = Local()
    object.__setattr__(loc, "__ident_func__", lambda: "custom")
    loc.value = 1
    assert loc.__storage__ == {"custom": {"value": 1}}
    loc.__ident_func__ = get_ident  # back to the context identity, and to the C path
    loc.value = 2
    assert loc.__storage__[get_ident()] == {"value": 2}
    release_local(loc)
    loc.__storage__.clear()


def test_the_c_path_refuses_reserved_names_and_reports_missing_ones() -> None:
    loc = Local()
    with pytest.raises(AttributeError, match="machinery"):
        loc.__storage__ = {}
    with pytest.raises(AttributeError):
        loc.missing
    with pytest.raises(AttributeError):
        del loc.missing
    loc.present = 1
    del loc.present
    assert not hasattr(loc, "present")
    release_local(loc)


def test_subclass_methods_and_manager_work_on_the_c_path() -> None:
    class Session(Local):
        __slots__ = ()

        def describe(self) -> str:
            return f"user={getattr(self, 'user', None)}"

    session = Session()
    session.user = "alice"
    assert session.describe() == "user=alice"
    LocalManager([session]).cleanup()
    assert session.describe() == "user=None"
