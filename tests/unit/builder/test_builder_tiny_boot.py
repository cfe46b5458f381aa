"""Boot the tiny image under QEMU: DHCP, metadata (IMDSv2 and v1), SSH, user data, shutdown."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

from builder_vm import Metadata, boot, imds, make_key, ssh

from goldsmith.builder import DiskImage
from goldsmith.builder.tiny_files import FINISHED, READY

USER_DATA = b'#!/bin/sh\necho "user data ran as $(id -un)" > /marker\n'


def _kernel(image: DiskImage) -> tuple[Path, Path, str]:
    assert image.kernel is not None
    return image.kernel.kernel, image.kernel.ramdisk, image.kernel.cmdline


def test_tiny_boots_to_ssh_with_imdsv2_and_powers_off_on_acpi(
    tiny_image: DiskImage, work: Path
) -> None:
    key, public = make_key(work)
    meta = Metadata(public_key=public, user_data=USER_DATA, require_token=True)
    with imds(meta) as port, boot(work / "vm", tiny_image.path, port, _kernel(tiny_image)) as vm:
        ready = vm.wait_for(READY, timeout=30)
        print(f"ssh ready {ready:.1f}s after QEMU started")
        assert ready < 15
        console = vm.console()
        assert "-----BEGIN SSH HOST KEY FINGERPRINTS-----" in console
        assert "(ED25519)" in console
        assert "instance metadata service: IMDSv2" in console
        vm.wait_for(FINISHED, timeout=20)

        assert ssh(key, vm.ssh_port, "ec2-user", "cat /marker") == "user data ran as root\n"
        assert ssh(key, vm.ssh_port, "ec2-user", "id -u; echo $HOME") == "1000\n/home/ec2-user\n"
        assert ssh(key, vm.ssh_port, "root", "hostname") == "ip-169-254-169-15\n"
        mounts = ssh(key, vm.ssh_port, "root", "grep ' / ' /proc/mounts")
        assert " rw," in mounts
        assert all(token == "test-token-AQAEAJ" for m, _p, token in meta.requests if m == "GET")

        pressed = time.monotonic()
        assert vm.qmp("system_powerdown") == {"return": {}}
        assert vm.wait_exit(30) == 0
        print(f"powered off {time.monotonic() - pressed:.1f}s after the ACPI power button")
        assert "goldsmith-tiny: shutting down" in vm.console()


def test_tiny_falls_back_to_imdsv1_runs_user_data_once_and_shuts_down_clean(
    tiny_image: DiskImage, work: Path
) -> None:
    key, public = make_key(work)
    meta = Metadata(public_key=public, user_data=USER_DATA, offer_token=False)
    with imds(meta) as port, boot(work / "vm", tiny_image.path, port, _kernel(tiny_image)) as vm:
        vm.wait_for(FINISHED, timeout=40)
        assert "instance metadata service: IMDSv1" in vm.console()
        assert ssh(key, vm.ssh_port, "root", "cat /marker; rm /marker") == (
            "user data ran as root\n"
        )
        ssh(key, vm.ssh_port, "root", "poweroff")
        assert vm.wait_exit(30) == 0
    disk = work / "vm" / "disk.img"
    # Cleanly unmounted: the journal is empty and e2fsck finds nothing to fix.
    fsck = subprocess.run(["e2fsck", "-fn", disk], capture_output=True, text=True, check=False)
    assert fsck.returncode == 0, fsck.stdout + fsck.stderr
    listing = subprocess.run(
        ["debugfs", "-R", "ls -p /var/lib/goldsmith/instances/i-0123456789abcdef0", disk],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "user-data.done" in listing

    # Second boot of the same instance: the user data is not run again.
    meta.requests.clear()
    with imds(meta) as port, boot(work / "vm2", disk, port, _kernel(tiny_image)) as vm:
        vm.wait_for(FINISHED, timeout=40)
        assert "running user data" not in vm.console()
        assert ssh(key, vm.ssh_port, "root", "ls /marker || true") == ""
        vm.qmp("system_powerdown")
        assert vm.wait_exit(30) == 0
