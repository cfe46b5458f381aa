"""PV-GRUB-style launches: a paravirtual image without a kernel image boots the kernel in
its root volume's /boot (fake hypervisor; real ext4 disks, real store, real qcow2)."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

from instance_helpers import MIB, World

from goldsmith.catalog.instances import get_instance
from goldsmith.compute.spec import DirectBoot
from goldsmith.service.context import RequestContext

REGION = "us-east-1"


def ext4_disk(path: Path, files: dict[str, bytes], size: int = 16 * MIB) -> Path:
    root = path.with_suffix(".d")
    for name, data in files.items():
        target = root / name.lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
    subprocess.run(["truncate", "-s", str(size), str(path)], check=True)
    subprocess.run(["mkfs.ext4", "-q", "-F", "-d", str(root), str(path)], check=True)
    return path


def pv_image(world: World, ctx: RequestContext, disk: Path, **extra: Any) -> str:
    snap = world.services.snapshots.create_from_file(ctx, disk, description="pv root")
    return str(
        world.call(
            ctx,
            "RegisterImage",
            Name=f"pv-{disk.stem}",
            RootDeviceName="/dev/sda1",
            VirtualizationType="paravirtual",
            BlockDeviceMappings=[
                {"DeviceName": "/dev/sda1", "Ebs": {"SnapshotId": snap.snapshot_id}}
            ],
            **extra,
        )["ImageId"]
    )


def boot_of(world: World, instance_id: str) -> DirectBoot:
    with world.services.catalog.begin() as conn:
        row = get_instance(conn, REGION, instance_id)
    assert row is not None
    spec = world.manager.spec(row)
    assert isinstance(spec.boot, DirectBoot)
    return spec.boot


def test_a_paravirtual_image_without_kernel_boots_the_kernel_in_boot(world: World) -> None:
    ctx = world.account()
    disk = ext4_disk(
        world.tmp / "pv.raw",
        {
            "/boot/vmlinuz-6.1.0-9-amd64": b"the kernel",
            "/boot/initrd.img-6.1.0-9-amd64": b"the initrd",
        },
    )
    image = pv_image(world, ctx, disk)
    iid = world.launch(ctx, image)
    described = world.instance(ctx, iid)
    assert described["State"]["Name"] == "running"
    assert described.get("KernelId") is None
    boot = boot_of(world, iid)
    assert boot.kernel.read_bytes() == b"the kernel"
    assert boot.initrd is not None and boot.initrd.read_bytes() == b"the initrd"
    assert "root=/dev/vda" in boot.cmdline


def test_the_kernel_is_read_again_at_every_start(world: World) -> None:
    """Like PV-GRUB reading menu.lst at boot: a kernel the guest installed boots next time."""
    ctx = world.account()
    disk = ext4_disk(world.tmp / "pv.raw", {"/boot/vmlinuz-6.1.0-1-amd64": b"old kernel"})
    iid = world.launch(ctx, pv_image(world, ctx, disk))
    assert boot_of(world, iid).kernel.read_bytes() == b"old kernel"
    world.call(ctx, "StopInstances", InstanceIds=[iid])
    world.settle()
    # "The guest" installs a newer kernel: rewrite the volume's filesystem in place.
    root = world.instance(ctx, iid)["BlockDeviceMappings"][0]["Ebs"]["VolumeId"]
    volume = world.services.compute.files.path(REGION, root)
    newer = ext4_disk(
        world.tmp / "newer.raw",
        {"/boot/vmlinuz-6.1.0-1-amd64": b"old kernel", "/boot/vmlinuz-6.2.0-1-amd64": b"new"},
    )
    subprocess.run(
        ["qemu-io", "-f", "qcow2", "-c", f"write -s {newer} 0 {16 * MIB}", str(volume)],
        check=True,
        capture_output=True,
    )
    world.call(ctx, "StartInstances", InstanceIds=[iid])
    world.settle()
    assert world.state(ctx, iid) == "running"
    boot = boot_of(world, iid)
    assert boot.kernel.read_bytes() == b"new" and boot.initrd is None


def test_no_kernel_in_boot_fails_the_launch_with_a_reason(world: World) -> None:
    ctx = world.account()
    disk = ext4_disk(world.tmp / "nokernel.raw", {"/etc/hostname": b"x\n"})
    iid = world.launch(ctx, pv_image(world, ctx, disk))
    failed = world.instance(ctx, iid)
    assert failed["State"]["Name"] == "terminated"
    assert failed["StateReason"]["Code"] == "Server.InternalError"
    assert "PV-GRUB" in failed["StateReason"]["Message"]
    assert "/boot" in failed["StateReason"]["Message"]


def test_a_kernel_image_still_wins(world: World) -> None:
    ctx = world.account()
    image = world.image(ctx, paravirtual=True)  # with KernelId/RamdiskId (aki/ari)
    iid = world.launch(ctx, image)
    assert boot_of(world, iid).kernel.read_bytes().startswith(b"kern")
