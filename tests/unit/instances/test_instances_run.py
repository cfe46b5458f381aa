"""RunInstances, DescribeInstances and state changes with the fake hypervisor."""

from __future__ import annotations

import base64
import subprocess

import pytest
from instance_helpers import MIB, World, b64

from goldsmith.compute import FakeHypervisor
from goldsmith.compute.instance_types import Host


def test_run_boots_a_vm_and_describe_shows_ec2_fields(world: World) -> None:
    ctx = world.account()
    image = world.image(public=True)
    out = world.run(ctx, image, InstanceType="t2.micro", UserData=b64(b"#!/bin/sh\necho hi\n"))
    assert out["ReservationId"].startswith("r-")
    first = out["Instances"][0]
    assert first["State"] == {"Code": 0, "Name": "pending"}
    world.settle()
    inst = world.instance(ctx, first["InstanceId"])
    assert inst["State"] == {"Code": 16, "Name": "running"}
    assert inst["PublicIpAddress"].startswith("127.100.")
    assert inst["PrivateIpAddress"].startswith("172.31.")
    assert inst["PrivateDnsName"].endswith(".ec2.internal")
    assert inst["ImageId"] == image and inst["InstanceType"] == "t2.micro"
    assert inst["RootDeviceName"] == "/dev/xvda" and inst["RootDeviceType"] == "ebs"
    (bdm,) = inst["BlockDeviceMappings"]
    assert bdm["DeviceName"] == "/dev/xvda" and bdm["Ebs"]["DeleteOnTermination"] is True
    assert bdm["Ebs"]["Status"] == "attached"
    # The VM got the root volume as a qcow2 overlay over the cached snapshot base.
    (disk,) = world.hypervisor.disks(world.handle(inst["InstanceId"]))
    info = subprocess.run(
        ["qemu-img", "info", "-U", str(disk.path)], capture_output=True, text=True, check=True
    ).stdout
    assert "qcow2" in info and "backing file" in info
    assert disk.serial == bdm["Ebs"]["VolumeId"].replace("-", "")
    # The user data is stored decoded and returned base64 again.
    attr = world.call(
        ctx, "DescribeInstanceAttribute", InstanceId=inst["InstanceId"], Attribute="userData"
    )
    assert base64.b64decode(attr["UserData"]["Value"]) == b"#!/bin/sh\necho hi\n"
    # LastLaunchedTime of the image is set.
    described = world.call(ctx, "DescribeImages", ImageIds=[image])["Images"][0]
    assert described.get("LastLaunchedTime")


def test_image_errors_are_ec2s(world: World) -> None:
    ctx = world.account()
    owner = world.account()
    private = world.image(owner)
    assert (
        world.code(ctx, "RunInstances", ImageId="ami-12345678901234567", MinCount=1, MaxCount=1)
        == "InvalidAMIID.NotFound"
    )
    assert (
        world.code(ctx, "RunInstances", ImageId="ami-xyz", MinCount=1, MaxCount=1)
        == "InvalidAMIID.Malformed"
    )
    assert (
        world.code(ctx, "RunInstances", ImageId=private, MinCount=1, MaxCount=1)
        == "InvalidAMIID.NotFound"
    )
    world.call(
        owner,
        "ModifyImageAttribute",
        ImageId=private,
        LaunchPermission={"Add": [{"UserId": ctx.account_id}]},
    )
    assert world.launch(ctx, private)
    world.call(owner, "DeregisterImage", ImageId=private)
    assert (
        world.code(ctx, "RunInstances", ImageId=private, MinCount=1, MaxCount=1)
        == "InvalidAMIID.NotFound"
    )


def test_disabled_image_cannot_be_launched(world: World) -> None:
    ctx = world.account()
    image = world.image(ctx)
    world.call(ctx, "DisableImage", ImageId=image)
    assert (
        world.code(ctx, "RunInstances", ImageId=image, MinCount=1, MaxCount=1)
        == "InvalidAMIID.Unavailable"
    )


