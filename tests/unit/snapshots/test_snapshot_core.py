"""SnapshotService core: create from a file, visibility, usable, grants, in-use, delete."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa
from snapshot_helpers import MIB, ctx_for, disk

from goldsmith.catalog import snapshots as rows
from goldsmith.service.app import Services
from goldsmith.service.context import RequestContext
from goldsmith.service.errors import ClientError


def test_create_from_file_makes_a_completed_snapshot_with_real_sizes(
    services: Services, tmp_path: Path
) -> None:
    ctx = ctx_for(services)
    row = services.snapshots.create_from_file(
        ctx, disk(tmp_path), description="kernel", tags={"k": "v"}
    )
    assert row.state == "completed" and row.progress == 100
    assert row.owner_id == ctx.account_id and row.volume_id == "vol-ffffffff"
    assert row.volume_size == 1 and row.size_bytes == 3 * MIB
    assert row.data_bytes == 512 * 1024 and row.stored_bytes and row.stored_bytes > 0
    repo = services.snapshots.repository(ctx.region)
    assert repo.read(row.snapshot_id, MIB, 10) != bytes(10)
    with services.catalog.begin() as conn:
        assert services.tags.tags_of(conn, ctx.region, [row.snapshot_id]) == {
            row.snapshot_id: {"k": "v"}
        }


def test_usable_by_owner_grantee_and_read_grant_only(services: Services, tmp_path: Path) -> None:
    owner, other, third = (ctx_for(services) for _ in range(3))
    sid = services.snapshots.create_from_file(owner, disk(tmp_path), description="").snapshot_id
    granted: set[str] = set()
    services.snapshots.add_read_grant(lambda _c, ctx, s: ctx.account_id in granted and s == sid)
    with services.catalog.begin() as conn:
        assert services.snapshots.usable(conn, owner, sid).snapshot_id == sid
        with pytest.raises(ClientError) as exc:
            services.snapshots.usable(conn, other, sid)
        assert exc.value.code == "InvalidSnapshot.NotFound"
        rows.add_permissions(conn, owner.region, sid, [("user", other.account_id)])
        assert services.snapshots.usable(conn, other, sid).snapshot_id == sid
        granted.add(third.account_id)
        assert services.snapshots.usable(conn, third, sid).snapshot_id == sid
        # A read grant does not make the snapshot visible or modifiable.
        with pytest.raises(ClientError) as exc:
            services.snapshots.visible(conn, third, sid)
        assert exc.value.code == "InvalidSnapshot.NotFound"
        with pytest.raises(ClientError) as exc:
            services.snapshots.delete(conn, third, sid)
        assert exc.value.code == "InvalidSnapshot.NotFound"
        with pytest.raises(ClientError) as exc:
            services.snapshots.usable(conn, owner, "snap-zz")
        assert exc.value.code == "InvalidSnapshotID.Malformed"


def test_pending_snapshot_is_not_usable(services: Services) -> None:
    ctx = ctx_for(services)
    row = services.snapshots.new_row(ctx, size_bytes=MIB, description="")
    with services.catalog.begin() as conn:
        rows.insert_snapshot(conn, row)
        with pytest.raises(ClientError) as exc:
            services.snapshots.usable(conn, ctx, row.snapshot_id)
        assert exc.value.code == "IncorrectState"


def test_delete_refused_while_in_use_and_manifest_dropped_after_commit(
    services: Services, tmp_path: Path
) -> None:
    ctx = ctx_for(services)
    sid = services.snapshots.create_from_file(ctx, disk(tmp_path), description="").snapshot_id
    users = {sid: "ami-0123456789abcdef0"}

    def in_use(_conn: sa.Connection, _region: str, snapshot_id: str) -> str | None:
        return users.get(snapshot_id)

    services.snapshots.add_in_use_check(in_use)
    with pytest.raises(ClientError) as exc, services.catalog.begin() as conn:
        services.snapshots.delete_for_image(conn, ctx, sid)
    assert exc.value.code == "InvalidSnapshot.InUse"
    assert "is currently in use by ami-0123456789abcdef0" in exc.value.message
    users.clear()
    repo = services.snapshots.repository(ctx.region)
    # A rolled-back deletion keeps the manifest.
    with pytest.raises(RuntimeError), services.catalog.begin() as conn:
        services.snapshots.delete_for_image(conn, ctx, sid)
        raise RuntimeError("roll back")
    assert repo.exists(sid)
    with services.catalog.begin() as conn:
        services.snapshots.delete_for_image(conn, ctx, sid)
        assert repo.exists(sid)  # not before the commit
    assert not repo.exists(sid)
    with services.catalog.begin() as conn:
        assert rows.get_snapshot(conn, ctx.region, sid) is None


def test_create_tags_works_on_snapshots(services: Services, tmp_path: Path) -> None:
    ctx = ctx_for(services)
    sid = services.snapshots.create_from_file(ctx, disk(tmp_path), description="").snapshot_id
    services.tags.create_tags(ctx, {"Resources": [sid], "Tags": [{"Key": "a", "Value": "b"}]})
    other = RequestContext(account_id=ctx_for(services).account_id, region=ctx.region)
    with pytest.raises(ClientError):
        services.tags.create_tags(other, {"Resources": [sid], "Tags": [{"Key": "a"}]})
