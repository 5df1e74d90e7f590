"""The request corpus: ``tests/requests/{invalid,valid}/*.http`` and their expected outcomes.

Hostile and edge-case requests are data, written once: each ``.http`` file is the exact bytes
of one request, and one table per directory (``invalid/outcomes.toml``,
``valid/environ.toml``) says what the server must do with it. Every layer that can answer
a request runs the whole corpus with one short parametrized test — the in-process handler
(``tests/test_http_protocol.py``), a real server (``tests/test_server_limits.py``) and the
reliability report (``tests/reliability/hostile.py``) — so a new case is one new file and
one table entry, and no layer can quietly skip it.

The model is gunicorn's ``tests/requests/{valid,invalid}/``.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["INVALID", "LIMITS", "SERVER_FLAGS", "VALID", "Invalid", "Valid", "valid"]

DIRECTORY = Path(__file__).resolve().parent / "requests"

LIMITS = {"max_request_line": 1024, "max_header_size": 4096, "max_header_count": 20,
          "max_body_size": 100_000}
"""The limits every layer runs the corpus with (the limits cases are written against them)."""

SERVER_FLAGS = tuple(part for name, value in LIMITS.items()
                     for part in (f"--{name.replace('_', '-')}", str(value)))
""":data:`LIMITS` as ``python -m server`` flags."""

TAG = b"{tag}"
SMUGGLED_TARGET = b"/hostile/mark/" + TAG
"""What a smuggled request asks for: ``tests/apps/hostile.py`` counts hits per tag, so a
caller that fills in a fresh tag can prove the hidden request never ran."""


@dataclass(frozen=True)
class Request:
    """One ``.http`` file and what its table says about it."""

    id: str  # the file's stem, e.g. "026-chunk-size-not-hex"
    template: bytes
    smuggled: bool
    reliability: str | None
    note: str

    def raw(self, tag: str = "corpus") -> bytes:
        """The request's bytes, the smuggled request's tag filled in."""
        return self.template.replace(TAG, tag.encode("ascii"))

    @property
    def path(self) -> str:
        """The path of the request line's target (what the app would see first)."""
        parts = self.template.split(b"\r\n", 1)[0].split(b" ")
        target = parts[1] if len(parts) > 1 else b""
        return target.split(b"?", 1)[0].decode("latin-1")


@dataclass(frozen=True)
class Invalid(Request):
    """A request that must be refused: one error response, ``Connection: close``, closed."""

    status: tuple[int, ...] = ()
    reaches_app: bool = False  # a body error: the app meets it in wsgi.input


@dataclass(frozen=True)
class Valid(Request):
    """A request that must reach the app with ``environ`` as given, and be answered."""

    environ: dict[str, str] = field(default_factory=dict)
    absent: tuple[str, ...] = ()
    body: bytes = b""
    closes: bool = False


_COMMON = {"smuggled", "reliability", "note"}
_FIELDS = {Invalid: _COMMON | {"status", "reaches_app"},
           Valid: _COMMON | {"environ", "absent", "body", "closes"}}


def _convert(kind: type[Request], entry: dict[str, Any]) -> dict[str, Any]:
    if kind is Invalid:
        return {"status": tuple(entry["status"]), "reaches_app": entry.get("reaches_app", False)}
    return {"environ": dict(entry.get("environ", {})), "absent": tuple(entry.get("absent", ())),
            "body": entry.get("body", "").encode("latin-1"), "closes": entry.get("closes", False)}


def load(subdir: str, table: str, kind: type[Request]) -> list[Request]:
    """Every request of ``subdir`` in file order, checked against its table both ways: a file
    without an entry, an entry without a file or an unknown field is an error, not a skip."""
    directory = DIRECTORY / subdir
    entries = tomllib.loads((directory / table).read_text(encoding="utf-8"))
    files = {path.stem: path for path in sorted(directory.glob("*.http"))}
    if set(files) != set(entries):
        raise ValueError(f"{directory}: files without an entry {sorted(set(files) - set(entries))}"
                         f", entries without a file {sorted(set(entries) - set(files))}")
    requests = []
    for stem, path in files.items():
        entry = entries[stem]
        unknown = set(entry) - _FIELDS[kind]
        if unknown:
            raise ValueError(f"{table} [{stem}]: unknown field(s) {sorted(unknown)}")
        template = path.read_bytes()
        smuggled = entry.get("smuggled", False)
        if smuggled != (SMUGGLED_TARGET in template):
            raise ValueError(f"{stem}: 'smuggled' must be set exactly when the bytes ask for "
                             f"{SMUGGLED_TARGET.decode()}")
        requests.append(kind(id=stem, template=template, smuggled=smuggled,
                             reliability=entry.get("reliability"), note=entry.get("note", ""),
                             **_convert(kind, entry)))
    return requests


INVALID: list[Invalid] = load("invalid", "outcomes.toml", Invalid)  # type: ignore[assignment]
VALID: list[Valid] = load("valid", "environ.toml", Valid)  # type: ignore[assignment]


def valid(stem_prefix: str) -> Valid:
    """The valid request whose id starts with ``stem_prefix`` (e.g. ``"012"``)."""
    [found] = [r for r in VALID if r.id.startswith(stem_prefix)]
    return found
