"""Shared fixtures: one real server per test session, fresh accounts, boto3 clients."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from harness import Creds, Server, start_server, stop_server


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One real server for the whole session (tests make their own accounts)."""
    srv = start_server(tmp_path_factory.mktemp("gs") / "data")
    try:
        yield srv
    finally:
        stop_server(srv.proc)


@pytest.fixture
def account(server: Server) -> Creds:
    """A fresh account, so tests do not see each other's resources."""
    return server.new_account()


@pytest.fixture
def ec2(server: Server, account: Creds) -> Any:
    """A boto3 EC2 client for a fresh account in us-east-1."""
    return server.client(account)
