"""What the container benchmark compares, and the command line of each: pure, no I/O.

A *config* is where a server runs (``host``, ``container``, ``published``) and which one
(``ours``, ``ours-pure``, ``gunicorn``). The server's own command line is the host
benchmark's (``bench.server.servers.server_command``: one worker, access log off), so a
container row and its host row differ only in what wraps it:

* ``host``: ``taskset -c 0 <server>``, as ``python -m bench.server`` runs it (the
  project's ``.venv``);
* ``host-syspython``: the same with the host's system ``python3`` (a venv of it with the
  same pins) when the image runs the same build of it — version, configure arguments,
  compiler and flags (the offline base image is Debian's ``python3``): the container's cost
  without a different interpreter build in it;
* ``container``: ``docker run --network host --cpuset-cpus 0 <image> <server>``. Host
  networking: the server binds 127.0.0.1:PORT in the host's network namespace, so wrk
  reaches it exactly as on the host — no docker-proxy, no NAT, no veth/bridge hop — and the
  ratio to the host row is the container's own cost (namespaces, cgroup, overlay file
  system, the image's Python), not Docker's networking;
* ``published``: ``docker run -p 127.0.0.1:PORT:8000`` on the default bridge (what Compose
  does), the server on 0.0.0.0:8000 inside its own network namespace: the extra hop
  through docker-proxy (loopback traffic to a published port goes through it) and the
  bridge, measured for ours only, as a separate row.

The pure-Python rows get ``CTXSERVER_PURE_PYTHON=1 CTXLOCAL_PURE_PYTHON=1`` in the
container's environment (``-e``), on the host in the server's (``env``).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

from bench.server.matrix import PURE_PYTHON_ENV
from bench.server.servers import pinned, server_command

PLACES = ("host", "host-syspython", "container", "published")
SERVERS = ("ours", "ours-pure", "gunicorn")
#: The configs of a default run: every server on the host and in the container (host
#: networking), and ours behind a published port.
CONFIGS: tuple[tuple[str, str], ...] = (
    *(("host", server) for server in SERVERS),
    *(("container", server) for server in SERVERS),
    ("published", "ours"),
)
LABELS = {"ours": "ours", "ours-pure": "ours, accelerators off", "gunicorn": "gunicorn -k gevent"}
PLACE_LABELS = {"host": "host", "host-syspython": "host, the image's Python build",
                "container": "container (--network host)",
                "published": "container (-p 127.0.0.1:PORT:8000)"}
#: Where the server listens inside its own network namespace in the ``published`` config.
CONTAINER_PORT = 8000
#: Every container this benchmark starts carries it (``docker ps --filter label=...``).
LABEL = "org.ctxserver.bench=container"


@dataclass(frozen=True)
class Config:
    """One server in one place: a row of the results."""

    place: str
    server: str

    @property
    def key(self) -> str:
        return f"{self.place}/{self.server}"

    @classmethod
    def parse(cls, key: str) -> Config:
        """``container/ours`` → Config; ValueError names what is wrong."""
        place, _, server = key.partition("/")
        if place not in PLACES or server not in SERVERS:
            raise ValueError(f"not a config: {key!r} (PLACE/SERVER, PLACE one of "
                             f"{', '.join(PLACES)}; SERVER one of {', '.join(SERVERS)})")
        return cls(place, server)


def default_configs(system_python: bool = False) -> list[Config]:
    """CONFIGS, and with ``system_python`` the host-syspython rows after the host's."""
    configs = [Config(place, server) for place, server in CONFIGS]
    if system_python:
        configs[len(SERVERS):len(SERVERS)] = [Config("host-syspython", s) for s in SERVERS]
    return configs


def host_command(config: Config, app: str, port: int, cpu: int | None,
                 python: str = sys.executable) -> list[str]:
    """The host benchmark's command line with ``python``, pinned to ``cpu``."""
    return pinned(server_command(config.server, app, port, python=python), cpu)


def container_command(config: Config, app: str, port: int, *, image: str, cidfile: Path,
                      cpu: int | None) -> list[str]:
    """``docker run`` of the server in ``image``, reachable on 127.0.0.1:``port``.

    Attached (not ``-d``): the benchmark stops the container by TERMing this client, which
    forwards the signal (``--sig-proxy``, on by default) to tini (``--init``) and so to the
    server; ``--rm`` removes it then, and ``--cidfile`` records its id for removal by id
    should the client die first. ``--no-healthcheck``: the image's check would run a Python
    process on the pinned core every 5 s, in the middle of the timed runs.
    """
    command = ["docker", "run", "--rm", "--init", "--no-healthcheck", "--cidfile", str(cidfile),
               "--label", LABEL]
    if cpu is not None:
        command += ["--cpuset-cpus", str(cpu)]
    if config.server == "ours-pure":
        for assignment in PURE_PYTHON_ENV:
            command += ["-e", assignment]
    inner = port
    if config.place == "published":
        inner = CONTAINER_PORT
        command += ["-p", f"127.0.0.1:{port}:{CONTAINER_PORT}"]
    else:
        command += ["--network", "host"]
    # The image's own Python (its venv is first on PATH); the accelerators off by -e above.
    base = "gunicorn" if config.server == "gunicorn" else "ours"
    server = server_command(base, app, inner, python="python")
    if config.place == "published":  # reachable from the bridge, i.e. from docker-proxy
        server = [f"0.0.0.0:{inner}" if part == f"127.0.0.1:{inner}" else part
                  for part in server]
    return [*command, image, *server]


def command(config: Config, app: str, port: int, *, image: str, cidfile: Path,
            cpu: int | None, system_python: str | None = None) -> list[str]:
    if config.place == "host":
        return host_command(config, app, port, cpu)
    if config.place == "host-syspython":
        if system_python is None:
            raise ValueError("host-syspython rows need --system-python")
        return host_command(config, app, port, cpu, python=system_python)
    return container_command(config, app, port, image=image, cidfile=cidfile, cpu=cpu)

