"""Fixtures shared by the test modules (helpers live in helper modules, never here)."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from tests.inprocess import Server, Servers


@pytest.fixture
def serve() -> Iterator[Callable[..., Server]]:
    """``serve(app, limits=TEST_LIMITS, **handler_kwargs)``: a ConnectionHandler on a
    StreamServer of 127.0.0.1; every server and client is torn down after the test, and the
    handler must have no connection or request left by then."""
    servers = Servers()
    yield servers.start
    servers.close()


@pytest.fixture
def serve_raw() -> Iterator[Callable[..., Server]]:
    """``serve_raw(handle)``: a StreamServer calling ``handle(sock, address)`` per
    connection (for tests of HTTPConnection below the handler)."""
    servers = Servers()
    yield servers.start_raw
    servers.close()
