"""A hypervisor without VMs, for fast tests of the layers above.

It keeps the same run-directory contract as the QEMU driver (``vm.json``, ``disks.json``,
``console.log``, ``stopped``, plus ``fake.json`` for its own state), so a second
``FakeHypervisor`` adopts VMs that a first one started, as after a server restart. Tests
steer the "guest" with :meth:`FakeHypervisor.guest_poweroff`, :meth:`FakeHypervisor.crash`
and :meth:`FakeHypervisor.write_console`; ``acpi_cooperative=False`` makes ``shutdown`` time
out and force, like a guest that ignores the power button.
"""

from __future__ import annotations

import itertools
import json
import os
import threading
from pathlib import Path

from goldsmith.compute.errors import DiskError, OperationTimeout, VmNotRunningError, VmStartError
from goldsmith.compute.hypervisor import CONSOLE_MAX
from goldsmith.compute.spec import (
    DirectBoot,
    DiskSpec,
    VmHandle,
    VmSpec,
    VmState,
    spec_from_json,
    spec_to_json,
)

_pids = itertools.count(4_000_000)  # above Linux's pid_max: never a real process


class FakeHypervisor:
    """In-process stand-in for :class:`~goldsmith.compute.qemu.QemuHypervisor`."""

    def __init__(self, *, acpi_cooperative: bool = True, detach_cooperative: bool = True) -> None:
        self.acpi_cooperative = acpi_cooperative
        self.detach_cooperative = detach_cooperative
        self._lock = threading.RLock()

    # ----------------------------------------------------------------- state file

    @staticmethod
    def _read(run_dir: Path) -> dict[str, object]:
        try:
            data = json.loads((run_dir / "fake.json").read_text())
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    @staticmethod
    def _write(run_dir: Path, data: dict[str, object]) -> None:
        tmp = run_dir / "fake.json.tmp"
        tmp.write_text(json.dumps(data))
        os.replace(tmp, run_dir / "fake.json")

    def _status(self, handle: VmHandle) -> str:
        data = self._read(handle.run_dir)
        return str(data.get("status")) if data.get("pid") == handle.pid else "gone"

    def _require_running(self, handle: VmHandle) -> None:
        if self._status(handle) not in {"running", "paused"}:
            raise VmNotRunningError(f"{handle.vm_id} is not running")

    def _set_status(self, handle: VmHandle, status: str, stopped: str | None = None) -> None:
        data = self._read(handle.run_dir)
        data["status"] = status
        self._write(handle.run_dir, data)
        if stopped:
            (handle.run_dir / "stopped").write_text(stopped + "\n")

    # ----------------------------------------------------------------- lifecycle

    def start(self, spec: VmSpec) -> VmHandle:
        with self._lock:
            run = spec.run_dir
            run.mkdir(parents=True, exist_ok=True)
            if self._read(run).get("status") in {"running", "paused"}:
                raise VmStartError(f"{spec.vm_id} is already running")
            missing = [str(d.path) for d in spec.disks if not d.path.exists()]
            if isinstance(spec.boot, DirectBoot) and not spec.boot.kernel.exists():
                missing.append(str(spec.boot.kernel))
            if missing:
                raise VmStartError(f"missing files for {spec.vm_id}: {', '.join(missing)}")
            (run / "stopped").unlink(missing_ok=True)
            (run / "vm.json").write_text(spec_to_json(spec))
            self._save_disks(run, list(spec.disks))
            pid = next(_pids)
            self._write(run, {"status": "running", "pid": pid})
            handle = VmHandle(spec.vm_id, run, pid)
            self.write_console(handle, f"fake: {spec.vm_id} booted\n".encode())
            return handle

    def state(self, handle: VmHandle) -> VmState:
        status = self._status(handle)
        if status in {"running", "paused"}:
            return VmState.RUNNING
        if status == "stopped" or (handle.run_dir / "stopped").exists():
            return VmState.STOPPED
        return VmState.CRASHED

    def stop_reason(self, handle: VmHandle) -> str | None:
        marker = handle.run_dir / "stopped"
        return marker.read_text().strip() if marker.exists() else None

    def shutdown(self, handle: VmHandle, timeout: float = 30.0) -> bool:
        with self._lock:
            if self._status(handle) not in {"running", "paused"}:
                return True
            self._set_status(handle, "stopped", "requested")
            return self.acpi_cooperative

    def kill(self, handle: VmHandle) -> None:
        with self._lock:
            if self._status(handle) in {"running", "paused"}:
                self._set_status(handle, "stopped", "requested")

    def reboot(self, handle: VmHandle) -> None:
        self._require_running(handle)
        self.write_console(handle, f"fake: {handle.vm_id} rebooted\n".encode())

    def pause(self, handle: VmHandle) -> None:
        self._require_running(handle)
        self._set_status(handle, "paused")

    def resume(self, handle: VmHandle) -> None:
        self._require_running(handle)
        self._set_status(handle, "running")

    def console_output(self, handle: VmHandle, max_bytes: int = CONSOLE_MAX) -> bytes:
        try:
            return (handle.run_dir / "console.log").read_bytes()[-max_bytes:]
        except FileNotFoundError:
            return b""

    def screenshot(self, handle: VmHandle) -> bytes:
        self._require_running(handle)
        # A valid 1×1 black PNG: enough for GetConsoleScreenshot's base64 round trip.
        return bytes.fromhex(
            "89504e470d0a1a0a0000000d4948445200000001000000010802000000907753de"
            "0000000c4944415408d763606060000000040001f61738550000000049454e44ae426082"
        )

    def wake(self, handle: VmHandle) -> None:
        self._require_running(handle)
        self.write_console(handle, f"fake: {handle.vm_id} woken by a key press\n".encode())

    # ----------------------------------------------------------------- disks

    def disks(self, handle: VmHandle) -> list[DiskSpec]:
        data = json.loads((handle.run_dir / "disks.json").read_text())
        return [DiskSpec(**{**d, "path": Path(d["path"])}) for d in data]

    def attach_disk(self, handle: VmHandle, disk: DiskSpec, timeout: float = 10.0) -> None:
        with self._lock:
            self._require_running(handle)
            current = self.disks(handle)
            if any(d.device == disk.device for d in current):
                raise DiskError(f"{disk.device} is already in use on {handle.vm_id}")
            if not disk.path.exists():
                raise DiskError(f"no such disk file: {disk.path}")
            self._save_disks(handle.run_dir, [*current, disk])

    def detach_disk(self, handle: VmHandle, device: str, timeout: float = 30.0) -> None:
        with self._lock:
            self._require_running(handle)
            current = self.disks(handle)
            if not any(d.device == device for d in current):
                raise DiskError(f"{device} is not attached to {handle.vm_id}")
            if not self.detach_cooperative:
                raise OperationTimeout(f"the guest did not release {device} within {timeout}s")
            self._save_disks(handle.run_dir, [d for d in current if d.device != device])

    # ----------------------------------------------------------------- adoption

    def adopt(self, vm_id: str, run_dir: Path) -> VmHandle | None:
        data = self._read(run_dir)
        if data.get("status") not in {"running", "paused"}:
            return None
        spec = spec_from_json((run_dir / "vm.json").read_text())
        if spec.vm_id != vm_id:
            raise VmStartError(f"{run_dir} belongs to {spec.vm_id}, not {vm_id}")
        pid = data["pid"]
        assert isinstance(pid, int)
        return VmHandle(vm_id, run_dir, pid)

    # ----------------------------------------------------------------- test controls

    def write_console(self, handle: VmHandle, data: bytes) -> None:
        """Append ``data`` to the console log, as a guest writing to its serial port."""
        with (handle.run_dir / "console.log").open("ab") as f:
            f.write(data)

    def guest_poweroff(self, handle: VmHandle) -> None:
        """The guest powers itself off (``state`` then reports stopped, reason ``guest``)."""
        self._set_status(handle, "stopped", "guest")

    def crash(self, handle: VmHandle) -> None:
        """The VM process dies unasked (``state`` then reports crashed)."""
        self._set_status(handle, "gone")

    @staticmethod
    def _save_disks(run_dir: Path, disks: list[DiskSpec]) -> None:
        data = [{**d.__dict__, "path": str(d.path)} for d in disks]
        (run_dir / "disks.json").write_text(json.dumps(data, indent=1))
