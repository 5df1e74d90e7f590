"""TLS (``server/http/tls.py``): HTTPS served from trustme certificates over real sockets; a
failed, plain-HTTP or stalled handshake costs that connection only."""

from __future__ import annotations

import contextlib
import json
import socket
import ssl as std_ssl
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import gevent
import gevent.socket
import pytest
import trustme
from gevent import ssl

from loadtests.procs import ResponseReader
from server.http import FileWrapper, Limits
from server.http.tls import server_context
from tests.inprocess import TEST_LIMITS
from tests.support import ROOT, free_port, run_cli


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture(scope="module")
def cert_files(ca: trustme.CA, tmp_path_factory: Any) -> tuple[str, str, str]:
    """(certfile, keyfile, ca file) for 127.0.0.1 / localhost."""
    directory = tmp_path_factory.mktemp("tls")
    cert = ca.issue_cert("127.0.0.1", "localhost")
    certfile, keyfile, cafile = (directory / n for n in ("cert.pem", "key.pem", "ca.pem"))
    cert.cert_chain_pems[0].write_to_path(certfile)
    for pem in cert.cert_chain_pems[1:]:
        pem.write_to_path(certfile, append=True)
    cert.private_key_pem.write_to_path(keyfile)
    ca.cert_pem.write_to_path(cafile)
    return str(certfile), str(keyfile), str(cafile)


@pytest.fixture
def tls(cert_files: tuple[str, str, str]) -> ssl.SSLContext:
    return server_context(cert_files[0], cert_files[1])


def scheme_app(environ: dict[str, Any], start_response: Any) -> Any:
    if environ["PATH_INFO"] == "/file":
        start_response("200 OK", [("Content-Type", "text/plain")])
        return FileWrapper(open(__file__, "rb"))
    body = json.dumps({"scheme": environ["wsgi.url_scheme"],
                       "body": environ["wsgi.input"].read().decode()}).encode()
    start_response("200 OK", [("Content-Type", "application/json")])
    return [body]


class TLSClient:
    """A raw HTTP client over gevent's ssl, trusting the test CA."""

    def __init__(self, address: tuple[str, int], ca: trustme.CA) -> None:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ca.configure_trust(context)
        raw = gevent.socket.create_connection(address, timeout=5)
        self.sock = context.wrap_socket(raw, server_hostname="127.0.0.1")
        self.reader = ResponseReader()

    def request(self, data: bytes) -> Any:
        self.sock.sendall(data)
        return self.response()

    def response(self) -> Any:
        while not self.reader.responses:
            data = self.sock.recv(65536)
            assert data, "EOF before a response"
            self.reader.feed(data)
        return self.reader.responses.pop(0)


GET = b"GET / HTTP/1.1\r\nHost: t\r\n\r\n"


def test_https_request_sees_https_and_keeps_alive(serve: Any, tls: Any, ca: Any) -> None:
    server = serve(scheme_app, tls=tls)
    client = TLSClient(server.address, ca)
    for _ in range(3):
        resp = client.request(GET)
        assert resp.status == 200
        assert json.loads(resp.body)["scheme"] == "https"
    assert client.sock.version() in ("TLSv1.2", "TLSv1.3")
    assert client.sock.selected_alpn_protocol() in (None, "http/1.1")


def test_pipelined_requests_waiting_inside_tls_are_served(serve: Any, tls: Any, ca: Any) -> None:
    """Requests in one TLS record, and in records sent back to back: every one is answered
    (the idle wait on the raw socket never sits on bytes TLS has already read)."""
    server = serve(scheme_app, tls=tls)
    client = TLSClient(server.address, ca)
    post = b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\nhello"
    client.sock.sendall(post + GET + post)
    for data in (post, GET, post):
        client.sock.sendall(data)
    bodies = [json.loads(client.response().body)["body"] for _ in range(6)]
    assert bodies == ["hello", "", "hello"] * 2


def test_a_file_is_sent_encrypted(serve: Any, tls: Any, ca: Any) -> None:
    server = serve(scheme_app, tls=tls)
    resp = TLSClient(server.address, ca).request(b"GET /file HTTP/1.1\r\nHost: t\r\n\r\n")
    assert resp.body == Path(__file__).read_bytes()


