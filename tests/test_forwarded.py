"""Forwarded headers (``server/http/forwarded.py``): the decisions as tables, then over sockets.

A trusted proxy's X-Forwarded-Proto/-Ssl/-For and Forwarded set ``wsgi.url_scheme`` and
``REMOTE_ADDR`` of that request only; from anyone else they change nothing.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest

from server.config import load_config
from server.http.forwarded import (
    TrustedPeers,
    parse_forwarded,
    resolve_client,
    resolve_scheme,
    split_host_port,
)
from tests.support import run_cli, running_server

LOCAL = TrustedPeers.parse("127.0.0.1,::1")


def who_app(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
    """Answers with who it thinks the client is."""
    body = json.dumps({key: environ.get(key) for key in
                       ("wsgi.url_scheme", "REMOTE_ADDR", "REMOTE_PORT", "HTTP_X_FORWARDED_FOR",
                        "SCRIPT_NAME", "PATH_INFO")}).encode()
    start_response("200 OK", [("Content-Type", "application/json")])
    return [body]


# --------------------------------------------------------------------------- tables

@pytest.mark.parametrize(("spec", "address", "trusted"), [
    ("127.0.0.1,::1", "127.0.0.1", True),
    ("127.0.0.1,::1", "::1", True),
    ("127.0.0.1,::1", "::ffff:127.0.0.1", True),  # dual-stack listener
    ("127.0.0.1,::1", "127.0.0.2", False),
    ("127.0.0.1,::1", "", True),  # a unix-socket peer, as in gunicorn
    ("10.0.0.0/8", "10.1.2.3", True),
    ("10.0.0.0/8", "11.0.0.1", False),
    ("2001:db8::/32", "2001:db8::7", True),
    ("*", "203.0.113.9", True),
    ("", "127.0.0.1", False),
    ("127.0.0.1", "not-an-ip", False),
])
def test_trusted_peers(spec: str, address: str, trusted: bool) -> None:
    assert (address in TrustedPeers.parse(spec)) is trusted


def test_trusted_peers_name_a_bad_entry() -> None:
    with pytest.raises(ValueError, match="'nope' is not an IP"):
        TrustedPeers.parse("127.0.0.1, nope")


@pytest.mark.parametrize(("node", "expected"), [
    ("1.2.3.4", ("1.2.3.4", "")),
    (" 1.2.3.4:8080 ", ("1.2.3.4", "8080")),
    ("2001:db8::1", ("2001:db8::1", "")),
    ("[2001:db8::1]:4711", ("2001:db8::1", "4711")),
    ("[2001:db8::1]", ("2001:db8::1", "")),
    ("unknown", None),
    ("_hidden", None),
    ("1.2.3.4:99999", None),
    ("1.2.3.4:x", None),
    ("[2001:db8::1]x", None),
    ("", None),
])
def test_split_host_port(node: str, expected: tuple[str, str] | None) -> None:
    assert split_host_port(node) == expected


def test_parse_forwarded() -> None:
    value = 'for=192.0.2.60;proto=http;by=203.0.113.43, For="[2001:db8:cafe::17]:4711"'
    assert parse_forwarded(value) == [{"for": "192.0.2.60", "proto": "http", "by": "203.0.113.43"},
            {"for": "[2001:db8:cafe::17]:4711"}]


@pytest.mark.parametrize(("headers", "scheme"), [
    ({}, None),
    ({"HTTP_X_FORWARDED_PROTO": "https"}, "https"),
    ({"HTTP_X_FORWARDED_PROTO": "HTTPS"}, "https"),
    ({"HTTP_X_FORWARDED_PROTO": "http"}, "http"),
    ({"HTTP_X_FORWARDED_PROTO": "https,http"}, "http"),  # rightmost: our proxy's word
    ({"HTTP_X_FORWARDED_PROTO": "ftp"}, None),
    ({"HTTP_X_FORWARDED_SSL": "on"}, "https"),
    ({"HTTP_X_FORWARDED_SSL": "off"}, "http"),
    ({"HTTP_FORWARDED": "for=1.2.3.4;proto=https"}, "https"),
    ({"HTTP_FORWARDED": 'for=1.2.3.4;proto="https", for=10.0.0.1'}, "https"),
    ({"HTTP_FORWARDED": "proto=https, proto=http"}, "http"),
    ({"HTTP_FORWARDED": "proto=gopher"}, None),
    # X-Forwarded-* wins over Forwarded (what nginx and the cloud balancers set)
    ({"HTTP_X_FORWARDED_PROTO": "http", "HTTP_FORWARDED": "proto=https"}, "http"),
])
def test_resolve_scheme(headers: dict[str, str], scheme: str | None) -> None:
    assert resolve_scheme(headers) == scheme


@pytest.mark.parametrize(("headers", "trusted", "client"), [
    ({}, "127.0.0.1", None),
    ({"HTTP_X_FORWARDED_FOR": "203.0.113.7"}, "127.0.0.1", ("203.0.113.7", "")),
    # the client wrote the left part: the rightmost untrusted hop is the answer
    ({"HTTP_X_FORWARDED_FOR": "6.6.6.6, 203.0.113.7"}, "127.0.0.1", ("203.0.113.7", "")),
    # a chain of our own proxies is walked through
    ({"HTTP_X_FORWARDED_FOR": "6.6.6.6, 203.0.113.7, 10.0.0.2, 10.0.0.3"}, "10.0.0.0/8",
     ("203.0.113.7", "")),
    # every hop trusted: the leftmost
    ({"HTTP_X_FORWARDED_FOR": "10.0.0.9, 10.0.0.2"}, "10.0.0.0/8", ("10.0.0.9", "")),
    # garbage stops the walk: the last address we could believe
    ({"HTTP_X_FORWARDED_FOR": "203.0.113.7, unknown"}, "127.0.0.1", None),
    ({"HTTP_X_FORWARDED_FOR": "6.6.6.6, garbage, 10.0.0.2"}, "10.0.0.0/8", ("10.0.0.2", "")),
    ({"HTTP_X_FORWARDED_FOR": "[2001:db8::5]:4711"}, "127.0.0.1", ("2001:db8::5", "4711")),
    ({"HTTP_FORWARDED": 'for=6.6.6.6, for="[2001:db8::5]:4711";proto=https'}, "127.0.0.1",
     ("2001:db8::5", "4711")),
    ({"HTTP_FORWARDED": "for=unknown"}, "127.0.0.1", None),
    ({"HTTP_FORWARDED": "proto=https"}, "127.0.0.1", None),
    # X-Forwarded-For wins over Forwarded
    ({"HTTP_X_FORWARDED_FOR": "203.0.113.7", "HTTP_FORWARDED": "for=6.6.6.6"}, "127.0.0.1",
     ("203.0.113.7", "")),
])
def test_resolve_client(headers: dict[str, str], trusted: str,
                        client: tuple[str, str] | None) -> None:
    assert resolve_client(headers, TrustedPeers.parse(trusted)) == client


# --------------------------------------------------------------------------- sockets

def _who(client: Any, headers: str = "") -> dict[str, Any]:
    resp = client.get("/", headers)
    assert resp.status == 200
    return json.loads(resp.body)


def test_a_trusted_proxy_sets_scheme_and_client_address(serve: Any) -> None:
    server = serve(who_app, forwarded_allow=LOCAL)
    who = _who(server.connect(), "X-Forwarded-Proto: https\r\n"
                                 "X-Forwarded-For: 6.6.6.6, 203.0.113.7\r\n")
    assert who["wsgi.url_scheme"] == "https"
    assert who["REMOTE_ADDR"] == "203.0.113.7"
    assert who["REMOTE_PORT"] == "0"
    assert who["HTTP_X_FORWARDED_FOR"] == "6.6.6.6, 203.0.113.7"  # still there for the app


def test_forwarded_rfc7239_from_a_trusted_proxy(serve: Any) -> None:
    server = serve(who_app, forwarded_allow=LOCAL)
    who = _who(server.connect(), 'Forwarded: for="[2001:db8::5]:4711";proto=https\r\n')
    assert (who["wsgi.url_scheme"], who["REMOTE_ADDR"], who["REMOTE_PORT"]) == \
        ("https", "2001:db8::5", "4711")


@pytest.mark.parametrize("forwarded_allow", [TrustedPeers.parse("10.0.0.0/8"), None])
def test_an_untrusted_peer_changes_nothing(serve: Any, forwarded_allow: Any) -> None:
    server = serve(who_app, forwarded_allow=forwarded_allow)
    who = _who(server.connect(), "X-Forwarded-Proto: https\r\nX-Forwarded-Ssl: on\r\n"
                                 "X-Forwarded-For: 203.0.113.7\r\nForwarded: for=1.2.3.4\r\n")
    assert who["wsgi.url_scheme"] == "http"
    assert who["REMOTE_ADDR"] == "127.0.0.1"
    assert who["HTTP_X_FORWARDED_FOR"] == "203.0.113.7"  # a plain header


def test_forwarded_values_never_reach_the_next_request_of_the_connection(serve: Any) -> None:
    """Leak test: request 1 says it is 203.0.113.7 over https, request 2 says nothing."""
    server = serve(who_app, forwarded_allow=LOCAL)
    client = server.connect()
    first = _who(client, "X-Forwarded-Proto: https\r\nX-Forwarded-For: 203.0.113.7\r\n")
    second = _who(client)
    third = _who(client, "X-Forwarded-Ssl: on\r\n")
    assert (first["REMOTE_ADDR"], first["wsgi.url_scheme"]) == ("203.0.113.7", "https")
    assert second == {"wsgi.url_scheme": "http", "REMOTE_ADDR": "127.0.0.1",
                      "REMOTE_PORT": second["REMOTE_PORT"], "HTTP_X_FORWARDED_FOR": None,
                      "SCRIPT_NAME": "", "PATH_INFO": "/"}
    assert second["REMOTE_PORT"] != "0"
    assert (third["REMOTE_ADDR"], third["wsgi.url_scheme"]) == ("127.0.0.1", "https")


def test_root_path_mounts_the_app_under_a_prefix(serve: Any) -> None:
    server = serve(who_app, root_path="/api")
    client = server.connect()
    seen = [(w["SCRIPT_NAME"], w["PATH_INFO"]) for w in
            (json.loads(client.get(path).body) for path in
             ("/api/users/1", "/api", "/api/", "/apix", "/other"))]
    assert seen == [("/api", "/users/1"), ("/api", ""), ("/api", "/"), ("/api", "/apix"),
                    ("/api", "/other")]


def test_the_server_resolves_the_client_for_the_app_and_the_access_log(tmp_path: Any) -> None:
    """A real server: a request from 127.0.0.1 (a trusted proxy by default) with forwarded
    headers, under SCRIPT_NAME from the environment; the access log names the client."""
    access = tmp_path / "access.log"
    with running_server("--access-log", str(access), "tests.apps.hostile:app",
                        tmp_path=tmp_path, env={"SCRIPT_NAME": "/mount"}) as server:
        status, _, body = server.get("/mount/hostile/who", {
            "X-Forwarded-For": "6.6.6.6, 203.0.113.7", "X-Forwarded-Proto": "https"})
        assert status == 200
        assert json.loads(body) == {"wsgi.url_scheme": "https", "REMOTE_ADDR": "203.0.113.7",
                                    "REMOTE_PORT": "0", "SCRIPT_NAME": "/mount",
                                    "PATH_INFO": "/hostile/who"}
        status, _, body = server.get("/mount/hostile/who")
        assert json.loads(body)["REMOTE_ADDR"] == "127.0.0.1"
    lines = access.read_text().splitlines()
    assert any(line.startswith("203.0.113.7 ") and "/hostile/who" in line for line in lines), lines


def test_forwarded_allow_ips_can_trust_nobody(tmp_path: Any) -> None:
    with running_server("--forwarded-allow-ips", "10.0.0.0/8", "tests.apps.hostile:app",
                        tmp_path=tmp_path) as server:
        _, _, body = server.get("/hostile/who", {"X-Forwarded-For": "203.0.113.7",
                                                 "X-Forwarded-Proto": "https"})
        who = json.loads(body)
        assert (who["REMOTE_ADDR"], who["wsgi.url_scheme"]) == ("127.0.0.1", "http")


@pytest.mark.parametrize(("args", "message"), [
    (["--forwarded-allow-ips", "127.0.0.1,nope"], "--forwarded-allow-ips: invalid value "
                                                  "'127.0.0.1,nope': 'nope' is not an IP"),
    (["--root-path", "api"], "--root-path: invalid value 'api': must start with /"),
    (["--proxy-protocol", "v3"], "--proxy-protocol: invalid value 'v3'"),
])
def test_bad_values_are_one_line(args: list[str], message: str) -> None:
    result = run_cli(*args, "--bind", "127.0.0.1:0")
    assert result.returncode == 2 and message in result.stderr, result.stderr


def test_gunicorns_environment_variables_are_read_after_ours() -> None:
    """FORWARDED_ALLOW_IPS and SCRIPT_NAME, as gunicorn reads them; SERVER_* wins."""
    config, _ = load_config([], {"FORWARDED_ALLOW_IPS": "10.0.0.0/8", "SCRIPT_NAME": "/app/"})
    assert (config.forwarded_allow_ips, config.root_path) == ("10.0.0.0/8", "/app")
    config, _ = load_config([], {"FORWARDED_ALLOW_IPS": "10.0.0.0/8",
                                 "SERVER_FORWARDED_ALLOW_IPS": "*"})
    assert config.forwarded_allow_ips == "*"
    config, _ = load_config(["--root-path", "/"], {"SCRIPT_NAME": "/app"})
    assert config.root_path == ""


def test_a_gunicorn_config_file_sets_them_by_gunicorns_names(tmp_path: Any) -> None:
    conf = tmp_path / "gunicorn.conf.py"
    conf.write_text('forwarded_allow_ips = "10.0.0.0/8"\nproxy_protocol = "v2"\n'
                    'proxy_allow_ips = "*"\nroot_path = "/api"\ncert_reqs = 0\n')
    config, _ = load_config(["-c", str(conf)], {})
    assert (config.forwarded_allow_ips, config.proxy_protocol, config.proxy_allow_from,
            config.root_path) == ("10.0.0.0/8", "v2", "*", "/api")