def test_bad_parameters(world: World) -> None:
    ctx = world.account()
    image = world.image(ctx)
    err = world.error(
        ctx, "RunInstances", ImageId=image, MinCount=1, MaxCount=1, InstanceType="x9.huge"
    )
    assert err.code == "InvalidParameterValue"
    assert "Invalid value 'x9.huge' for InstanceType" in err.message
    assert (
        world.code(ctx, "RunInstances", ImageId=image, MinCount=2, MaxCount=1)
        == "InvalidParameterValue"
    )
    assert (
        world.code(ctx, "RunInstances", ImageId=image, MinCount=1, MaxCount=1, KeyName="nope")
        == "InvalidKeyPair.NotFound"
    )
    assert (
        world.code(ctx, "RunInstances", ImageId=image, MinCount=1, MaxCount=1, UserData="***")
        == "InvalidParameterValue"
    )
    assert (
        world.code(
            ctx,
            "RunInstances",
            ImageId=image,
            MinCount=1,
            MaxCount=1,
            BlockDeviceMappings=[{"DeviceName": "/dev/xvda", "NoDevice": ""}],
        )
        == "InvalidBlockDeviceMapping"
    )
    assert (
        world.code(
            ctx,
            "RunInstances",
            ImageId=image,
            MinCount=1,
            MaxCount=1,
            InstanceInitiatedShutdownBehavior="explode",
        )
        == "InvalidParameterValue"
    )
    assert (
        world.code(
            ctx,
            "RunInstances",
            ImageId=image,
            MinCount=1,
            MaxCount=1,
            TagSpecifications=[{"ResourceType": "image", "Tags": [{"Key": "a", "Value": "b"}]}],
        )
        == "InvalidParameterValue"
    )


def test_volume_size_must_hold_the_snapshot(world: World) -> None:
    ctx = world.account()
    image = world.image(ctx, size=4 * MIB)
    snap = world.services.snapshots.create_from_file(
        ctx, world.disk_file("big", 2 * 1024 * MIB + MIB), description="big"
    )
    assert snap.volume_size == 3
    err = world.error(
        ctx,
        "RunInstances",
        ImageId=image,
        MinCount=1,
        MaxCount=1,
        BlockDeviceMappings=[
            {"DeviceName": "/dev/sdf", "Ebs": {"SnapshotId": snap.snapshot_id, "VolumeSize": 2}}
        ],
    )
    assert err.code == "InvalidBlockDeviceMapping"


def test_capacity_min_and_max_count(tmp_path: object) -> None:
    from pathlib import Path

    from instance_helpers import make_world

    world = make_world(Path(str(tmp_path)))
    try:
        world.services.compute.instances.launcher.host = Host(cpus=2, memory_mib=4096)
        ctx = world.account()
        image = world.image(ctx)
        # budget 80 % of 4096 = 3276 MiB: three t2.micro (1024) fit.
        out = world.run(ctx, image, InstanceType="t2.micro", MinCount=1, MaxCount=5)
        assert len(out["Instances"]) == 3
        assert [i["AmiLaunchIndex"] for i in out["Instances"]] == [0, 1, 2]
        assert len({i["PublicIpAddress"] for i in out["Instances"]}) == 3
        err = world.error(
            ctx, "RunInstances", ImageId=image, MinCount=1, MaxCount=1, InstanceType="t2.micro"
        )
        assert err.code == "InsufficientInstanceCapacity"
        world.settle()
    finally:
        world.services.close()


def test_client_token_is_idempotent(world: World) -> None:
    ctx = world.account()
    image = world.image(ctx)
    first = world.run(ctx, image, ClientToken="tok-1")
    again = world.run(ctx, image, ClientToken="tok-1")
    assert again["ReservationId"] == first["ReservationId"]
    assert [i["InstanceId"] for i in again["Instances"]] == [
        i["InstanceId"] for i in first["Instances"]
    ]
    assert (
        world.code(ctx, "RunInstances", ImageId=image, MinCount=1, MaxCount=2, ClientToken="tok-1")
        == "IdempotentParameterMismatch"
    )
    world.settle()


