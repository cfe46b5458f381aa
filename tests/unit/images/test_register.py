"""RegisterImage: what EC2 accepts, what it refuses, and with which code."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from image_helpers import World


def _bdm(snap: str, device: str = "/dev/xvda", **ebs: Any) -> list[dict[str, Any]]:
    return [{"DeviceName": device, "Ebs": {"SnapshotId": snap, **ebs}}]


def test_register_full_image_is_available_with_every_member(world: World) -> None:
    ctx = world.account()
    root = world.snapshots.make(ctx.account_id, 8)
    data = world.snapshots.make(ctx.account_id, 2)
    image_id = world.call(
        ctx,
        "RegisterImage",
        Name="web (v1.0) [prod]/x_y@z'q",
        Description="a web server",
        Architecture="arm64",
        VirtualizationType="hvm",
        RootDeviceName="/dev/xvda",
        BlockDeviceMappings=[
            {"DeviceName": "/dev/xvda", "Ebs": {"SnapshotId": root, "VolumeType": "gp3"}},
            {"DeviceName": "/dev/sdb", "Ebs": {"SnapshotId": data, "VolumeSize": 5}},
            {"DeviceName": "/dev/sdc", "VirtualName": "ephemeral0"},
            {"DeviceName": "xvdd", "NoDevice": ""},
        ],
        BootMode="uefi",
        TpmSupport="v2.0",
        UefiData="QUJD",
        ImdsSupport="v2.0",
        EnaSupport=True,
        SriovNetSupport="simple",
        TagSpecifications=[{"ResourceType": "image", "Tags": [{"Key": "env", "Value": "prod"}]}],
    )["ImageId"]
    assert image_id.startswith("ami-")
    (image,) = world.call(ctx, "DescribeImages", ImageIds=[image_id])["Images"]
    assert image["State"] == "available"
    assert image["Architecture"] == "arm64"
    assert image["VirtualizationType"] == "hvm"
    assert image["RootDeviceType"] == "ebs"
    assert image["BootMode"] == "uefi" and image["TpmSupport"] == "v2.0"
    assert image["ImdsSupport"] == "v2.0" and image["EnaSupport"] is True
    assert image["Tags"] == [{"Key": "env", "Value": "prod"}]
    assert image["Public"] is False and image["OwnerId"] == ctx.account_id
    devices = image["BlockDeviceMappings"]
    assert devices[0]["Ebs"]["VolumeSize"] == 8  # filled in from the snapshot
    assert devices[1]["Ebs"]["VolumeSize"] == 5
    assert devices[2] == {"DeviceName": "/dev/sdc", "VirtualName": "ephemeral0"}
    assert devices[3] == {"DeviceName": "xvdd", "NoDevice": ""}


def test_virtualization_defaults_to_paravirtual_and_x86_64(world: World) -> None:
    ctx = world.account()
    (image,) = world.call(ctx, "DescribeImages", ImageIds=[world.register(ctx)])["Images"]
    assert image["VirtualizationType"] == "paravirtual"
    assert image["Architecture"] == "x86_64"


@pytest.mark.parametrize(
    ("change", "code"),
    [
        ({"Name": "ab"}, "InvalidAMIName.Malformed"),
        ({"Name": "x" * 129}, "InvalidAMIName.Malformed"),
        ({"Name": "bad*name"}, "InvalidAMIName.Malformed"),
        ({"Description": "d" * 256}, "InvalidParameterValue"),
        ({"Architecture": "sparc"}, "InvalidParameterValue"),
        ({"VirtualizationType": "pv"}, "InvalidParameterValue"),
        ({"BootMode": "bios"}, "InvalidParameterValue"),
        ({"TpmSupport": "v2.0"}, "InvalidParameterCombination"),
        ({"ImdsSupport": "v1.0"}, "InvalidParameterValue"),
        ({"RootDeviceName": "/dev/sdz"}, "InvalidBlockDeviceMapping"),
        ({"KernelId": "aki-12345678"}, "InvalidAMIID.NotFound"),
        ({"KernelId": "kernel"}, "InvalidAMIID.Malformed"),
        ({"BillingProducts": ["bp-1234"]}, "UnauthorizedOperation"),
        ({"ImageLocation": "bucket/manifest.xml"}, "InvalidParameterValue"),
        (
            {"TagSpecifications": [{"ResourceType": "snapshot", "Tags": [{"Key": "a"}]}]},
            "InvalidParameterValue",
        ),
    ],
)
def test_refusals(world: World, change: dict[str, Any], code: str) -> None:
    ctx = world.account()
    snap = world.snapshots.make(ctx.account_id)
    params = {"Name": "good-name", "RootDeviceName": "/dev/xvda", "BlockDeviceMappings": _bdm(snap)}
    assert world.code(ctx, "RegisterImage", **{**params, **change}) == code


@pytest.mark.parametrize(
    ("mappings", "code"),
    [
        ([{"DeviceName": "/dev/foo", "Ebs": {"SnapshotId": "SNAP"}}], "InvalidBlockDeviceMapping"),
        (
            [{"DeviceName": "/dev/sde16", "Ebs": {"SnapshotId": "SNAP"}}],
            "InvalidBlockDeviceMapping",
        ),
        ([{"Ebs": {"SnapshotId": "SNAP"}}], "InvalidBlockDeviceMapping"),
        (
            [
                {"DeviceName": "/dev/xvda", "Ebs": {"SnapshotId": "SNAP"}},
                {"DeviceName": "xvda", "NoDevice": ""},
            ],
            "InvalidBlockDeviceMapping",
        ),
        (
            [
                {"DeviceName": "/dev/xvda", "Ebs": {"SnapshotId": "SNAP"}},
                {"DeviceName": "/dev/sdb", "Ebs": {}},
            ],
            "InvalidBlockDeviceMapping",
        ),
        (
            [{"DeviceName": "/dev/xvda", "Ebs": {"SnapshotId": "SNAP", "VolumeSize": 4}}],
            "InvalidBlockDeviceMapping",
        ),
        (
            [{"DeviceName": "/dev/xvda", "Ebs": {"SnapshotId": "SNAP", "VolumeSize": 99999}}],
            "InvalidParameterValue",
        ),
        ([{"DeviceName": "/dev/xvda", "VirtualName": "ephemeral0"}], "InvalidBlockDeviceMapping"),
        ([{"DeviceName": "/dev/xvda", "VirtualName": "swap"}], "InvalidBlockDeviceMapping"),
        (
            [{"DeviceName": "/dev/xvda", "Ebs": {"SnapshotId": "snap-1"}}],
            "InvalidSnapshotID.Malformed",
        ),
        (
            [{"DeviceName": "/dev/xvda", "Ebs": {"SnapshotId": "snap-0123456789abcdef0"}}],
            "InvalidSnapshot.NotFound",
        ),
        (
            [{"DeviceName": "/dev/xvda", "Ebs": {"SnapshotId": "SNAP", "Iops": 3000}}],
            "InvalidParameterCombination",
        ),
        ([], "MissingParameter"),
    ],
)
def test_block_device_refusals(world: World, mappings: list[dict[str, Any]], code: str) -> None:
    ctx = world.account()
    snap = world.snapshots.make(ctx.account_id, 8)
    for mapping in mappings:
        if mapping.get("Ebs", {}).get("SnapshotId") == "SNAP":
            mapping["Ebs"]["SnapshotId"] = snap
    params = {"Name": "n-1", "RootDeviceName": "/dev/xvda", "BlockDeviceMappings": mappings}
    assert world.code(ctx, "RegisterImage", **params) == code


def test_other_accounts_snapshot_is_not_found(world: World) -> None:
    owner, other = world.account(), world.account()
    snap = world.snapshots.make(owner.account_id)
    params = {"Name": "n-1", "RootDeviceName": "/dev/xvda", "BlockDeviceMappings": _bdm(snap)}
    assert world.code(other, "RegisterImage", **params) == "InvalidSnapshot.NotFound"


def test_duplicate_name_per_owner_and_region(world: World) -> None:
    a, b = world.account(), world.account()
    world.register(a, "same-name")
    assert world.code(
        a,
        "RegisterImage",
        Name="same-name",
        BlockDeviceMappings=_bdm(world.snapshots.make(a.account_id)),
        RootDeviceName="/dev/xvda",
    ) == ("InvalidAMIName.Duplicate")
    world.register(b, "same-name")  # another owner may use it
    world.register(a.__class__(a.account_id, "eu-west-1"), "same-name")  # another region too


def test_billing_products_need_admin_authorisation(world: World) -> None:
    ctx = world.account()
    world.images.registry.set_billing_allowed(ctx.account_id, True)
    image_id = world.register(ctx, BillingProducts=["bp-63a5400a"])
    (image,) = world.call(ctx, "DescribeImages", ImageIds=[image_id])["Images"]
    assert image["ProductCodes"] == [
        {"ProductCodeId": "bp-63a5400a", "ProductCodeType": "marketplace"}
    ]


def test_kernel_and_ramdisk_images_from_files(world: World, tmp_path: Path) -> None:
    ctx = world.account()
    vmlinuz = tmp_path / "vmlinuz"
    vmlinuz.write_bytes(b"\x7fELF" * 100)
    kernel = world.images.register_file(ctx, vmlinuz, image_type="kernel", name="vmlinuz-6")
    ramdisk = world.images.register_file(ctx, vmlinuz, image_type="ramdisk", name="initrd-6")
    assert kernel.image_id.startswith("aki-") and ramdisk.image_id.startswith("ari-")
    image_id = world.register(ctx, KernelId=kernel.image_id, RamdiskId=ramdisk.image_id)
    (image,) = world.call(ctx, "DescribeImages", ImageIds=[image_id])["Images"]
    assert (image["KernelId"], image["RamdiskId"]) == (kernel.image_id, ramdisk.image_id)
    kernels = world.call(
        ctx, "DescribeImages", Filters=[{"Name": "image-type", "Values": ["kernel"]}]
    )
    assert [i["ImageId"] for i in kernels["Images"]] == [kernel.image_id]
    # A ramdisk is not a kernel; another account cannot see a private kernel.
    assert (
        world.code(
            ctx,
            "RegisterImage",
            Name="x-1",
            KernelId=ramdisk.image_id,
            BlockDeviceMappings=_bdm(world.snapshots.make(ctx.account_id)),
            RootDeviceName="/dev/xvda",
        )
        == "InvalidParameterValue"
    )
    other = world.account()
    assert (
        world.code(
            other,
            "RegisterImage",
            Name="x-1",
            KernelId=kernel.image_id,
            BlockDeviceMappings=_bdm(world.snapshots.make(other.account_id)),
            RootDeviceName="/dev/xvda",
        )
        == "InvalidAMIID.NotFound"
    )
