"""The QEMU driver with a real guest: what the guest sees (disks, network, metadata, power)."""

from __future__ import annotations

import re
import socket
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import pytest
from compute_guest import CMDLINE, boot_sector
from compute_helpers import wait_console

from goldsmith.compute import (
    BiosBoot,
    DiskSpec,
    QemuHypervisor,
    UefiBoot,
    VmSpec,
    VmStartError,
    VmState,
    kvm,
)
from goldsmith.compute.volumes import create_empty

MiB = 1024 * 1024


@pytest.fixture
def qemu() -> QemuHypervisor:
    return QemuHypervisor(start_timeout=30, qmp_timeout=10)


def test_guest_sees_hot_plugged_disks_with_their_serials(
    qemu: QemuHypervisor, make_spec: Callable[..., VmSpec], tmp_path: Path
) -> None:
    root, extra = tmp_path / "root.qcow2", tmp_path / "extra.qcow2"
    create_empty(root, 8 * MiB)
    create_empty(extra, 8 * MiB)
    handle = qemu.start(make_spec(disks=(DiskSpec(root, "/dev/xvda", serial="volroot"),)))
    wait_console(qemu, handle, b"GUEST-DISKS [vda:volroot]")
    qemu.attach_disk(handle, DiskSpec(extra, "/dev/sdf", serial="vol0123456789abcdef0"))
    wait_console(qemu, handle, b"GUEST-DISKS [vda:volroot vdb:vol0123456789abcdef0]")
    qemu.detach_disk(handle, "/dev/sdf")
    out = wait_console(qemu, handle, b"GUEST-DISKS [vda:volroot]\r\n", count=2)
    assert out.rstrip().endswith(b"GUEST-DISKS [vda:volroot]")
    qemu.kill(handle)


def test_network_ssh_forward_and_metadata_relay(
    qemu: QemuHypervisor, make_spec: Callable[..., VmSpec]
) -> None:
    spec = make_spec(net=True)
    assert spec.net is not None
    handle = qemu.start(spec)
    out = wait_console(qemu, handle, b"GUEST-IMDS")
    # DHCP inside 169.254.169.0/24, so that 169.254.169.254 is in the slirp network.
    assert b"GUEST-IP 169.254.169.15/24" in out
    # The relay connects from the instance's own loopback address: the service can tell who asks.
    assert f"GUEST-IMDS i-from-{spec.net.ssh_host}".encode() in out
    with socket.create_connection((spec.net.ssh_host, spec.net.ssh_port), timeout=10) as sock:
        sock.settimeout(10)
        assert sock.recv(100).startswith(b"SSH-2.0-goldsmith-test")
    qemu.kill(handle)


def test_acpi_shutdown_is_clean_when_the_guest_listens(
    qemu: QemuHypervisor, make_spec: Callable[..., VmSpec]
) -> None:
    handle = qemu.start(make_spec())
    wait_console(qemu, handle, b"GUEST-DISKS")
    started = time.monotonic()
    assert qemu.shutdown(handle, timeout=20) is True
    assert time.monotonic() - started < 10
    assert b"GUEST-POWERBUTTON" in qemu.console_output(handle)
    assert qemu.state(handle) is VmState.STOPPED
    assert qemu.stop_reason(handle) == "requested"


def test_shutdown_forces_a_guest_that_ignores_acpi(
    qemu: QemuHypervisor, make_spec: Callable[..., VmSpec]
) -> None:
    # Still booting (no init yet) means nobody handles the power button.
    handle = qemu.start(make_spec())
    assert qemu.shutdown(handle, timeout=0.5) is False
    assert qemu.state(handle) is VmState.STOPPED


def test_guest_power_off_is_reported_as_guest_initiated(
    qemu: QemuHypervisor, make_spec: Callable[..., VmSpec]
) -> None:
    # The kernel runs `busybox poweroff -f` as init: the guest switches itself off.
    handle = qemu.start(make_spec(cmdline=f"{CMDLINE} rdinit=/bin/busybox -- poweroff -f"))
    deadline = time.monotonic() + 60
    while qemu.state(handle) is VmState.RUNNING:
        assert time.monotonic() < deadline, qemu.console_output(handle).decode()
        time.sleep(0.2)
    assert qemu.state(handle) is VmState.STOPPED
    assert qemu.stop_reason(handle) == "guest"
    assert qemu.adopt(handle.vm_id, handle.run_dir) is None  # QEMU has exited


def test_bios_boots_the_first_disk(
    qemu: QemuHypervisor, make_spec: Callable[..., VmSpec], tmp_path: Path
) -> None:
    disk = tmp_path / "mbr.raw"
    disk.write_bytes(boot_sector(b"GUEST-BIOS-BOOT\n").ljust(MiB, b"\0"))
    blank = tmp_path / "blank.qcow2"
    create_empty(blank, MiB)
    spec = make_spec(disks=(DiskSpec(disk, "/dev/xvda", format="raw"), DiskSpec(blank, "/dev/sdb")))
    handle = qemu.start(replace(spec, boot=BiosBoot()))
    wait_console(qemu, handle, b"GUEST-BIOS-BOOT", timeout=30)
    qemu.kill(handle)


def test_uefi_firmware_runs_with_its_own_variable_store(
    qemu: QemuHypervisor, make_spec: Callable[..., VmSpec]
) -> None:
    spec = make_spec()
    handle = qemu.start(replace(spec, boot=UefiBoot()))
    assert (spec.run_dir / "OVMF_VARS.fd").stat().st_size > 0
    wait_console(qemu, handle, b"BdsDxe", timeout=60)  # OVMF's boot manager on the serial port
    qemu.kill(handle)


def test_start_failure_carries_qemus_reason(
    qemu: QemuHypervisor, make_spec: Callable[..., VmSpec], tmp_path: Path
) -> None:
    not_qcow2 = tmp_path / "plain.raw"
    not_qcow2.write_bytes(b"\0" * MiB)
    with pytest.raises(VmStartError, match=r"(?i)qcow"):
        qemu.start(make_spec(disks=(DiskSpec(not_qcow2, "/dev/xvda", format="qcow2"),)))


def test_command_line(qemu: QemuHypervisor, make_spec: Callable[..., VmSpec]) -> None:
    spec = make_spec(net=True)
    cmd = " ".join(qemu.command(replace(spec, vcpus=2)))
    assert "-machine pc " in cmd and "-no-shutdown" in cmd and "-daemonize" in cmd
    assert "net=169.254.169.0/24" in cmd and "restrict=on" in cmd
    assert "guestfwd=tcp:169.254.169.254:80-cmd:" in cmd
    assert re.search(r"-accel (kvm|tcg,thread=multi) ", cmd)
    assert "append=on -serial chardev:console" in cmd


def test_kvm_probe_falls_back_when_kvm_is_unusable(monkeypatch: pytest.MonkeyPatch) -> None:
    usable = kvm.probe_kvm()
    assert QemuHypervisor().accel == ("kvm" if usable else "tcg")
    assert QemuHypervisor(accel="tcg").accel == "tcg"
    monkeypatch.setattr(kvm, "KVM_DEVICE", "/nonexistent/kvm")
    assert kvm.probe_kvm() is False


def test_kvm_probe_child_rejects_a_device_that_is_not_kvm() -> None:
    import subprocess
    import sys

    code = "import sys; from goldsmith.compute import kvm; kvm.KVM_DEVICE='/dev/null'; "
    code += "sys.exit(kvm.main())"
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, timeout=30, check=False
    )
    assert done.returncode == 1
    assert done.stdout.startswith(b"unusable")
