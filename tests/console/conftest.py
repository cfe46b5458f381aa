"""Fixtures of the console tests (helpers in console_helpers.py)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from console_helpers import ConsoleClient, new_account

from harness import Creds, Server, start_server, stop_server


@pytest.fixture
def account(server: Server) -> Creds:
    """A fresh account (made in-process: faster than the CLI the shared fixture runs)."""
    return new_account(server)


@pytest.fixture
def console(server: Server) -> Iterator[ConsoleClient]:
    client = ConsoleClient(server)
    try:
        yield client
    finally:
        client.close()


@pytest.fixture
def console_factory(server: Server) -> Iterator[Any]:
    """Makes signed-in clients for any account (closed at the end)."""
    made: list[ConsoleClient] = []

    def make(creds: Creds) -> ConsoleClient:
        client = ConsoleClient(server).sign_in_as(creds)
        made.append(client)
        return client

    yield make
    for client in made:
        client.close()


@pytest.fixture(scope="module")
def fake_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A server on the fake hypervisor, one per test module (instances without QEMU)."""
    data_dir = tmp_path_factory.mktemp("gs-console-fake") / "data"
    srv = start_server(data_dir, env={"GOLDSMITH_HYPERVISOR": "fake"})
    try:
        yield srv
    finally:
        stop_server(srv.proc)


@pytest.fixture
def make_console(fake_server: Server) -> Iterator[Callable[[Creds], ConsoleClient]]:
    made: list[ConsoleClient] = []

    def make(creds: Creds) -> ConsoleClient:
        client = ConsoleClient(fake_server).sign_in_as(creds)
        made.append(client)
        return client

    yield make
    for client in made:
        client.close()
