"""Describe/Modify/ResetInstanceAttribute beyond the basics (fake hypervisor)."""

from __future__ import annotations

from typing import Any

import pytest
from instance_helpers import World

from goldsmith.service.context import RequestContext


def attr(world: World, ctx: RequestContext, iid: str, name: str) -> dict[str, Any]:
    return world.call(ctx, "DescribeInstanceAttribute", InstanceId=iid, Attribute=name)


ALL = {
    "instanceType": ("InstanceType", {"Value": "t2.micro"}),
    "rootDeviceName": ("RootDeviceName", {"Value": "/dev/xvda"}),
    "productCodes": ("ProductCodes", []),
    "sourceDestCheck": ("SourceDestCheck", {"Value": True}),
    "groupSet": ("Groups", []),
    "ebsOptimized": ("EbsOptimized", {"Value": False}),
    "enaSupport": ("EnaSupport", {"Value": True}),
    "enclaveOptions": ("EnclaveOptions", {"Enabled": False}),
    "disableApiStop": ("DisableApiStop", {"Value": False}),
}


def test_every_attribute_of_ec2s_list_can_be_read(world: World) -> None:
    ctx = world.account()
    iid = world.launch(ctx, world.image(ctx))
    for name, (member, expected) in ALL.items():
        got = attr(world, ctx, iid, name)
        assert got["InstanceId"] == iid
        assert got[member] == expected, name
    mapping = attr(world, ctx, iid, "blockDeviceMapping")["BlockDeviceMappings"]
    assert [m["DeviceName"] for m in mapping] == ["/dev/xvda"]
    assert world.code(ctx, "DescribeInstanceAttribute", InstanceId=iid) == "MissingParameter"
    assert (
        world.code(ctx, "DescribeInstanceAttribute", InstanceId=iid, Attribute="colour")
        == "InvalidParameterValue"
    )


def test_delete_on_termination_of_attached_volumes_can_change(world: World) -> None:
    ctx = world.account()
    iid = world.launch(
        ctx,
        world.image(ctx),
        BlockDeviceMappings=[{"DeviceName": "/dev/sdf", "Ebs": {"VolumeSize": 1}}],
    )
    world.call(
        ctx,
        "ModifyInstanceAttribute",
        InstanceId=iid,
        BlockDeviceMappings=[{"DeviceName": "/dev/xvda", "Ebs": {"DeleteOnTermination": False}}],
    )
    mapping = {
        m["DeviceName"]: m["Ebs"]
        for m in attr(world, ctx, iid, "blockDeviceMapping")["BlockDeviceMappings"]
    }
    assert mapping["/dev/xvda"]["DeleteOnTermination"] is False
    assert mapping["/dev/sdf"]["DeleteOnTermination"] is True
    assert (
        world.code(
            ctx,
            "ModifyInstanceAttribute",
            InstanceId=iid,
            BlockDeviceMappings=[{"DeviceName": "/dev/sdz", "Ebs": {"DeleteOnTermination": True}}],
        )
        == "InvalidInstanceAttributeValue"
    )
    world.call(ctx, "TerminateInstances", InstanceIds=[iid])
    world.settle()
    left = world.call(ctx, "DescribeVolumes")["Volumes"]
    assert [v["VolumeId"] for v in left] == [mapping["/dev/xvda"]["VolumeId"]]
    assert left[0]["State"] == "available"


def test_legacy_attribute_value_form_and_stopped_only_attributes(world: World) -> None:
    ctx = world.account()
    iid = world.launch(ctx, world.image(ctx))
    error = world.error(
        ctx, "ModifyInstanceAttribute", InstanceId=iid, Attribute="instanceType", Value="t3.small"
    )
    assert error.code == "IncorrectInstanceState"
    world.call(
        ctx,
        "ModifyInstanceAttribute",
        InstanceId=iid,
        Attribute="instanceInitiatedShutdownBehavior",
        Value="terminate",
    )
    assert attr(world, ctx, iid, "instanceInitiatedShutdownBehavior")[
        "InstanceInitiatedShutdownBehavior"
    ] == {"Value": "terminate"}
    world.call(ctx, "StopInstances", InstanceIds=[iid])
    world.settle()
    world.call(
        ctx, "ModifyInstanceAttribute", InstanceId=iid, Attribute="instanceType", Value="t3.small"
    )
    assert attr(world, ctx, iid, "instanceType")["InstanceType"] == {"Value": "t3.small"}
    assert (
        world.code(ctx, "ModifyInstanceAttribute", InstanceId=iid, Attribute="groupSet", Value="x")
        == "InvalidParameterValue"
    )
    assert (
        world.code(ctx, "ModifyInstanceAttribute", InstanceId=iid, Attribute="instanceType")
        == "MissingParameter"
    )


@pytest.mark.parametrize(
    ("member", "value", "ok"),
    [
        ("SourceDestCheck", True, True),
        ("SourceDestCheck", False, False),
        ("EbsOptimized", True, False),
        ("EnaSupport", True, True),
        ("DisableApiStop", True, False),
    ],
)
def test_fixed_attributes_accept_only_their_value(
    world: World, member: str, value: bool, ok: bool
) -> None:
    ctx = world.account()
    iid = world.launch(ctx, world.image(ctx))
    params = {member: {"Value": value}}
    if ok:
        assert world.call(ctx, "ModifyInstanceAttribute", InstanceId=iid, **params) == {}
    else:
        assert (
            world.code(ctx, "ModifyInstanceAttribute", InstanceId=iid, **params)
            == "UnsupportedOperation"
        )


def test_kernel_and_ramdisk_change_while_stopped_and_reset_to_the_images(world: World) -> None:
    ctx = world.account()
    image = world.image(ctx, paravirtual=True)
    iid = world.launch(ctx, image)
    original = attr(world, ctx, iid, "kernel")["KernelId"]["Value"]
    other = world.image(ctx, paravirtual=True)
    other_kernel = world.call(ctx, "DescribeImages", ImageIds=[other])["Images"][0]["KernelId"]
    change = {"Kernel": {"Value": other_kernel}}
    assert (
        world.code(ctx, "ModifyInstanceAttribute", InstanceId=iid, **change)
        == "IncorrectInstanceState"
    )
    world.call(ctx, "StopInstances", InstanceIds=[iid])
    world.settle()
    assert (
        world.code(ctx, "ModifyInstanceAttribute", InstanceId=iid, Kernel={"Value": image})
        == "InvalidParameterValue"  # a machine image is not a kernel
    )
    world.call(ctx, "ModifyInstanceAttribute", InstanceId=iid, **change)
    assert attr(world, ctx, iid, "kernel")["KernelId"] == {"Value": other_kernel}
    run_dir = world.services.compute.files.run_dir("us-east-1", iid)
    assert not (run_dir / "kernel").exists()  # staged again at the next start
    world.call(ctx, "StartInstances", InstanceIds=[iid])
    world.settle()
    assert world.state(ctx, iid) == "running" and (run_dir / "kernel").exists()
    world.call(ctx, "StopInstances", InstanceIds=[iid])
    world.settle()
    world.call(ctx, "ResetInstanceAttribute", InstanceId=iid, Attribute="kernel")
    assert attr(world, ctx, iid, "kernel")["KernelId"] == {"Value": original}
    world.call(ctx, "ResetInstanceAttribute", InstanceId=iid, Attribute="sourceDestCheck")
    assert (
        world.code(ctx, "ResetInstanceAttribute", InstanceId=iid, Attribute="instanceType")
        == "InvalidParameterValue"
    )
    assert world.code(ctx, "ResetInstanceAttribute", InstanceId=iid) == "MissingParameter"
