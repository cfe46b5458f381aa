"""Deregistration (snapshots, protection, recycle bin), deprecation, ancestry, rbin rules."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from image_helpers import World

from goldsmith.catalog import images as rows
from goldsmith.service.errors import ClientError
from goldsmith.service.images.rbin import RecycleBinService


def _snapshots_of(world: World, ctx: Any, image_id: str) -> list[str]:
    (image,) = world.call(ctx, "DescribeImages", ImageIds=[image_id])["Images"]
    return [d["Ebs"]["SnapshotId"] for d in image["BlockDeviceMappings"] if "Ebs" in d]


def test_deregister_with_associated_snapshots(world: World) -> None:
    me = world.account()
    image_id = world.register(me)
    (snap,) = _snapshots_of(world, me, image_id)
    with world.catalog.begin() as conn:
        assert world.images.image_using(conn, "us-east-1", snap) == image_id
    out = world.call(me, "DeregisterImage", ImageId=image_id, DeleteAssociatedSnapshots=True)
    assert out["DeleteSnapshotResults"] == [{"SnapshotId": snap, "ReturnCode": "success"}]
    assert world.snapshots.deleted == [snap]
    assert world.code(me, "DescribeImages", ImageIds=[image_id]) == "InvalidAMIID.NotFound"
    assert world.code(me, "DeregisterImage", ImageId=image_id) == "InvalidAMIID.NotFound"


def test_shared_snapshot_is_reported_not_deleted(world: World) -> None:
    me = world.account()
    first = world.register(me)
    (snap,) = _snapshots_of(world, me, first)
    second = world.register(
        me, BlockDeviceMappings=[{"DeviceName": "/dev/xvda", "Ebs": {"SnapshotId": snap}}]
    )
    out = world.call(me, "DeregisterImage", ImageId=first, DeleteAssociatedSnapshots=True)
    assert out["DeleteSnapshotResults"] == [{"SnapshotId": snap, "ReturnCode": "client-error"}]
    assert world.ids(me, ImageIds=[second]) == [second]


def test_deregistration_protection_and_cooldown(world: World) -> None:
    me = world.account()
    image_id = world.register(me)
    world.call(me, "EnableImageDeregistrationProtection", ImageId=image_id, WithCooldown=True)
    (image,) = world.call(me, "DescribeImages", ImageIds=[image_id])["Images"]
    assert image["DeregistrationProtection"] == "enabled-with-cooldown"
    assert world.code(me, "DeregisterImage", ImageId=image_id) == "OperationNotPermitted"
    world.call(me, "DisableImageDeregistrationProtection", ImageId=image_id)
    (image,) = world.call(me, "DescribeImages", ImageIds=[image_id])["Images"]
    assert image["DeregistrationProtection"].startswith("disabled-until-")
    assert world.code(me, "DeregisterImage", ImageId=image_id) == "OperationNotPermitted"
    with world.catalog.begin() as conn:
        rows.update_image(conn, image_id, protection_cooldown_until=datetime.now(UTC))
    world.call(me, "DeregisterImage", ImageId=image_id)
    # Without cooldown, disabling protection takes effect at once.
    other = world.register(me)
    world.call(me, "EnableImageDeregistrationProtection", ImageId=other)
    world.call(me, "DisableImageDeregistrationProtection", ImageId=other)
    world.call(me, "DeregisterImage", ImageId=other)


def test_recycle_bin_rules_retain_and_restore(world: World) -> None:
    me, other = world.account(), world.account()
    rbin = RecycleBinService(world.catalog)
    rule = rbin.create_rule(
        me,
        {
            "ResourceType": "EC2_IMAGE",
            "RetentionPeriod": {"RetentionPeriodValue": 7, "RetentionPeriodUnit": "DAYS"},
            "ResourceTags": [{"ResourceTagKey": "keep", "ResourceTagValue": "yes"}],
        },
    )
    assert rbin.get_rule(me, {"Identifier": rule["Identifier"]})["RuleArn"].startswith(
        "arn:aws:rbin"
    )
    listed = rbin.list_rules(me, {"ResourceType": "EC2_IMAGE"})["Rules"]
    assert [r["Identifier"] for r in listed] == [rule["Identifier"]]
    with pytest.raises(ClientError) as info:
        rbin.get_rule(other, {"Identifier": rule["Identifier"]})
    assert info.value.code == "ResourceNotFoundException"

    kept = world.register(
        me,
        "kept-image",
        TagSpecifications=[{"ResourceType": "image", "Tags": [{"Key": "keep", "Value": "yes"}]}],
    )
    gone = world.register(me)
    world.call(
        me,
        "ModifyImageAttribute",
        ImageId=kept,
        LaunchPermission={"Add": [{"UserId": other.account_id}]},
    )
    world.call(me, "DeregisterImage", ImageId=kept, DeleteAssociatedSnapshots=True)
    world.call(me, "DeregisterImage", ImageId=gone)
    assert world.snapshots.deleted == []  # a binned image keeps its snapshots
    binned = world.call(me, "ListImagesInRecycleBin")["Images"]
    assert [b["ImageId"] for b in binned] == [kept]
    assert binned[0]["RecycleBinExitTime"] - binned[0]["RecycleBinEnterTime"] == timedelta(days=7)
    assert kept not in world.ids(me) and kept not in world.ids(other)
    assert world.call(other, "ListImagesInRecycleBin")["Images"] == []
    assert world.code(other, "RestoreImageFromRecycleBin", ImageId=kept) == "InvalidAMIID.NotFound"
    world.call(me, "RestoreImageFromRecycleBin", ImageId=kept)
    assert kept in world.ids(me) and kept in world.ids(other)  # grants survive the bin
    (image,) = world.call(me, "DescribeImages", ImageIds=[kept])["Images"]
    assert image["Tags"] == [{"Key": "keep", "Value": "yes"}]

    rbin.update_rule(me, {"Identifier": rule["Identifier"], "ResourceTags": []})
    world.call(me, "DeregisterImage", ImageId=kept)
    with world.catalog.begin() as conn:
        rows.update_image(conn, kept, recycle_bin_exit=datetime.now(UTC) - timedelta(seconds=1))
    assert world.call(me, "ListImagesInRecycleBin")["Images"] == []  # expired → purged
    rbin.delete_rule(me, {"Identifier": rule["Identifier"]})
    assert rbin.list_rules(me, {"ResourceType": "EC2_IMAGE"})["Rules"] == []


@pytest.mark.parametrize(
    "params",
    [
        {
            "ResourceType": "EC2_VOLUME",
            "RetentionPeriod": {"RetentionPeriodValue": 1, "RetentionPeriodUnit": "DAYS"},
        },
        {
            "ResourceType": "EC2_IMAGE",
            "RetentionPeriod": {"RetentionPeriodValue": 0, "RetentionPeriodUnit": "DAYS"},
        },
        {"ResourceType": "EC2_IMAGE"},
    ],
)
def test_rule_validation(world: World, params: dict[str, Any]) -> None:
    with pytest.raises(ClientError) as info:
        RecycleBinService(world.catalog).create_rule(world.account(), params)
    assert info.value.code == "ValidationException"


def test_deprecation_rounds_up_and_can_be_cancelled(world: World) -> None:
    me = world.account()
    image_id = world.register(me)
    at = datetime.now(UTC).replace(microsecond=0) + timedelta(days=1, seconds=1)
    world.call(me, "EnableImageDeprecation", ImageId=image_id, DeprecateAt=at)
    (image,) = world.call(me, "DescribeImages", ImageIds=[image_id])["Images"]
    assert image["DeprecationTime"].endswith(":00.000Z")
    world.call(me, "DisableImageDeprecation", ImageId=image_id)
    (image,) = world.call(me, "DescribeImages", ImageIds=[image_id])["Images"]
    assert "DeprecationTime" not in image or image["DeprecationTime"] is None
    far = datetime.now(UTC) + timedelta(days=4000)
    assert (
        world.code(me, "EnableImageDeprecation", ImageId=image_id, DeprecateAt=far)
        == "InvalidParameterValue"
    )


def test_ancestry_follows_source_links(world: World) -> None:
    me = world.account()
    base = world.register(me)
    child = world.register(me)
    with world.catalog.begin() as conn:
        rows.update_image(conn, child, source_image_id=base, source_image_region="us-east-1")
    entries = world.call(me, "GetImageAncestry", ImageId=child)["ImageAncestryEntries"]
    assert [e["ImageId"] for e in entries] == [child, base]
    assert entries[0]["SourceImageId"] == base
    (image,) = world.call(me, "DescribeImages", ImageIds=[child])["Images"]
    assert image["SourceImageId"] == base
    assert world.ids(me, Filters=[{"Name": "source-image-id", "Values": [base]}]) == [child]
