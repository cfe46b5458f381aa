"""EC2 snapshot operations at the service level: describe scoping, attributes, delete, copy."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from snapshot_helpers import ctx_for, disk

from goldsmith.service.app import Services
from goldsmith.service.context import RequestContext
from goldsmith.service.errors import ClientError
from goldsmith.service.operations import dispatch


def call(services: Services, ctx: RequestContext, action: str, **params: Any) -> dict[str, Any]:
    return dispatch(services.operations, ctx, action, params)


def code(services: Services, ctx: RequestContext, action: str, **params: Any) -> str:
    with pytest.raises(ClientError) as exc:
        call(services, ctx, action, **params)
    return exc.value.code


def ids(result: dict[str, Any]) -> set[str]:
    return {s["SnapshotId"] for s in result["Snapshots"]}


def make(services: Services, ctx: RequestContext, tmp_path: Path, description: str = "") -> str:
    path = disk(tmp_path, f"{description or 'd'}-{ctx.account_id}.raw")
    return services.snapshots.create_from_file(ctx, path, description=description).snapshot_id


def share(services: Services, ctx: RequestContext, sid: str, **add: str) -> None:
    call(
        services,
        ctx,
        "ModifySnapshotAttribute",
        SnapshotId=sid,
        Attribute="createVolumePermission",
        CreateVolumePermission={"Add": [add]},
    )


def test_describe_scopes_each_apply(services: Services, tmp_path: Path) -> None:
    a, b, c = (ctx_for(services) for _ in range(3))
    sa_ = make(services, a, tmp_path, "a-one")
    sb = make(services, b, tmp_path, "b-one")
    sc = make(services, c, tmp_path, "c-one")
    share(services, b, sb, UserId=a.account_id)
    share(services, c, sc, Group="all")
    assert ids(call(services, a, "DescribeSnapshots")) == {sa_, sb, sc}
    assert ids(call(services, a, "DescribeSnapshots", OwnerIds=["self"])) == {sa_}
    assert ids(call(services, a, "DescribeSnapshots", OwnerIds=[b.account_id])) == {sb}
    assert ids(call(services, a, "DescribeSnapshots", RestorableByUserIds=["self"])) == {
        sa_,
        sb,
        sc,
    }
    assert ids(call(services, a, "DescribeSnapshots", RestorableByUserIds=["all"])) == {sc}
    # SnapshotIds and OwnerIds both apply.
    got = call(services, a, "DescribeSnapshots", SnapshotIds=[sa_, sb], OwnerIds=["self"])
    assert ids(got) == {sa_}
    filters = [{"Name": "description", "Values": ["b-*"]}]
    assert ids(call(services, a, "DescribeSnapshots", Filters=filters)) == {sb}
    filters = [
        {"Name": "status", "Values": ["completed"]},
        {"Name": "progress", "Values": ["100%"]},
    ]
    assert ids(call(services, a, "DescribeSnapshots", Filters=filters)) == {sa_, sb, sc}
    # Invisible and unknown ids are NotFound; malformed ones Malformed.
    other = make(services, b, tmp_path, "b-private")
    assert code(services, a, "DescribeSnapshots", SnapshotIds=[other]) == "InvalidSnapshot.NotFound"
    assert code(services, a, "DescribeSnapshots", SnapshotIds=["snap-x"]) == (
        "InvalidSnapshotID.Malformed"
    )
    bad = [{"Name": "no-such", "Values": ["x"]}]
    assert code(services, a, "DescribeSnapshots", Filters=bad) == "InvalidParameterValue"


def test_describe_paginates(services: Services, tmp_path: Path) -> None:
    a = ctx_for(services)
    made = {make(services, a, tmp_path, f"p{i}") for i in range(7)}
    seen: list[str] = []
    token = None
    while True:
        params: dict[str, Any] = {"MaxResults": 5, "OwnerIds": ["self"]}
        if token:
            params["NextToken"] = token
        page = call(services, a, "DescribeSnapshots", **params)
        seen += [s["SnapshotId"] for s in page["Snapshots"]]
        token = page.get("NextToken")
        if not token:
            break
    assert sorted(seen) == sorted(made)
    assert code(services, a, "DescribeSnapshots", MaxResults=4) == "InvalidParameterValue"


def test_attributes_owner_only_and_reset(services: Services, tmp_path: Path) -> None:
    a, b = ctx_for(services), ctx_for(services)
    sid = make(services, a, tmp_path)
    share(services, a, sid, UserId=b.account_id)
    call(
        services,
        a,
        "ModifySnapshotAttribute",
        SnapshotId=sid,
        Attribute="createVolumePermission",
        OperationType="add",
        GroupNames=["all"],
    )
    got = call(
        services, a, "DescribeSnapshotAttribute", SnapshotId=sid, Attribute="createVolumePermission"
    )
    assert {next(iter(p.items())) for p in got["CreateVolumePermissions"]} == {
        ("Group", "all"),
        ("UserId", b.account_id),
    }
    assert (
        call(services, a, "DescribeSnapshotAttribute", SnapshotId=sid, Attribute="productCodes")[
            "ProductCodes"
        ]
        == []
    )
    for action in ("DescribeSnapshotAttribute", "ResetSnapshotAttribute"):
        assert (
            code(services, b, action, SnapshotId=sid, Attribute="createVolumePermission")
            == "AuthFailure"
        )
    assert code(services, b, "DeleteSnapshot", SnapshotId=sid) == "AuthFailure"
    assert (
        code(services, a, "DescribeSnapshotAttribute", SnapshotId=sid, Attribute="bogus")
        == "InvalidParameterValue"
    )
    bad = {"Add": [{"UserId": "12"}]}
    assert (
        code(
            services,
            a,
            "ModifySnapshotAttribute",
            SnapshotId=sid,
            Attribute="createVolumePermission",
            CreateVolumePermission=bad,
        )
        == "InvalidUserID.Malformed"
    )
    call(services, a, "ResetSnapshotAttribute", SnapshotId=sid, Attribute="createVolumePermission")
    assert ids(call(services, b, "DescribeSnapshots")) == set()


def test_copy_shares_chunks_and_delete(services: Services, tmp_path: Path) -> None:
    a, b = ctx_for(services), ctx_for(services)
    sid = make(services, a, tmp_path)
    share(services, a, sid, UserId=b.account_id)
    spec = [{"ResourceType": "snapshot", "Tags": [{"Key": "copy", "Value": "yes"}]}]
    copied = call(
        services,
        b,
        "CopySnapshot",
        SourceSnapshotId=sid,
        SourceRegion=b.region,
        Description="mine now",
        TagSpecifications=spec,
    )
    new = copied["SnapshotId"]
    (row,) = call(services, b, "DescribeSnapshots", SnapshotIds=[new])["Snapshots"]
    assert row["OwnerId"] == b.account_id and row["State"] == "completed"
    assert row["Tags"] == [{"Key": "copy", "Value": "yes"}]
    repo = services.snapshots.repository(b.region)
    assert repo.read(new, 0, 3 * 1024 * 1024) == repo.read(sid, 0, 3 * 1024 * 1024)
    assert (
        code(services, b, "CopySnapshot", SourceSnapshotId=sid, SourceRegion="eu-west-1")
        == "InvalidParameterValue"
    )
    call(services, a, "DeleteSnapshot", SnapshotId=sid)
    assert not repo.exists(sid) and repo.exists(new)
    assert code(services, a, "DeleteSnapshot", SnapshotId=sid) == "InvalidSnapshot.NotFound"
    assert code(services, b, "CopySnapshot", SourceSnapshotId=sid, SourceRegion=b.region) == (
        "InvalidSnapshot.NotFound"
    )