@pytest.mark.parametrize("data", [
    GET,  # plain HTTP to the TLS port
    b"\x16\x03\x01\x00\x05hello",  # a broken ClientHello
    b"\x00" * 100,
])
def test_a_bad_handshake_closes_that_connection_only(serve: Any, tls: Any, ca: Any,
                                                     data: bytes, caplog: Any) -> None:
    caplog.set_level("DEBUG", logger="server.handler")
    server = serve(scheme_app, tls=tls)
    raw = gevent.socket.create_connection(server.address, timeout=5)
    raw.sendall(data)
    try:
        rest = raw.recv(65536)
        while rest and b"HTTP/1.1" not in rest:  # a TLS alert at most, never an HTTP answer
            rest = raw.recv(65536)
    except ConnectionResetError:
        rest = b""
    assert b"HTTP/1.1" not in rest
    raw.close()
    assert "TLS handshake failed" in caplog.text
    assert TLSClient(server.address, ca).request(GET).status == 200


def test_a_stalled_handshake_is_cut_at_the_read_timeout(serve: Any, tls: Any, ca: Any) -> None:
    limits = Limits(**{**TEST_LIMITS.__dict__, "header_timeout": 0.5})
    server = serve(scheme_app, limits, tls=tls)
    idle = gevent.socket.create_connection(server.address, timeout=5)  # sends nothing
    trickle = gevent.socket.create_connection(server.address, timeout=5)
    started = time.monotonic()
    trickle.sendall(b"\x16\x03")  # the start of a ClientHello, then nothing more
    # meanwhile another client is served at once
    assert TLSClient(server.address, ca).request(GET).status == 200
    for sock in (idle, trickle):
        with contextlib.suppress(ConnectionResetError):
            assert sock.recv(100) == b""
    assert 0.3 < time.monotonic() - started < 3
    idle.close()
    trickle.close()


def test_a_client_certificate_can_be_required(serve: Any, cert_files: Any, ca: Any) -> None:
    context = server_context(cert_files[0], cert_files[1], cert_files[2], ssl.CERT_REQUIRED)
    server = serve(scheme_app, tls=context)
    with pytest.raises((ssl.SSLError, ConnectionError, AssertionError)):
        TLSClient(server.address, ca).request(GET)  # no client certificate
    client_cert = ca.issue_cert("client@example")
    client = TLSClient.__new__(TLSClient)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ca.configure_trust(context)
    client_cert.configure_cert(context)
    raw = gevent.socket.create_connection(server.address, timeout=5)
    client.sock = context.wrap_socket(raw, server_hostname="127.0.0.1")
    client.reader = ResponseReader()
    assert client.request(GET).status == 200


@pytest.mark.parametrize(("args", "message"), [
    (["--certfile", "/nonexistent.pem"], "--certfile: invalid value '/nonexistent.pem': no such "
                                         "file"),
    (["--keyfile", __file__], "--keyfile needs --certfile"),
    (["--certfile", __file__], "--certfile/--keyfile/--ca-certs: cannot load"),
    (["--cert-reqs", "maybe"], "--cert-reqs: invalid value 'maybe'"),
])
def test_bad_tls_settings_are_one_line_and_exit_2(args: list[str], message: str) -> None:
    result = run_cli(*args, "--bind", "127.0.0.1:0")
    assert result.returncode == 2
    assert message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_bad_ciphers_are_named(cert_files: Any) -> None:
    result = run_cli("--certfile", cert_files[0], "--keyfile", cert_files[1],
                     "--ciphers", "NOPE-NOTHING", "--bind", "127.0.0.1:0")
    assert result.returncode == 2 and "--ciphers: invalid value 'NOPE-NOTHING'" in result.stderr


def test_the_server_serves_https(cert_files: Any, ca: Any, tmp_path: Path) -> None:
    """``python -m server --certfile --keyfile``: HTTPS end to end, over a real process."""
    port = free_port()
    log = tmp_path / "server.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "server", "--bind", f"127.0.0.1:{port}",
                                 "--certfile", cert_files[0], "--keyfile", cert_files[1]],
                                stdout=out, stderr=subprocess.STDOUT,
                                cwd=ROOT,
                                start_new_session=True)
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                raw = socket.create_connection(("127.0.0.1", port), timeout=5)
                break
            except OSError:
                assert time.monotonic() < deadline, log.read_text()
                assert proc.poll() is None, log.read_text()
                time.sleep(0.1)
        std_context = std_ssl.create_default_context()
        ca.configure_trust(std_context)
        with std_context.wrap_socket(raw, server_hostname="127.0.0.1") as sock:
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
            data = b""
            while chunk := sock.recv(65536):
                data += chunk
        assert data.startswith(b"HTTP/1.1 200"), data
    finally:
        proc.terminate()
        proc.wait(timeout=20)
