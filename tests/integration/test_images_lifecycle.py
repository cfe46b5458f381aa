"""The whole image lifecycle over the API, with boto3 and with the ``aws`` CLI.

A disk file becomes a snapshot (admin CLI), is registered, found by filter, shared, refused
public sharing under block public access, deprecated, disabled, binned, restored, and
deregistered for good with its snapshots; the store frees the image's unique data at GC.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from harness import Creds, Server

pytestmark = pytest.mark.integration
MiB = 1024 * 1024


def code_of(call: Any, **kwargs: Any) -> str:
    with pytest.raises(ClientError) as info:
        call(**kwargs)
    return str(info.value.response["Error"]["Code"])


def disk(tmp_path: Path, name: str) -> Path:
    path = tmp_path / name
    with path.open("wb") as handle:
        handle.truncate(4 * MiB)
        handle.seek(MiB)
        handle.write(os.urandom(MiB))  # unique data the store must free later
    return path


def snapshot_of(server: Server, creds: Creds, path: Path) -> str:
    return server.cli(
        "platform", "snapshot", str(path), "--account", creds.account_id
    ).stdout.strip()


def retain_images(server: Server, creds: Creds, days: int = 7) -> None:
    """A Region-level EC2_IMAGE retention rule, through the rbin API."""
    server.client(creds, service="rbin").create_rule(
        ResourceType="EC2_IMAGE",
        RetentionPeriod={"RetentionPeriodValue": days, "RetentionPeriodUnit": "DAYS"},
    )


def store_bytes(server: Server) -> int:
    out = server.cli("store", "usage", "--json").stdout
    data = json.loads(out)
    return int(data["stored"])


def test_lifecycle_with_boto3(server: Server, tmp_path: Path) -> None:
    owner, friend, stranger = server.new_account(), server.new_account(), server.new_account()
    ec2, friend_ec2, stranger_ec2 = (server.client(c) for c in (owner, friend, stranger))
    snap = snapshot_of(server, owner, disk(tmp_path, "root.raw"))
    image_id = ec2.register_image(
        Name="lifecycle-web-1",
        Architecture="x86_64",
        VirtualizationType="hvm",
        RootDeviceName="/dev/xvda",
        BlockDeviceMappings=[{"DeviceName": "/dev/xvda", "Ebs": {"SnapshotId": snap}}],
        TagSpecifications=[{"ResourceType": "image", "Tags": [{"Key": "app", "Value": "web"}]}],
    )["ImageId"]
    ec2.get_waiter("image_exists").wait(ImageIds=[image_id])
    ec2.get_waiter("image_available").wait(ImageIds=[image_id])

    found = ec2.describe_images(
        Owners=["self"],
        Filters=[
            {"Name": "name", "Values": ["lifecycle-*"]},
            {"Name": "tag:app", "Values": ["web"]},
        ],
    )["Images"]
    assert [i["ImageId"] for i in found] == [image_id]
    assert found[0]["BlockDeviceMappings"][0]["Ebs"]["VolumeSize"] == 1

    # Not shared yet: the friend cannot see it; then it can, and reads its snapshot.
    assert code_of(friend_ec2.describe_images, ImageIds=[image_id]) == "InvalidAMIID.NotFound"
    ec2.modify_image_attribute(
        ImageId=image_id, LaunchPermission={"Add": [{"UserId": friend.account_id}]}
    )
    assert [
        i["ImageId"] for i in friend_ec2.describe_images(ExecutableUsers=["self"])["Images"]
    ] == [image_id]
    assert code_of(stranger_ec2.describe_images, ImageIds=[image_id]) == "InvalidAMIID.NotFound"
    assert code_of(friend_ec2.deregister_image, ImageId=image_id) == "AuthFailure"

    # Block public access refuses public sharing; once lifted, everyone sees it.
    ec2.enable_image_block_public_access(ImageBlockPublicAccessState="block-new-sharing")
    public = {"Add": [{"Group": "all"}]}
    assert code_of(ec2.modify_image_attribute, ImageId=image_id, LaunchPermission=public) == (
        "OperationNotPermitted"
    )
    ec2.disable_image_block_public_access()
    ec2.modify_image_attribute(ImageId=image_id, LaunchPermission=public)
    assert stranger_ec2.describe_images(ImageIds=[image_id])["Images"][0]["Public"] is True

    # Deprecation is reported; disabling hides it from everyone else and unshares it.
    ec2.enable_image_deprecation(ImageId=image_id, DeprecateAt="2031-01-01T00:00:00Z")
    (image,) = ec2.describe_images(ImageIds=[image_id])["Images"]
    assert image["DeprecationTime"] == "2031-01-01T00:00:00.000Z"
    ec2.disable_image(ImageId=image_id)
    assert code_of(stranger_ec2.describe_images, ImageIds=[image_id]) == "InvalidAMIID.NotFound"
    assert ec2.describe_images(Owners=["self"])["Images"] == []
    assert ec2.describe_images(Owners=["self"], IncludeDisabled=True)["Images"][0]["State"] == (
        "disabled"
    )
    ec2.enable_image(ImageId=image_id)

    # Into the recycle bin and back.
    retain_images(server, owner)
    ec2.deregister_image(ImageId=image_id)
    binned = ec2.list_images_in_recycle_bin()["Images"]
    assert [b["ImageId"] for b in binned] == [image_id]
    assert code_of(ec2.delete_snapshot, SnapshotId=snap) == "InvalidSnapshot.InUse"
    ec2.restore_image_from_recycle_bin(ImageId=image_id)
    assert ec2.describe_images(ImageIds=[image_id])["Images"][0]["State"] == "available"


def test_deregister_for_good_frees_store_data(server: Server, tmp_path: Path) -> None:
    owner = server.new_account()
    ec2 = server.client(owner)
    snap = snapshot_of(server, owner, disk(tmp_path, "gone.raw"))
    image_id = ec2.register_image(
        Name="to-be-deleted",
        RootDeviceName="/dev/xvda",
        BlockDeviceMappings=[{"DeviceName": "/dev/xvda", "Ebs": {"SnapshotId": snap}}],
    )["ImageId"]
    assert code_of(ec2.delete_snapshot, SnapshotId=snap) == "InvalidSnapshot.InUse"
    before = store_bytes(server)
    out = ec2.deregister_image(ImageId=image_id, DeleteAssociatedSnapshots=True)
    assert out["DeleteSnapshotResults"] == [{"SnapshotId": snap, "ReturnCode": "success"}]
    assert code_of(ec2.describe_snapshots, SnapshotIds=[snap]) == "InvalidSnapshot.NotFound"
    server.cli("store", "gc", "--grace", "0")
    assert store_bytes(server) < before


def test_lifecycle_with_aws_cli(server: Server, tmp_path: Path) -> None:
    owner, friend = server.new_account(), server.new_account()
    snap = snapshot_of(server, owner, disk(tmp_path, "cli.raw"))

    def aws(*args: str, creds: Creds = owner) -> Any:
        done = server.aws("ec2", *args, creds=creds)
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout) if done.stdout.strip() else {}

    mapping = json.dumps([{"DeviceName": "/dev/xvda", "Ebs": {"SnapshotId": snap}}])
    image_id = aws(
        "register-image", "--name", "cli-image-1", "--root-device-name", "/dev/xvda",
        "--block-device-mappings", mapping, "--virtualization-type", "hvm",
    )["ImageId"]  # fmt: skip
    aws("wait", "image-available", "--image-ids", image_id)
    listed = aws("describe-images", "--owners", "self", "--filters", "Name=name,Values=cli-*")
    assert [i["ImageId"] for i in listed["Images"]] == [image_id]
    aws(
        "modify-image-attribute", "--image-id", image_id,
        "--launch-permission", f"Add=[{{UserId={friend.account_id}}}]",
    )  # fmt: skip
    assert aws("describe-images", "--image-ids", image_id, creds=friend)["Images"]
    perms = aws(
        "describe-image-attribute", "--image-id", image_id, "--attribute", "launchPermission"
    )
    assert perms["LaunchPermissions"] == [{"UserId": friend.account_id}]
    aws(
        "enable-image-block-public-access", "--image-block-public-access-state", "block-new-sharing"
    )
    refused = server.aws(
        "ec2", "modify-image-attribute", "--image-id", image_id,
        "--launch-permission", "Add=[{Group=all}]", creds=owner,
    )  # fmt: skip
    assert refused.returncode != 0 and "OperationNotPermitted" in refused.stderr
    aws("disable-image", "--image-id", image_id)
    aws("enable-image", "--image-id", image_id)
    out = aws("deregister-image", "--image-id", image_id, "--delete-associated-snapshots")
    assert out["DeleteSnapshotResults"][0]["ReturnCode"] == "success"
    bad = server.aws("ec2", "describe-images", "--image-ids", image_id, creds=owner)
    assert "InvalidAMIID.NotFound" in bad.stderr


@pytest.mark.parametrize(
    ("action", "params", "code"),
    [
        ("describe_images", {"ImageIds": ["ami-bad"]}, "InvalidAMIID.Malformed"),
        ("describe_images", {"ImageIds": ["ami-0123456789abcdef0"]}, "InvalidAMIID.NotFound"),
        (
            "describe_images",
            {"Filters": [{"Name": "name", "Values": [f"v{i}" for i in range(1000)]}]},
            "InvalidParameterValue",
        ),
        (
            "describe_images",
            {"Filters": [{"Name": "colour", "Values": ["x"]}]},
            "InvalidParameterValue",
        ),
        (
            "describe_image_attribute",
            {"ImageId": "ami-0123456789abcdef0", "Attribute": "colour"},
            "InvalidParameterValue",
        ),
        (
            "register_image",
            {
                "Name": "bad-device",
                "RootDeviceName": "/dev/xvda",
                "BlockDeviceMappings": [
                    {"DeviceName": "/dev/floppy", "Ebs": {"SnapshotId": "snap-0123456789abcdef0"}}
                ],
            },
            "InvalidBlockDeviceMapping",
        ),
        (
            "register_image",
            {
                "Name": "long-description",
                "Description": "d" * 256,
                "BlockDeviceMappings": [
                    {"DeviceName": "/dev/sda1", "Ebs": {"SnapshotId": "snap-0123456789abcdef0"}}
                ],
            },
            "InvalidParameterValue",
        ),
        ("deregister_image", {"ImageId": "snap-0123456789abcdef0"}, "InvalidAMIID.Malformed"),
    ],
)
def test_bad_input_gets_ec2_errors(
    ec2: Any, action: str, params: dict[str, Any], code: str
) -> None:
    with pytest.raises(ClientError) as info:
        getattr(ec2, action)(**params)
    assert info.value.response["Error"]["Code"] == code
    assert info.value.response["ResponseMetadata"]["HTTPStatusCode"] < 500


def test_platform_images_answer_owners_amazon(server: Server, tmp_path: Path) -> None:
    image_id = server.cli(
        "platform", "publish", "--name", "platform-base-1", "--root", str(disk(tmp_path, "p.raw"))
    ).stdout.strip()
    ec2 = server.client(server.new_account())
    found = ec2.describe_images(
        Owners=["amazon"], Filters=[{"Name": "name", "Values": ["platform-base-*"]}]
    )
    (image,) = found["Images"]
    assert image["ImageId"] == image_id
    assert image["ImageOwnerAlias"] == "amazon" and image["Public"] is True
