"""Snapshots and the recycle bin: EBS_SNAPSHOT rules, list, restore, expiry, and the rule API."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from snapshot_helpers import REGION, ctx_for, disk

from goldsmith.catalog import snapshots as rows
from goldsmith.service.app import Services
from goldsmith.service.context import RequestContext
from goldsmith.service.errors import ClientError
from goldsmith.service.operations import dispatch
from goldsmith.store import SnapshotNotFoundError


def call(services: Services, ctx: RequestContext, action: str, **params: Any) -> dict[str, Any]:
    return dispatch(services.operations, ctx, action, params)


def code(services: Services, ctx: RequestContext, action: str, **params: Any) -> str:
    with pytest.raises(ClientError) as exc:
        call(services, ctx, action, **params)
    return exc.value.code


def rbin_code(fn: Any, ctx: RequestContext, **params: Any) -> tuple[str, int]:
    with pytest.raises(ClientError) as exc:
        fn(ctx, params)
    return exc.value.code, exc.value.status


def make(services: Services, ctx: RequestContext, tmp_path: Path, tags: dict[str, str]) -> str:
    path = disk(tmp_path, f"{ctx.account_id}-{len(list(tmp_path.iterdir()))}.raw")
    row = services.snapshots.create_from_file(ctx, path, description="d", tags=tags)
    return row.snapshot_id


def rule(services: Services, ctx: RequestContext, days: int = 7, **extra: Any) -> str:
    out = services.rbin.create_rule(
        ctx,
        {
            "ResourceType": "EBS_SNAPSHOT",
            "RetentionPeriod": {"RetentionPeriodValue": days, "RetentionPeriodUnit": "DAYS"},
            **extra,
        },
    )
    return str(out["Identifier"])


def binned(services: Services, ctx: RequestContext) -> list[str]:
    return [s["SnapshotId"] for s in call(services, ctx, "ListSnapshotsInRecycleBin")["Snapshots"]]


def test_without_a_rule_delete_is_final(services: Services, tmp_path: Path) -> None:
    me = ctx_for(services)
    rule(services, me, ResourceTags=[{"ResourceTagKey": "keep"}])  # tag-level: not matching
    sid = make(services, me, tmp_path, {"app": "web"})
    call(services, me, "DeleteSnapshot", SnapshotId=sid)
    assert binned(services, me) == []
    with pytest.raises(SnapshotNotFoundError):
        services.snapshots.repository(REGION).manifest(sid)


def test_rule_bins_then_restore_keeps_tags_and_grants(services: Services, tmp_path: Path) -> None:
    me, friend = ctx_for(services), ctx_for(services)
    rule(services, me, days=3)
    sid = make(services, me, tmp_path, {"app": "web"})
    call(
        services,
        me,
        "ModifySnapshotAttribute",
        SnapshotId=sid,
        CreateVolumePermission={"Add": [{"UserId": friend.account_id}]},
    )
    call(services, me, "DeleteSnapshot", SnapshotId=sid)

    (entry,) = call(services, me, "ListSnapshotsInRecycleBin")["Snapshots"]
    assert entry["SnapshotId"] == sid and entry["Description"] == "d"
    assert entry["RecycleBinExitTime"] - entry["RecycleBinEnterTime"] == timedelta(days=3)
    # In the bin, nobody sees, reads, changes or tags it; others do not list it in theirs.
    assert code(services, me, "DescribeSnapshots", SnapshotIds=[sid]) == "InvalidSnapshot.NotFound"
    assert code(services, friend, "DescribeSnapshots", SnapshotIds=[sid]) == (
        "InvalidSnapshot.NotFound"
    )
    assert code(services, me, "DeleteSnapshot", SnapshotId=sid) == "InvalidSnapshot.NotFound"
    assert code(services, me, "CopySnapshot", SourceSnapshotId=sid, SourceRegion=REGION) == (
        "InvalidSnapshot.NotFound"
    )
    tag = [{"Key": "x", "Value": "y"}]
    assert code(services, me, "CreateTags", Resources=[sid], Tags=tag) == (
        "InvalidSnapshot.NotFound"
    )
    assert binned(services, friend) == []
    assert code(services, friend, "RestoreSnapshotFromRecycleBin", SnapshotId=sid) == (
        "InvalidSnapshot.NotFound"
    )

    restored = call(services, me, "RestoreSnapshotFromRecycleBin", SnapshotId=sid)
    assert restored["SnapshotId"] == sid and restored["State"] == "completed"
    (snap,) = call(services, friend, "DescribeSnapshots", SnapshotIds=[sid])["Snapshots"]
    assert snap["Tags"] == [{"Key": "app", "Value": "web"}]
    assert binned(services, me) == []
    assert code(services, me, "RestoreSnapshotFromRecycleBin", SnapshotId=sid) == (
        "InvalidSnapshot.NotFound"
    )


def test_tag_level_rules_and_exclusions(services: Services, tmp_path: Path) -> None:
    me = ctx_for(services)
    rule(services, me, days=2, ResourceTags=[{"ResourceTagKey": "env", "ResourceTagValue": "prod"}])
    rule(services, me, days=9, ExcludeResourceTags=[{"ResourceTagKey": "scratch"}])
    prod = make(services, me, tmp_path, {"env": "prod"})
    scratch = make(services, me, tmp_path, {"scratch": "1"})
    both = make(services, me, tmp_path, {"env": "prod", "scratch": "1"})
    for sid in (prod, scratch, both):
        call(services, me, "DeleteSnapshot", SnapshotId=sid)
    entries = {
        s["SnapshotId"]: s["RecycleBinExitTime"] - s["RecycleBinEnterTime"]
        for s in call(services, me, "ListSnapshotsInRecycleBin")["Snapshots"]
    }
    # prod: both rules match, the longer wins; scratch: excluded; both: only the tag rule.
    assert entries == {prod: timedelta(days=9), both: timedelta(days=2)}
    assert [
        s["SnapshotId"]
        for s in call(services, me, "ListSnapshotsInRecycleBin", SnapshotIds=[both])["Snapshots"]
    ] == [both]


def test_expired_snapshots_are_deleted_for_good(services: Services, tmp_path: Path) -> None:
    me = ctx_for(services)
    rule(services, me)
    lazy, swept = make(services, me, tmp_path, {}), make(services, me, tmp_path, {})
    for sid in (lazy, swept):
        call(services, me, "DeleteSnapshot", SnapshotId=sid)
    past = datetime.now(UTC) - timedelta(seconds=1)
    with services.catalog.begin() as conn:
        rows.update_snapshot(conn, lazy, recycle_bin_exit=past)
    assert binned(services, me) == [swept]  # purged lazily before listing
    assert code(services, me, "RestoreSnapshotFromRecycleBin", SnapshotId=lazy) == (
        "InvalidSnapshot.NotFound"
    )
    with services.catalog.begin() as conn:
        rows.update_snapshot(conn, swept, recycle_bin_exit=past)
    assert services.sweep_recycle_bin() == 1
    with services.catalog.begin() as conn:
        assert rows.get_snapshot(conn, REGION, swept) is None
    with pytest.raises(SnapshotNotFoundError):
        services.snapshots.repository(REGION).manifest(swept)


def test_bin_pagination(services: Services, tmp_path: Path) -> None:
    me = ctx_for(services)
    rule(services, me)
    made = sorted(make(services, me, tmp_path, {}) for _ in range(6))
    for sid in made:
        call(services, me, "DeleteSnapshot", SnapshotId=sid)
    first = call(services, me, "ListSnapshotsInRecycleBin", MaxResults=5)
    second = call(
        services, me, "ListSnapshotsInRecycleBin", MaxResults=5, NextToken=first["NextToken"]
    )
    assert [s["SnapshotId"] for s in first["Snapshots"] + second["Snapshots"]] == made
    assert second["NextToken"] is None


def test_rule_api_tags_pages_and_locks(services: Services) -> None:
    me, other = ctx_for(services), ctx_for(services)
    rbin = services.rbin
    ids = sorted(rule(services, me, Tags=[{"Key": "team", "Value": "a"}]) for _ in range(3))
    arn = rbin.get_rule(me, {"Identifier": ids[0]})["RuleArn"]
    assert arn == f"arn:aws:rbin:{REGION}:{me.account_id}:rule/{ids[0]}"
    rbin.tag_resource(me, {"ResourceArn": arn, "Tags": [{"Key": "cost", "Value": "1"}]})
    rbin.untag_resource(me, {"ResourceArn": arn, "TagKeys": ["team"]})
    assert rbin.list_tags_for_resource(me, {"ResourceArn": arn})["Tags"] == [
        {"Key": "cost", "Value": "1"}
    ]
    assert rbin_code(rbin.list_tags_for_resource, other, ResourceArn=arn) == (
        "ResourceNotFoundException",
        404,
    )
    assert rbin_code(rbin.get_rule, other, Identifier=ids[0]) == ("ResourceNotFoundException", 404)
    page = rbin.list_rules(me, {"ResourceType": "EBS_SNAPSHOT", "MaxResults": 2})
    rest = rbin.list_rules(
        me, {"ResourceType": "EBS_SNAPSHOT", "MaxResults": 2, "NextToken": page["NextToken"]}
    )
    assert [r["Identifier"] for r in page["Rules"] + rest["Rules"]] == ids
    assert rest["NextToken"] is None
    assert rbin.list_rules(me, {"ResourceType": "EC2_IMAGE"})["Rules"] == []
    assert rbin_code(rbin.handlers()["LockRule"], me, Identifier=ids[0])[0] == (
        "ValidationException"
    )
    assert rbin_code(rbin.create_rule, me, ResourceType="EBS_SNAPSHOT")[0] == (
        "ValidationException"
    )


def test_deregister_with_associated_snapshots_bins_them(services: Services, tmp_path: Path) -> None:
    me = ctx_for(services)
    rule(services, me)
    sid = make(services, me, tmp_path, {})
    image = call(
        services,
        me,
        "RegisterImage",
        Name="binned-snapshots",
        RootDeviceName="/dev/xvda",
        BlockDeviceMappings=[{"DeviceName": "/dev/xvda", "Ebs": {"SnapshotId": sid}}],
    )["ImageId"]
    out = call(services, me, "DeregisterImage", ImageId=image, DeleteAssociatedSnapshots=True)
    assert out["DeleteSnapshotResults"] == [{"SnapshotId": sid, "ReturnCode": "success"}]
    assert binned(services, me) == [sid]
