"""Run gunicorn's own request-parsing corpus (``tests/requests/{valid,invalid}``) against our
HTTP layer and print how many cases pass. On demand only (it needs gunicorn's sdist; CI has no
network but the package index): ``.venv/bin/python scripts/gunicorn_corpus.py [DIR]``.

DIR is gunicorn's ``tests/requests``; without it the gunicorn 27.0.1 sdist is fetched with
``pip download`` into a temporary directory. Each case's ``.http`` bytes are decoded as
gunicorn's ``tests/treq.py`` does and sent in one piece over a real socket to our
``ConnectionHandler`` (in this process, on 127.0.0.1). Applicable cases are those that run
with gunicorn's default configuration (and its request-line limit) -- a case whose ``.py``
calls ``cfg.set`` tests an opt-in leniency or an option we do not have -- plus the PROXY
protocol ones, which we run with ``--proxy-protocol auto``.

* valid: passes when the app is called once per expected request with its method, path,
  query and body, and every response is a 200;
* invalid: passes when no request reaches the app with a 2xx answer (an error status, or
  the connection closed unanswered).
"""

from __future__ import annotations

import argparse
import importlib.machinery
import socket
import subprocess
import sys
import tempfile
import types
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import gevent  # noqa: E402  (after the path: the server package is imported from ROOT)
import gevent.socket  # noqa: E402
from gevent.pool import Pool  # noqa: E402
from gevent.server import StreamServer  # noqa: E402

from loadtests.procs import ResponseReader  # noqa: E402
from server.handler import ConnectionHandler  # noqa: E402
from server.http import Limits  # noqa: E402
from server.http.forwarded import TrustedPeers  # noqa: E402

GUNICORN = "gunicorn==27.0.1"
#: Our defaults, but gunicorn's --limit-request-line (4094; ours is 8190), which its limit
#: cases are written against; its per-field limit has no equivalent (ours is per block).
LIMITS = Limits(max_request_line=4094, header_timeout=2.0, keep_alive=1.0)


def decode(raw: bytes) -> bytes:
    """gunicorn's treq.request: newlines dropped, then its escapes (CRLF, NUL, \\xHH...)."""
    data = raw.replace(b"\n", b"").replace(b"\\r\\n", b"\r\n")
    data = data.replace(b"\\0", b"\000").replace(b"\\n", b"\n").replace(b"\\t", b"\t")
    out = bytearray()
    i = 0
    while i < len(data):
        if data[i : i + 2] == b"\\x" and i + 3 < len(data):
            try:
                out.append(int(data[i + 2 : i + 4], 16))
                i += 4
                continue
            except ValueError:
                pass
        out.append(data[i])
        i += 1
    return bytes(out)


def expectation(py: Path) -> tuple[Any, bool]:
    """The case's ``request`` (a dict, a list of them, or an exception class) and whether
    the case needs the PROXY protocol; raises LookupError for an inapplicable case."""
    source = py.read_text()
    sets = [line for line in source.splitlines() if "cfg.set(" in line]
    proxy = any("proxy_protocol" in line for line in sets)
    if any("proxy_protocol" not in line for line in sets):
        raise LookupError("needs a non-default gunicorn setting")
    from gunicorn.config import Config  # noqa: PLC0415  (only this script needs gunicorn)
    from gunicorn.util import split_request_uri  # noqa: PLC0415

    def uri(data: str) -> dict[str, Any]:
        parts = split_request_uri(data)
        return {"raw": data, "path": parts.path or "", "query": parts.query or ""}

    module = types.ModuleType("__case__")
    module.uri = uri  # type: ignore[attr-defined]
    module.cfg = Config()  # type: ignore[attr-defined]
    importlib.machinery.SourceFileLoader("__case__", str(py)).exec_module(module)
    return module.request, proxy


def exchange(data: bytes, proxy: bool) -> tuple[list[dict[str, Any]], list[int]]:
    """Send ``data`` to a fresh in-process server; what its app saw, and the statuses."""
    seen: list[dict[str, Any]] = []

    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        body = environ["wsgi.input"].read()
        seen.append({"method": environ["REQUEST_METHOD"], "path": environ["PATH_INFO"],
                     "query": environ["QUERY_STRING"], "body": body})
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"ok"]

    handler = ConnectionHandler(app, LIMITS,
                                server_name="127.0.0.1", server_port="0",
                                proxy_protocol=(1, 2) if proxy else (),
                                proxy_allow=TrustedPeers.parse("127.0.0.1"))
    server = StreamServer(("127.0.0.1", 0), handler, spawn=Pool())
    server.start()
    reader = ResponseReader()
    sock = gevent.socket.create_connection(server.address, timeout=3)
    try:
        sock.sendall(data)
        sock.shutdown(socket.SHUT_WR)  # the request is all there is
        while True:
            try:
                chunk = sock.recv(65536)
            except OSError:
                break
            if not chunk:
                break
            reader.feed(chunk)
        reader.finish()
    finally:
        sock.close()
        server.stop(timeout=2)
    return seen, [r.status for r in reader.responses]


def valid_passes(expected: Any, seen: list[dict[str, Any]], statuses: list[int]) -> bool:
    wanted = expected if isinstance(expected, list) else [expected]
    if len(seen) != len(wanted) or statuses != [200] * len(wanted):
        return False
    return all(got["method"] == want["method"] and got["path"] == want["uri"]["path"]
               and got["query"] == want["uri"]["query"] and got["body"] == want["body"]
               for got, want in zip(seen, wanted, strict=True))


def run(requests_dir: Path) -> int:
    for kind in ("valid", "invalid"):
        passed = applicable = 0
        failures = []
        for http in sorted((requests_dir / kind).glob("*.http")):
            try:
                expected, proxy = expectation(http.with_suffix(".py"))
            except LookupError:
                continue
            applicable += 1
            seen, statuses = exchange(decode(http.read_bytes()), proxy)
            # invalid: no request of it may reach the app and be answered 200
            ok = valid_passes(expected, seen, statuses) if kind == "valid" \
                else 200 not in statuses
            passed += ok
            if not ok:
                failures.append(f"{http.name} (app saw {len(seen)}, statuses {statuses})")
        print(f"{kind}: {passed}/{applicable} applicable cases pass")
        for failure in failures:
            print(f"  fails: {failure}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("dir", nargs="?", type=Path,
                        help=f"gunicorn's tests/requests (default: fetch the {GUNICORN} sdist)")
    args = parser.parse_args(argv)
    if args.dir is not None:
        return run(args.dir)
    with tempfile.TemporaryDirectory(prefix="gunicorn-corpus-") as tmp:
        subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps",
                        "--no-binary", ":all:", "-d", tmp, GUNICORN], check=True)
        [sdist] = Path(tmp).glob("gunicorn-*.tar.gz")
        subprocess.run(["tar", "xzf", str(sdist), "-C", tmp], check=True)
        [requests_dir] = Path(tmp).glob("gunicorn-*/tests/requests")
        return run(requests_dir)


if __name__ == "__main__":
    gevent.get_hub()
    sys.exit(main())
