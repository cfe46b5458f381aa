"""CreateImage BlockDeviceMappings: new volumes, snapshot references, overrides, errors.

Fake hypervisor, real catalog, real store and real qcow2 files: the image is captured, then
launched, and the launch's volumes are checked.
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
from instance_helpers import MIB, World

from goldsmith.service.context import RequestContext

REGION = "us-east-1"


def volume_path(world: World, volume_id: str) -> Path:
    return world.services.compute.files.path(REGION, volume_id)


def image(world: World, ctx: RequestContext, image_id: str) -> dict[str, Any]:
    return dict(world.call(ctx, "DescribeImages", ImageIds=[image_id])["Images"][0])


def by_device(mappings: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {m["DeviceName"]: m for m in mappings}


def volumes_of(world: World, ctx: RequestContext, instance_id: str) -> dict[str, dict[str, Any]]:
    found = world.call(
        ctx,
        "DescribeVolumes",
        Filters=[{"Name": "attachment.instance-id", "Values": [instance_id]}],
    )["Volumes"]
    return {v["Attachments"][0]["Device"]: v for v in found}


def data_snapshot(world: World, ctx: RequestContext, fill: bytes = b"data") -> str:
    path = world.disk_file("data.raw", 2 * 1024 * MIB, fill)  # a 2 GiB (sparse) disk
    return world.services.snapshots.create_from_file(ctx, path, description="data").snapshot_id


def test_create_image_adds_empty_and_snapshot_volumes_that_launches_create(world: World) -> None:
    ctx = world.account()
    iid = world.launch(ctx, world.image(ctx))
    snap = data_snapshot(world, ctx)
    new = world.call(
        ctx,
        "CreateImage",
        InstanceId=iid,
        Name="with-volumes",
        BlockDeviceMappings=[
            {
                "DeviceName": "/dev/sdf",
                "Ebs": {"VolumeSize": 3, "VolumeType": "gp3", "DeleteOnTermination": False},
            },
            {"DeviceName": "/dev/sdg", "Ebs": {"SnapshotId": snap}},
            {"DeviceName": "/dev/sdh", "VirtualName": "ephemeral0"},
        ],
    )["ImageId"]
    world.settle()
    described = image(world, ctx, new)
    assert described["State"] == "available"
    mappings = by_device(described["BlockDeviceMappings"])
    assert set(mappings) == {"/dev/xvda", "/dev/sdf", "/dev/sdg", "/dev/sdh"}
    empty = mappings["/dev/sdf"]["Ebs"]
    assert empty.get("SnapshotId") is None  # an empty volume: EC2 records no snapshot
    assert (empty["VolumeSize"], empty["VolumeType"], empty["DeleteOnTermination"]) == (
        3,
        "gp3",
        False,
    )
    assert mappings["/dev/sdg"]["Ebs"]["SnapshotId"] == snap
    assert mappings["/dev/sdg"]["Ebs"]["VolumeSize"] == 2
    assert mappings["/dev/sdh"]["VirtualName"] == "ephemeral0"
    # Only the attached root volume was captured into a new snapshot.
    assert mappings["/dev/xvda"]["Ebs"]["SnapshotId"] != snap

    child = world.launch(ctx, new)
    assert world.state(ctx, child) == "running"
    vols = volumes_of(world, ctx, child)
    assert set(vols) == {"/dev/xvda", "/dev/sdf", "/dev/sdg"}
    assert vols["/dev/sdf"]["Size"] == 3 and vols["/dev/sdf"].get("SnapshotId") in (None, "")
    assert vols["/dev/sdf"]["Attachments"][0]["DeleteOnTermination"] is False
    assert vols["/dev/sdg"]["SnapshotId"] == snap and vols["/dev/sdg"]["Size"] == 2
    devices = [d.device for d in world.hypervisor.disks(world.handle(child))]
    assert devices == ["/dev/xvda", "/dev/sdf", "/dev/sdg"]
    # The snapshot volume holds the snapshot's bytes; the empty one reads zeros.
    out = subprocess.run(
        [
            "qemu-io",
            "-f",
            "qcow2",
            "-r",
            "-U",
            "-c",
            "read -v 0 4",
            str(volume_path(world, vols["/dev/sdg"]["VolumeId"])),
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "data" in out
    out = subprocess.run(
        [
            "qemu-io",
            "-f",
            "qcow2",
            "-r",
            "-U",
            "-c",
            "read -P 0 0 65536",
            str(volume_path(world, vols["/dev/sdf"]["VolumeId"])),
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "Pattern verification failed" not in out
    # Terminating keeps the DeleteOnTermination=false volume.
    world.call(ctx, "TerminateInstances", InstanceIds=[child])
    world.settle()
    left = world.call(ctx, "DescribeVolumes", VolumeIds=[vols["/dev/sdf"]["VolumeId"]])["Volumes"]
    assert left[0]["State"] == "available"


def test_create_image_overrides_delete_on_termination_and_grows_the_root(world: World) -> None:
    ctx = world.account()
    iid = world.launch(
        ctx,
        world.image(ctx),
        BlockDeviceMappings=[{"DeviceName": "/dev/sdf", "Ebs": {"VolumeSize": 1}}],
    )
    new = world.call(
        ctx,
        "CreateImage",
        InstanceId=iid,
        Name="overrides",
        BlockDeviceMappings=[
            {"DeviceName": "/dev/xvda", "Ebs": {"VolumeSize": 5, "DeleteOnTermination": False}},
            {"DeviceName": "sdf", "Ebs": {"DeleteOnTermination": False}},
        ],
    )["ImageId"]
    world.settle()
    mappings = by_device(image(world, ctx, new)["BlockDeviceMappings"])
    root, data = mappings["/dev/xvda"]["Ebs"], mappings["/dev/sdf"]["Ebs"]
    assert (root["VolumeSize"], root["DeleteOnTermination"]) == (5, False)
    assert (data["VolumeSize"], data["DeleteOnTermination"]) == (1, False)
    snap = world.call(ctx, "DescribeSnapshots", SnapshotIds=[root["SnapshotId"]])["Snapshots"][0]
    assert snap["VolumeSize"] == 1  # the snapshot is of the volume as it is
    child = world.launch(ctx, new)
    vols = volumes_of(world, ctx, child)
    assert vols["/dev/xvda"]["Size"] == 5
    path = volume_path(world, vols["/dev/xvda"]["VolumeId"])
    assert world.services.compute.files.size(REGION, vols["/dev/xvda"]["VolumeId"]) == 5 * 1024**3
    assert path.exists()
    assert vols["/dev/xvda"]["Attachments"][0]["DeleteOnTermination"] is False


def test_create_image_excludes_an_attached_volume(world: World) -> None:
    ctx = world.account()
    iid = world.launch(
        ctx,
        world.image(ctx),
        BlockDeviceMappings=[{"DeviceName": "/dev/sdf", "Ebs": {"VolumeSize": 1}}],
    )
    new = world.call(
        ctx,
        "CreateImage",
        InstanceId=iid,
        Name="no-data",
        BlockDeviceMappings=[{"DeviceName": "/dev/sdf", "NoDevice": ""}],
    )["ImageId"]
    world.settle()
    assert set(by_device(image(world, ctx, new)["BlockDeviceMappings"])) == {"/dev/xvda"}


@pytest.mark.parametrize(
    ("mapping", "code"),
    [
        ({"DeviceName": "/dev/bogus0", "Ebs": {"VolumeSize": 1}}, "InvalidBlockDeviceMapping"),
        ({"DeviceName": "/dev/sdf"}, "InvalidBlockDeviceMapping"),
        ({"DeviceName": "/dev/sdf", "Ebs": {}}, "InvalidBlockDeviceMapping"),
        ({"DeviceName": "/dev/xvda", "NoDevice": ""}, "InvalidBlockDeviceMapping"),
        ({"DeviceName": "/dev/xvda", "Ebs": {"VolumeSize": 0}}, "InvalidParameterValue"),
        ({"DeviceName": "/dev/sdf", "Ebs": {"VolumeSize": 99999}}, "InvalidParameterValue"),
        ({"DeviceName": "/dev/xvda", "Ebs": {"VolumeType": "io1"}}, "InvalidBlockDeviceMapping"),
        (
            {"DeviceName": "/dev/xvda", "Ebs": {"SnapshotId": "snap-0123456789abcdef0"}},
            "InvalidBlockDeviceMapping",
        ),
        (
            {"DeviceName": "/dev/sdf", "Ebs": {"SnapshotId": "snap-0123456789abcdef0"}},
            "InvalidSnapshot.NotFound",
        ),
        (
            {"DeviceName": "/dev/sdf", "Ebs": {"SnapshotId": "vol-0123456789abcdef0"}},
            "InvalidSnapshotID.Malformed",
        ),
        ({"DeviceName": "/dev/sdf", "VirtualName": "scratch"}, "InvalidBlockDeviceMapping"),
        (
            {"DeviceName": "/dev/sdf", "Ebs": {"VolumeSize": 1, "VolumeType": "fast"}},
            "InvalidParameterValue",
        ),
    ],
)
def test_create_image_mapping_errors(world: World, mapping: dict[str, Any], code: str) -> None:
    ctx = world.account()
    iid = world.launch(ctx, world.image(ctx))
    assert (
        world.code(ctx, "CreateImage", InstanceId=iid, Name="bad", BlockDeviceMappings=[mapping])
        == code
    )
    # Nothing was written: no image, no snapshot.
    named = [{"Name": "name", "Values": ["bad"]}]
    assert list(world.call(ctx, "DescribeImages", Owners=["self"], Filters=named)["Images"]) == []
    snaps = world.call(ctx, "DescribeSnapshots", OwnerIds=["self"])["Snapshots"]
    assert [s for s in snaps if "CreateImage" in s.get("Description", "")] == []


def test_create_image_size_and_snapshot_checks(world: World) -> None:
    ctx = world.account()
    iid = world.launch(
        ctx,
        world.image(ctx),
        BlockDeviceMappings=[{"DeviceName": "/dev/xvda", "Ebs": {"VolumeSize": 3}}],
    )
    snap = data_snapshot(world, ctx)
    error = world.error(
        ctx,
        "CreateImage",
        InstanceId=iid,
        Name="shrunk",
        BlockDeviceMappings=[{"DeviceName": "/dev/xvda", "Ebs": {"VolumeSize": 2}}],
    )
    assert error.code == "InvalidBlockDeviceMapping" and "smaller than" in error.message
    error = world.error(
        ctx,
        "CreateImage",
        InstanceId=iid,
        Name="small",
        BlockDeviceMappings=[
            {"DeviceName": "/dev/sdf", "Ebs": {"SnapshotId": snap, "VolumeSize": 1}}
        ],
    )
    assert error.code == "InvalidBlockDeviceMapping" and snap in error.message
    error = world.error(
        ctx,
        "CreateImage",
        InstanceId=iid,
        Name="twice",
        BlockDeviceMappings=[
            {"DeviceName": "/dev/sdf", "Ebs": {"VolumeSize": 1}},
            {"DeviceName": "sdf", "Ebs": {"VolumeSize": 2}},
        ],
    )
    assert error.code == "InvalidBlockDeviceMapping" and "multiple" in error.message
    # Another account's private snapshot is not found.
    stranger = world.account()
    assert (
        world.code(
            stranger,
            "CreateImage",
            InstanceId=world.launch(stranger, world.image(stranger)),
            Name="theirs",
            BlockDeviceMappings=[{"DeviceName": "/dev/sdf", "Ebs": {"SnapshotId": snap}}],
        )
        == "InvalidSnapshot.NotFound"
    )
