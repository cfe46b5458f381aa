"""CreateImage and the volume operations with the fake hypervisor (real qcow2 files, real store)."""

from __future__ import annotations

import subprocess
from pathlib import Path

from instance_helpers import MIB, World

REGION = "us-east-1"


def qemu_write(path: Path, offset: int, pattern: int, length: int = 64 * 1024) -> None:
    subprocess.run(
        ["qemu-io", "-f", "qcow2", "-c", f"write -P {pattern} {offset} {length}", str(path)],
        capture_output=True,
        check=True,
    )


def volume_path(world: World, volume_id: str) -> Path:
    return world.services.compute.files.path(REGION, volume_id)


def test_create_image_snapshots_what_changed_and_relaunches(world: World) -> None:
    ctx = world.account()
    image = world.image(ctx, size=4 * MIB)
    iid = world.launch(ctx, image)
    root = world.instance(ctx, iid)["BlockDeviceMappings"][0]["Ebs"]["VolumeId"]
    world.call(ctx, "StopInstances", InstanceIds=[iid])
    world.settle()
    qemu_write(volume_path(world, root), 1 * MIB, 0xAB)
    new = world.call(
        ctx,
        "CreateImage",
        InstanceId=iid,
        Name="captured",
        TagSpecifications=[{"ResourceType": "snapshot", "Tags": [{"Key": "k", "Value": "v"}]}],
    )["ImageId"]
    world.settle()
    described = world.call(ctx, "DescribeImages", ImageIds=[new])["Images"][0]
    assert described["State"] == "available"
    assert described["SourceInstanceId"] == iid
    snap_id = described["BlockDeviceMappings"][0]["Ebs"]["SnapshotId"]
    snap = world.call(ctx, "DescribeSnapshots", SnapshotIds=[snap_id])["Snapshots"][0]
    assert snap["State"] == "completed" and snap["VolumeId"] == root
    assert snap["Tags"] == [{"Key": "k", "Value": "v"}]
    repo = world.services.snapshots.repository(REGION)
    assert repo.read(snap_id, 1 * MIB, 4) == b"\xab" * 4
    assert repo.read(snap_id, 0, 4) == b"root"  # unchanged data comes from the parent
    assert repo.manifest(snap_id).parent is not None
    # A new instance of the captured image sees the change.
    child = world.launch(ctx, new)
    child_root = world.instance(ctx, child)["BlockDeviceMappings"][0]["Ebs"]["VolumeId"]
    out = subprocess.run(
        [
            "qemu-io",
            "-f",
            "qcow2",
            "-r",
            "-U",
            "-c",
            f"read -P 171 {1 * MIB} 65536",
            str(volume_path(world, child_root)),
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "Pattern verification failed" not in out
    # The source instance stays stopped (it was stopped before).
    assert world.state(ctx, iid) == "stopped"


def test_create_image_of_a_running_instance_restarts_it(world: World) -> None:
    ctx = world.account()
    iid = world.launch(ctx, world.image(ctx))
    before = world.handle(iid)
    new = world.call(ctx, "CreateImage", InstanceId=iid, Name="running-one")["ImageId"]
    world.settle()
    assert world.call(ctx, "DescribeImages", ImageIds=[new])["Images"][0]["State"] == "available"
    assert world.state(ctx, iid) == "running"
    assert world.handle(iid) is not None and world.handle(iid) != before  # it was rebooted


def test_create_image_errors(world: World) -> None:
    ctx = world.account()
    other = world.account()
    iid = world.launch(ctx, world.image(ctx))
    world.call(ctx, "CreateImage", InstanceId=iid, Name="dup-name")
    world.settle()
    assert (
        world.code(ctx, "CreateImage", InstanceId=iid, Name="dup-name")
        == "InvalidAMIName.Duplicate"
    )
    assert (
        world.code(other, "CreateImage", InstanceId=iid, Name="x-name")
        == "InvalidInstanceID.NotFound"
    )
    world.call(ctx, "TerminateInstances", InstanceIds=[iid])
    world.settle()
    assert world.code(ctx, "CreateImage", InstanceId=iid, Name="late") == "IncorrectInstanceState"


def test_failed_capture_marks_the_image_failed(world: World) -> None:
    ctx = world.account()
    iid = world.launch(ctx, world.image(ctx))
    root = world.instance(ctx, iid)["BlockDeviceMappings"][0]["Ebs"]["VolumeId"]
    world.call(ctx, "StopInstances", InstanceIds=[iid])
    world.settle()
    volume_path(world, root).unlink()
    new = world.call(ctx, "CreateImage", InstanceId=iid, Name="broken")["ImageId"]
    world.settle()
    image = world.call(ctx, "DescribeImages", ImageIds=[new])["Images"][0]
    assert image["State"] == "failed"
    assert image["StateReason"]["Code"] == "Server.InternalError"


def test_volume_lifecycle_attach_detach_snapshot(world: World) -> None:
    ctx = world.account()
    iid = world.launch(ctx, world.image(ctx))
    assert world.code(ctx, "CreateVolume", Size=1) == "MissingParameter"
    vol = world.call(ctx, "CreateVolume", Size=1, AvailabilityZone="us-east-1a")
    assert vol["State"] == "creating"
    world.settle()
    vid = vol["VolumeId"]
    assert world.call(ctx, "DescribeVolumes", VolumeIds=[vid])["Volumes"][0]["State"] == "available"
    world.call(ctx, "AttachVolume", VolumeId=vid, InstanceId=iid, Device="/dev/sdf")
    devices = [d.device for d in world.hypervisor.disks(world.handle(iid))]
    assert devices == ["/dev/xvda", "/dev/sdf"]
    described = world.call(ctx, "DescribeVolumes", VolumeIds=[vid])["Volumes"][0]
    assert described["State"] == "in-use" and described["Attachments"][0]["InstanceId"] == iid
    assert world.code(ctx, "DeleteVolume", VolumeId=vid) == "VolumeInUse"
    attached = world.call(
        ctx, "DescribeVolumes", Filters=[{"Name": "attachment.instance-id", "Values": [iid]}]
    )["Volumes"]
    assert len(attached) == 2
    qemu_write(volume_path(world, vid), 0, 0x5A)
    snap = world.call(ctx, "CreateSnapshot", VolumeId=vid, Description="data")
    world.settle()
    done = world.call(ctx, "DescribeSnapshots", SnapshotIds=[snap["SnapshotId"]])["Snapshots"][0]
    assert done["State"] == "completed"
    assert world.services.snapshots.repository(REGION).read(snap["SnapshotId"], 0, 2) == b"ZZ"
    world.call(ctx, "DetachVolume", VolumeId=vid)
    assert [d.device for d in world.hypervisor.disks(world.handle(iid))] == ["/dev/xvda"]
    world.call(ctx, "DeleteVolume", VolumeId=vid)
    assert world.code(ctx, "DescribeVolumes", VolumeIds=[vid]) == "InvalidVolume.NotFound"
    # A volume from the snapshot holds its data.
    restored = world.call(
        ctx, "CreateVolume", SnapshotId=snap["SnapshotId"], AvailabilityZone="us-east-1a"
    )
    world.settle()
    path = volume_path(world, restored["VolumeId"])
    out = subprocess.run(
        ["qemu-io", "-f", "qcow2", "-r", "-c", "read -P 90 0 65536", str(path)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "Pattern verification failed" not in out
    assert (
        world.code(ctx, "DeleteVolume", VolumeId="vol-12345678901234567")
        == "InvalidVolume.NotFound"
    )
    other = world.account()
    assert (
        world.code(other, "DeleteVolume", VolumeId=restored["VolumeId"]) == "InvalidVolume.NotFound"
    )


def test_create_snapshots_of_an_instance(world: World) -> None:
    ctx = world.account()
    iid = world.launch(
        ctx,
        world.image(ctx),
        BlockDeviceMappings=[{"DeviceName": "/dev/sdg", "Ebs": {"VolumeSize": 1}}],
    )
    out = world.call(ctx, "CreateSnapshots", InstanceSpecification={"InstanceId": iid})
    assert len(out["Snapshots"]) == 2
    world.settle()
    states = world.call(
        ctx, "DescribeSnapshots", SnapshotIds=[s["SnapshotId"] for s in out["Snapshots"]]
    )["Snapshots"]
    assert {s["State"] for s in states} == {"completed"}
    assert world.state(ctx, iid) == "running"
