"""Build the Debian 12 image and boot it under OVMF: layout, key pair, user data, shutdown."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import pytest
from builder_vm import Metadata, boot, build_cache, imds, make_key, ssh

from goldsmith.builder.debian import OVMF_CODE, OVMF_VARS, ROOT_START, build_debian
from goldsmith.builder.debian_files import FINISHED, READY

USER_DATA = b'#!/bin/bash\necho "user data ran as $(id -un)" > /marker\n'


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_debian_builds_and_boots_to_ssh_under_uefi(
    tmp_path_factory: pytest.TempPathFactory, work: Path
) -> None:
    started = time.monotonic()
    image = build_debian(build_cache(), tmp_path_factory.mktemp("debian-out"))
    print(f"debian image ready in {time.monotonic() - started:.1f}s: {image.path}")
    assert (image.virtualization, image.boot_mode, image.default_user) == ("hvm", "uefi", "admin")

    table = json.loads(
        subprocess.run(["sfdisk", "--json", image.path], capture_output=True, check=True).stdout
    )["partitiontable"]
    assert table["label"] == "gpt"
    esp, root = table["partitions"]
    assert esp["type"] == "C12A7328-F81F-11D2-BA4B-00A0C93EC93B"
    assert root["start"] * 512 == ROOT_START
    efi = subprocess.run(
        ["mdir", "-i", f"{image.path}@@{esp['start'] * 512}", "::/EFI/BOOT"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "BOOTX64" in efi

    key, public = make_key(work)
    meta = Metadata(public_key=public, user_data=USER_DATA, require_token=True)
    firmware = (OVMF_CODE, OVMF_VARS)
    with (
        imds(meta) as port,
        boot(work / "vm", image.path, port, firmware=firmware, memory=512) as vm,
    ):
        ready = vm.wait_for(READY, timeout=240)
        print(f"key pair installed {ready:.1f}s after QEMU started")
        vm.wait_for(FINISHED, timeout=120)
        console = vm.console()
        assert "-----BEGIN SSH HOST KEY FINGERPRINTS-----" in console
        assert "instance metadata service: IMDSv2" in console

        assert ssh(key, vm.ssh_port, "admin", "cat /marker") == "user data ran as root\n"
        assert ssh(key, vm.ssh_port, "admin", "sudo -n id -u") == "0\n"
        assert ssh(key, vm.ssh_port, "admin", "hostname") == "ip-169-254-169-15\n"
        assert ssh(key, vm.ssh_port, "admin", "findmnt -no FSTYPE /boot/efi") == "vfat\n"
        assert ssh(key, vm.ssh_port, "admin", "test -d /sys/firmware/efi && echo uefi") == "uefi\n"

        assert vm.qmp("system_powerdown") == {"return": {}}
        assert vm.wait_exit(90) == 0
    print(f"whole test {time.monotonic() - started:.1f}s")
