"""Tags belong to the account that set them: grantees neither see nor filter on them (EC2)."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness import Server

pytestmark = pytest.mark.integration


def test_shared_image_tags_stay_with_the_owner(server: Server, tmp_path: Path) -> None:
    owner, grantee = server.new_account(), server.new_account()
    disk = tmp_path / "disk.raw"
    disk.write_bytes(b"\x01" * 1024 * 1024)
    snap = server.cli("platform", "snapshot", str(disk), "--account", owner.account_id)
    ec2 = server.client(owner)
    image_id = ec2.register_image(
        Name="tagged-shared",
        RootDeviceName="/dev/xvda",
        BlockDeviceMappings=[
            {"DeviceName": "/dev/xvda", "Ebs": {"SnapshotId": snap.stdout.strip()}}
        ],
        TagSpecifications=[{"ResourceType": "image", "Tags": [{"Key": "team", "Value": "red"}]}],
    )["ImageId"]
    ec2.modify_image_attribute(
        ImageId=image_id, LaunchPermission={"Add": [{"UserId": grantee.account_id}]}
    )
    mine = ec2.describe_images(Filters=[{"Name": "tag:team", "Values": ["red"]}])["Images"]
    assert [(i["ImageId"], i["Tags"]) for i in mine] == [
        (image_id, [{"Key": "team", "Value": "red"}])
    ]
    theirs = server.client(grantee)
    (seen,) = theirs.describe_images(ImageIds=[image_id])["Images"]
    assert "Tags" not in seen
    assert theirs.describe_images(Filters=[{"Name": "tag:team", "Values": ["red"]}])["Images"] == []