def test_stop_start_terminate_and_delete_on_termination(world: World) -> None:
    ctx = world.account()
    image = world.image(ctx)
    iid = world.launch(
        ctx,
        image,
        BlockDeviceMappings=[
            {"DeviceName": "/dev/sdf", "Ebs": {"VolumeSize": 1, "DeleteOnTermination": False}}
        ],
    )
    vols = {
        b["DeviceName"]: b["Ebs"]["VolumeId"]
        for b in world.instance(ctx, iid)["BlockDeviceMappings"]
    }
    assert set(vols) == {"/dev/xvda", "/dev/sdf"}
    noop = world.call(ctx, "StartInstances", InstanceIds=[iid])["StartingInstances"][0]
    assert noop["CurrentState"]["Name"] == "running"
    out = world.call(ctx, "StopInstances", InstanceIds=[iid])
    assert out["StoppingInstances"][0]["CurrentState"]["Name"] == "stopping"
    world.settle()
    inst = world.instance(ctx, iid)
    assert inst["State"]["Name"] == "stopped"
    assert inst["StateReason"]["Code"] == "Client.UserInitiatedShutdown"
    assert inst["StateTransitionReason"].startswith("User initiated (")
    assert (
        world.code(ctx, "StopInstances", InstanceIds=["i-12345678901234567"])
        == "InvalidInstanceID.NotFound"
    )
    assert (
        world.code(ctx, "RebootInstances", InstanceIds=["i-bad"]) == "InvalidInstanceID.Malformed"
    )
    world.call(ctx, "StartInstances", InstanceIds=[iid])
    world.settle()
    assert world.state(ctx, iid) == "running"
    world.call(ctx, "TerminateInstances", InstanceIds=[iid])
    world.settle()
    inst = world.instance(ctx, iid)
    assert inst["State"] == {"Code": 48, "Name": "terminated"}
    assert inst.get("PublicIpAddress") is None
    assert world.code(ctx, "StartInstances", InstanceIds=[iid]) == "IncorrectInstanceState"
    left = world.call(ctx, "DescribeVolumes")["Volumes"]
    assert [v["VolumeId"] for v in left] == [vols["/dev/sdf"]]
    assert left[0]["State"] == "available" and left[0]["Attachments"] == []
    files = world.services.compute.files
    assert not files.path("us-east-1", vols["/dev/xvda"]).exists()
    assert files.path("us-east-1", vols["/dev/sdf"]).exists()


def test_stopping_a_stopped_instance_is_not_an_error_but_pending_cannot_stop(world: World) -> None:
    ctx = world.account()
    image = world.image(ctx)
    out = world.run(ctx, image)
    iid = out["Instances"][0]["InstanceId"]
    assert world.code(ctx, "StopInstances", InstanceIds=[iid]) == "IncorrectInstanceState"
    world.settle()
    world.call(ctx, "StopInstances", InstanceIds=[iid])
    world.settle()
    again = world.call(ctx, "StopInstances", InstanceIds=[iid])["StoppingInstances"][0]
    assert again["CurrentState"]["Name"] == "stopped"


@pytest.mark.parametrize(("behavior", "final"), [("stop", "stopped"), ("terminate", "terminated")])
def test_guest_poweroff_follows_shutdown_behavior(world: World, behavior: str, final: str) -> None:
    ctx = world.account()
    iid = world.launch(ctx, world.image(ctx), InstanceInitiatedShutdownBehavior=behavior)
    world.hypervisor.guest_poweroff(world.handle(iid))
    world.poll()
    inst = world.instance(ctx, iid)
    assert inst["State"]["Name"] == final
    assert inst["StateReason"]["Code"] == "Client.InstanceInitiatedShutdown"


def test_crashed_vm_is_reported_stopped_with_a_reason(world: World) -> None:
    ctx = world.account()
    iid = world.launch(ctx, world.image(ctx))
    world.hypervisor.crash(world.handle(iid))
    world.poll()
    inst = world.instance(ctx, iid)
    assert inst["State"]["Name"] == "stopped"
    assert inst["StateReason"]["Code"] == "Server.InternalError"
    world.call(ctx, "StartInstances", InstanceIds=[iid])
    world.settle()
    assert world.state(ctx, iid) == "running"


