"""One behaviour suite for every hypervisor driver: QEMU (real VMs under TCG/KVM) and fake."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from compute_helpers import Driver, wait_for

from goldsmith.compute import (
    DiskError,
    DiskSpec,
    FakeHypervisor,
    Hypervisor,
    QemuHypervisor,
    VmNotRunningError,
    VmSpec,
    VmStartError,
    VmState,
)
from goldsmith.compute.volumes import create_empty

MiB = 1024 * 1024


def test_both_drivers_satisfy_the_protocol() -> None:
    assert isinstance(QemuHypervisor(), Hypervisor)
    assert isinstance(FakeHypervisor(), Hypervisor)


def test_start_runs_and_shutdown_stops(driver: Driver, make_spec: Callable[..., VmSpec]) -> None:
    hv = driver.hv
    handle = hv.start(make_spec())
    assert hv.state(handle) is VmState.RUNNING
    assert hv.stop_reason(handle) is None
    hv.shutdown(handle, timeout=1)  # may be forced: the guest may not listen yet
    assert hv.state(handle) is VmState.STOPPED
    assert hv.stop_reason(handle) == "requested"
    assert hv.shutdown(handle, timeout=1) is True  # idempotent on a stopped VM
    hv.kill(handle)  # idempotent too
    assert hv.state(handle) is VmState.STOPPED


def test_kill_stops_at_once(driver: Driver, make_spec: Callable[..., VmSpec]) -> None:
    hv = driver.hv
    handle = hv.start(make_spec())
    hv.kill(handle)
    assert hv.state(handle) is VmState.STOPPED
    assert hv.adopt(handle.vm_id, handle.run_dir) is None


def test_unasked_death_is_a_crash(driver: Driver, make_spec: Callable[..., VmSpec]) -> None:
    handle = driver.hv.start(make_spec())
    driver.crash(handle)
    assert driver.hv.state(handle) is VmState.CRASHED
    assert driver.hv.stop_reason(handle) is None


def test_a_new_driver_adopts_running_vms(driver: Driver, make_spec: Callable[..., VmSpec]) -> None:
    spec = make_spec()
    handle = driver.hv.start(spec)
    restarted = driver.make()  # as after a server restart: no memory of the VM
    adopted = restarted.adopt(spec.vm_id, spec.run_dir)
    assert adopted == handle
    assert restarted.state(adopted) is VmState.RUNNING
    assert restarted.disks(adopted) == list(spec.disks)
    restarted.kill(adopted)
    assert driver.hv.state(handle) is VmState.STOPPED
    assert restarted.adopt(spec.vm_id, spec.run_dir) is None


def test_start_refuses_a_running_vm_and_missing_files(
    driver: Driver, make_spec: Callable[..., VmSpec], tmp_path: Path
) -> None:
    spec = make_spec()
    handle = driver.hv.start(spec)
    with pytest.raises(VmStartError, match="already running"):
        driver.hv.start(spec)
    driver.hv.kill(handle)
    missing = make_spec(disks=(DiskSpec(tmp_path / "nope.qcow2", "/dev/xvda"),))
    with pytest.raises(VmStartError, match=r"nope\.qcow2"):
        driver.hv.start(missing)


def test_console_survives_stop_and_start(driver: Driver, make_spec: Callable[..., VmSpec]) -> None:
    spec = make_spec()
    handle = driver.hv.start(spec)
    driver.wait_ready(handle)
    first = driver.hv.console_output(handle)
    assert first
    driver.hv.kill(handle)
    assert driver.hv.console_output(handle) == first  # readable while stopped
    handle = driver.hv.start(spec)
    driver.wait_ready(handle)
    wait_for(lambda: len(driver.hv.console_output(handle)) > len(first), 30)
    assert driver.hv.console_output(handle).startswith(first)
    assert len(driver.hv.console_output(handle, max_bytes=10)) == 10
    driver.hv.kill(handle)


def test_hot_plug_and_unplug(
    driver: Driver, make_spec: Callable[..., VmSpec], tmp_path: Path
) -> None:
    root = tmp_path / "root.qcow2"
    extra = tmp_path / "extra.qcow2"
    create_empty(root, 8 * MiB)
    create_empty(extra, 16 * MiB)
    root_disk = DiskSpec(root, "/dev/xvda", serial="volroot")
    extra_disk = DiskSpec(extra, "/dev/sdf", serial="vol0123456789abcdef0")
    handle = driver.hv.start(make_spec(disks=(root_disk,)))
    driver.wait_ready(handle)

    driver.hv.attach_disk(handle, extra_disk)
    assert driver.hv.disks(handle) == [root_disk, extra_disk]
    with pytest.raises(DiskError, match="already in use"):
        driver.hv.attach_disk(handle, DiskSpec(root, "/dev/sdf"))
    with pytest.raises(DiskError, match="no such disk"):
        driver.hv.attach_disk(handle, DiskSpec(tmp_path / "gone.qcow2", "/dev/sdg"))

    driver.hv.detach_disk(handle, "/dev/sdf", timeout=30)
    assert driver.hv.disks(handle) == [root_disk]
    with pytest.raises(DiskError, match="not attached"):
        driver.hv.detach_disk(handle, "/dev/sdf")
    driver.hv.kill(handle)


def test_control_operations(driver: Driver, make_spec: Callable[..., VmSpec]) -> None:
    hv = driver.hv
    handle = hv.start(make_spec())
    hv.pause(handle)
    assert hv.state(handle) is VmState.RUNNING  # paused is still running to EC2
    hv.resume(handle)
    hv.reboot(handle)
    assert hv.state(handle) is VmState.RUNNING
    assert hv.screenshot(handle).startswith(b"\x89PNG\r\n\x1a\n")
    hv.wake(handle)
    assert hv.state(handle) is VmState.RUNNING
    hv.kill(handle)
    for operation in (hv.reboot, hv.pause, hv.resume, hv.screenshot, hv.wake):
        with pytest.raises(VmNotRunningError):
            operation(handle)
