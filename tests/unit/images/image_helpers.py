"""Image test helpers: a migrated SQLite catalog, accounts, and a fake snapshot service.

The fake implements the snapshot port the images service uses (usable / read grants /
in-use checks / delete / create_from_file) with EC2's error codes, so these tests pin the
image rules without the snapshot store.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from goldsmith.catalog.db import Catalog
from goldsmith.service.accounts import AccountService
from goldsmith.service.context import RequestContext
from goldsmith.service.errors import ClientError
from goldsmith.service.ids import new_id
from goldsmith.service.images import ImageService
from goldsmith.service.operations import Operation, dispatch
from goldsmith.service.pagination import Paginator
from goldsmith.service.tags import TagService

REGION = "us-east-1"


@dataclass
class FakeSnapshot:
    snapshot_id: str
    owner: str
    volume_size: int


@dataclass
class FakeSnapshots:
    snapshots: dict[str, FakeSnapshot] = field(default_factory=dict)
    grants: list[Callable[[sa.Connection, RequestContext, str], bool]] = field(default_factory=list)
    in_use: list[Callable[[sa.Connection, str, str], str | None]] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)

    def make(self, owner: str, size: int = 8) -> str:
        snap = FakeSnapshot(new_id("snap"), owner, size)
        self.snapshots[snap.snapshot_id] = snap
        return snap.snapshot_id

    def usable(self, conn: sa.Connection, ctx: RequestContext, snapshot_id: str) -> FakeSnapshot:
        snap = self.snapshots.get(snapshot_id)
        if snap is None or not (
            snap.owner == ctx.account_id or any(g(conn, ctx, snapshot_id) for g in self.grants)
        ):
            raise ClientError(
                "InvalidSnapshot.NotFound", f"The snapshot '{snapshot_id}' does not exist."
            )
        return snap

    def add_read_grant(self, fn: Callable[[sa.Connection, RequestContext, str], bool]) -> None:
        self.grants.append(fn)

    def add_in_use_check(self, fn: Callable[[sa.Connection, str, str], str | None]) -> None:
        self.in_use.append(fn)

    def delete_for_image(self, conn: sa.Connection, ctx: RequestContext, snapshot_id: str) -> None:
        snap = self.snapshots.get(snapshot_id)
        if snap is None or snap.owner != ctx.account_id:
            raise ClientError("InvalidSnapshot.NotFound", snapshot_id)
        for check in self.in_use:
            user = check(conn, ctx.region, snapshot_id)
            if user is not None:
                raise ClientError("InvalidSnapshot.InUse", f"{snapshot_id} in use by {user}")
        del self.snapshots[snapshot_id]
        self.deleted.append(snapshot_id)

    def create_from_file(
        self, ctx: RequestContext, path: Path, *, description: str, **_: Any
    ) -> FakeSnapshot:
        size = max(1, -(-path.stat().st_size // 2**30))
        return self.snapshots[self.make(ctx.account_id, size)]


@dataclass
class World:
    catalog: Catalog
    images: ImageService
    snapshots: FakeSnapshots
    accounts: AccountService
    operations: dict[str, Operation]
    platform: str

    def account(self) -> RequestContext:
        creds = self.accounts.create_account()
        return RequestContext(creds.account_id, REGION)

    def ctx_of(self, account_id: str) -> RequestContext:
        return RequestContext(account_id, REGION)

    def call(self, ctx: RequestContext, action: str, **params: Any) -> dict[str, Any]:
        return dispatch(self.operations, ctx, action, params)

    def code(self, ctx: RequestContext, action: str, **params: Any) -> str:
        with pytest.raises(ClientError) as info:
            self.call(ctx, action, **params)
        return info.value.code

    def register(self, ctx: RequestContext, name: str | None = None, **params: Any) -> str:
        snap = self.snapshots.make(ctx.account_id)
        params.setdefault("RootDeviceName", "/dev/xvda")
        params.setdefault(
            "BlockDeviceMappings", [{"DeviceName": "/dev/xvda", "Ebs": {"SnapshotId": snap}}]
        )
        out = self.call(ctx, "RegisterImage", Name=name or new_id("img"), **params)
        return str(out["ImageId"])

    def ids(self, ctx: RequestContext, **params: Any) -> list[str]:
        return [i["ImageId"] for i in self.call(ctx, "DescribeImages", **params)["Images"]]


def make_world(tmp_path: Path) -> World:
    catalog = Catalog(f"sqlite:///{tmp_path / 'catalog.db'}")
    catalog.migrate()
    accounts = AccountService(catalog)
    platform = accounts.create_account(alias="amazon", role="platform").account_id
    tags = TagService(catalog, Paginator(b"k" * 32))
    snapshots = FakeSnapshots()
    images = ImageService(catalog, tags, snapshots, Paginator(b"k" * 32), "amazon")
    operations = {op.name: op for op in images.operations()}
    for name, handler in (("CreateTags", tags.create_tags), ("DescribeTags", tags.describe_tags)):
        operations[name] = Operation(name, handler, name)
    return World(catalog, images, snapshots, accounts, operations, platform)