def test_launch_failure_terminates_with_a_reason(world: World) -> None:
    ctx = world.account()
    image = world.image(ctx)
    # Corrupt the store: the root snapshot's manifest disappears.
    snap = world.call(ctx, "DescribeImages", ImageIds=[image])["Images"][0]["BlockDeviceMappings"][
        0
    ]["Ebs"]["SnapshotId"]
    world.services.snapshots.repository("us-east-1").delete_snapshot(snap)
    iid = world.launch(ctx, image)
    inst = world.instance(ctx, iid)
    assert inst["State"]["Name"] == "terminated"
    assert inst["StateReason"]["Code"] == "Server.InternalError"
    # Nothing else broke: another image still launches.
    assert world.state(ctx, world.launch(ctx, world.image(ctx))) == "running"


def test_paravirtual_image_boots_its_kernel_and_ramdisk(world: World) -> None:
    ctx = world.account()
    image = world.image(ctx, paravirtual=True)
    iid = world.launch(ctx, image)
    inst = world.instance(ctx, iid)
    assert inst["KernelId"].startswith("aki-") and inst["RamdiskId"].startswith("ari-")
    spec = world.manager.spec(
        world.services.compute.instances.owned(world.services.catalog.engine.connect(), ctx, [iid])[
            0
        ]
    )
    assert spec.boot.kernel.read_bytes()[:4] == b"kern"
    assert spec.boot.initrd.read_bytes()[:4] == b"init"


def test_deregistered_image_instances_keep_working(world: World) -> None:
    ctx = world.account()
    image = world.image(ctx, paravirtual=True)
    iid = world.launch(ctx, image)
    world.call(ctx, "DeregisterImage", ImageId=image)
    world.call(ctx, "StopInstances", InstanceIds=[iid])
    world.settle()
    world.call(ctx, "StartInstances", InstanceIds=[iid])
    world.settle()
    assert world.state(ctx, iid) == "running"


def test_restart_adopts_running_vms(world: World, tmp_path: object) -> None:
    from instance_helpers import make_world

    ctx = world.account()
    image = world.image(ctx)
    running = world.launch(ctx, image)
    stopped = world.launch(ctx, image)
    world.call(ctx, "StopInstances", InstanceIds=[stopped])
    world.settle()
    world.services.close()
    again = make_world(world.tmp, FakeHypervisor())
    try:
        again.services.compute.start(world.manager.imds)
        assert again.state(ctx, running) == "running"
        assert again.handle(running) is not None
        assert again.state(ctx, stopped) == "stopped"
        again.call(ctx, "StopInstances", InstanceIds=[running])
        again.settle()
        assert again.state(ctx, running) == "stopped"
    finally:
        again.services.close()
    world.services = make_world(world.tmp).services  # the fixture closes this one


def test_restart_reports_vanished_vms_stopped(world: World) -> None:
    from instance_helpers import make_world

    ctx = world.account()
    iid = world.launch(ctx, world.image(ctx))
    world.hypervisor.crash(world.handle(iid))
    world.services.close()
    again = make_world(world.tmp, FakeHypervisor())
    try:
        again.services.compute.start(world.manager.imds)
        inst = again.instance(ctx, iid)
        assert inst["State"]["Name"] == "stopped"
        assert inst["StateReason"]["Code"] == "Server.InternalError"
    finally:
        again.services.close()
    world.services = make_world(world.tmp).services


