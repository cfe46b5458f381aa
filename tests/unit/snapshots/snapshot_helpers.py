"""Snapshot test helpers: contexts for new accounts, small sparse disks."""

from __future__ import annotations

import os
from pathlib import Path

from goldsmith.service.app import Services
from goldsmith.service.context import RequestContext

REGION = "us-east-1"
MIB = 1024 * 1024


def ctx_for(services: Services, region: str = REGION) -> RequestContext:
    """A new account's context."""
    account = services.accounts.create_account()
    return RequestContext(account_id=account.account_id, region=region)


def disk(tmp_path: Path, name: str = "disk.raw", size: int = 3 * MIB) -> Path:
    """A sparse disk of ``size`` bytes with 4 KiB of random data at 1 MiB."""
    path = tmp_path / name
    with open(path, "wb") as f:
        f.truncate(size)
        f.seek(MIB)
        f.write(os.urandom(4096))
    return path
