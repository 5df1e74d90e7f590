"""``python -m bench.pywsgi_runner HOST:PORT APP``: a plain ``gevent.pywsgi.WSGIServer``.

The engine under ``gunicorn -k gevent``, run the way one should: monkey-patched first,
no access log, and ``TCP_NODELAY`` on every accepted socket (without it Nagle's algorithm
and the client's delayed ACK stall a keep-alive client ~40 ms per request; see
``shared/design.md`` §4). ``APP`` is ``module:attr`` or ``module:factory()``, loaded by the
server's own loader. Used by ``bench/server/`` only.
"""

from gevent import monkey

monkey.patch_all()

import socket  # noqa: E402 - after the patch, on purpose
import sys  # noqa: E402
from typing import Any  # noqa: E402

from gevent.pywsgi import WSGIServer  # noqa: E402

from server.loader import load_app  # noqa: E402


class NoDelayWSGIServer(WSGIServer):
    """WSGIServer that sets TCP_NODELAY on each connection before serving it."""

    def handle(self, sock: Any, address: Any) -> None:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        super().handle(sock, address)


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: python -m bench.pywsgi_runner HOST:PORT APP", file=sys.stderr)
        return 2
    host, _, port = argv[0].rpartition(":")
    app = load_app(argv[1])
    NoDelayWSGIServer((host, int(port)), app, log=None).serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