def test_describe_filters_and_pagination(world: World) -> None:
    ctx = world.account()
    other = world.account()
    image = world.image(ctx)
    out = world.run(
        ctx,
        image,
        MinCount=3,
        MaxCount=3,
        TagSpecifications=[
            {"ResourceType": "instance", "Tags": [{"Key": "team", "Value": "blue"}]}
        ],
    )
    world.settle()
    ids = sorted(i["InstanceId"] for i in out["Instances"])
    world.call(ctx, "StopInstances", InstanceIds=[ids[0]])
    world.settle()

    def found(**params: object) -> list[str]:
        res = world.call(ctx, "DescribeInstances", **params)
        return sorted(i["InstanceId"] for r in res["Reservations"] for i in r["Instances"])

    assert found() == ids
    assert found(Filters=[{"Name": "instance-state-name", "Values": ["running"]}]) == ids[1:]
    assert found(Filters=[{"Name": "tag:team", "Values": ["bl*"]}]) == ids
    assert found(Filters=[{"Name": "image-id", "Values": [image]}]) == ids
    assert found(Filters=[{"Name": "reservation-id", "Values": [out["ReservationId"]]}]) == ids
    ip = world.instance(ctx, ids[1])["PublicIpAddress"]
    assert found(Filters=[{"Name": "ip-address", "Values": [ip]}]) == [ids[1]]
    assert found(Filters=[{"Name": "availability-zone", "Values": ["us-east-1a"]}]) == ids
    assert (
        world.code(ctx, "DescribeInstances", Filters=[{"Name": "bogus", "Values": ["x"]}])
        == "InvalidParameterValue"
    )
    assert world.call(other, "DescribeInstances")["Reservations"] == []
    assert (
        world.code(other, "DescribeInstances", InstanceIds=[ids[0]]) == "InvalidInstanceID.NotFound"
    )
    pages: list[str] = []
    token = None
    while True:
        params: dict[str, object] = {"MaxResults": 5}
        if token:
            params["NextToken"] = token
        res = world.call(ctx, "DescribeInstances", **params)
        pages += [i["InstanceId"] for r in res["Reservations"] for i in r["Instances"]]
        token = res.get("NextToken")
        if not token:
            break
    assert sorted(pages) == ids
    status = world.call(ctx, "DescribeInstanceStatus")["InstanceStatuses"]
    assert sorted(s["InstanceId"] for s in status) == ids[1:]
    every = world.call(ctx, "DescribeInstanceStatus", IncludeAllInstances=True)["InstanceStatuses"]
    assert len(every) == 3 and {s["InstanceStatus"]["Status"] for s in every} >= {
        "ok",
        "not-applicable",
    }


def test_console_output_is_base64(world: World) -> None:
    ctx = world.account()
    iid = world.launch(ctx, world.image(ctx))
    world.hypervisor.write_console(world.handle(iid), b"login: \n")
    out = world.call(ctx, "GetConsoleOutput", InstanceId=iid)
    assert b"login:" in base64.b64decode(out["Output"])


def test_tags_on_instances_and_volumes(world: World) -> None:
    ctx = world.account()
    iid = world.launch(
        ctx,
        world.image(ctx),
        TagSpecifications=[
            {"ResourceType": "instance", "Tags": [{"Key": "Name", "Value": "web"}]},
            {"ResourceType": "volume", "Tags": [{"Key": "disk", "Value": "root"}]},
        ],
    )
    assert world.instance(ctx, iid)["Tags"] == [{"Key": "Name", "Value": "web"}]
    vol = world.call(ctx, "DescribeVolumes")["Volumes"][0]
    assert vol["Tags"] == [{"Key": "disk", "Value": "root"}]
    world.call(
        ctx, "CreateTags", Resources=[iid, vol["VolumeId"]], Tags=[{"Key": "x", "Value": "y"}]
    )
    assert {"Key": "x", "Value": "y"} in world.instance(ctx, iid)["Tags"]


def test_attributes_and_termination_protection(world: World) -> None:
    ctx = world.account()
    iid = world.launch(ctx, world.image(ctx), DisableApiTermination=True)
    get = lambda a: world.call(ctx, "DescribeInstanceAttribute", InstanceId=iid, Attribute=a)  # noqa: E731
    assert get("instanceType")["InstanceType"] == {"Value": "t2.micro"}
    assert get("instanceInitiatedShutdownBehavior")["InstanceInitiatedShutdownBehavior"] == {
        "Value": "stop"
    }
    assert get("disableApiTermination")["DisableApiTermination"] == {"Value": True}
    assert get("rootDeviceName")["RootDeviceName"] == {"Value": "/dev/xvda"}
    assert world.code(ctx, "TerminateInstances", InstanceIds=[iid]) == "OperationNotPermitted"
    world.call(
        ctx, "ModifyInstanceAttribute", InstanceId=iid, DisableApiTermination={"Value": False}
    )
    world.call(ctx, "TerminateInstances", InstanceIds=[iid])
    world.settle()
    assert world.state(ctx, iid) == "terminated"
