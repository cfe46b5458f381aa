"""The hypervisor interface: what the service layer may ask of a VM engine.

Two implementations pass one conformance suite (``tests/unit/compute/test_compute_conformance.py``):
:class:`goldsmith.compute.qemu.QemuHypervisor` (real QEMU processes) and
:class:`goldsmith.compute.fake.FakeHypervisor` (in memory, for fast service tests).

Contracts every driver keeps:

- A VM is identified by its ``run_dir``; everything a driver needs to find a VM again after
  the server restarts lives there (QEMU: ``qemu.pid``, ``qmp.sock``, ``vm.json``,
  ``console.log``). The caller owns the directory and deletes it on terminate.
- ``start`` returns once the VM is running, not once the guest has booted; the caller polls
  :meth:`console_output` or the network for readiness, with its own timeout.
- ``shutdown``/``kill`` are idempotent: on a VM that is already gone they return quietly.
- The console log survives stop/start of the same ``run_dir`` (new output is appended).
- Every call that waits takes or has a timeout and raises
  :class:`~goldsmith.compute.errors.OperationTimeout` when it expires; every failure is a
  :class:`~goldsmith.compute.errors.ComputeError`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol, runtime_checkable

from goldsmith.compute.spec import DiskSpec, VmHandle, VmSpec, VmState

CONSOLE_MAX = 64 * 1024  # GetConsoleOutput returns the most recent 64 KiB


@runtime_checkable
class Hypervisor(Protocol):
    """A VM engine. Methods are thread-safe for different VMs; serialise calls per VM."""

    def start(self, spec: VmSpec) -> VmHandle:
        """Start a VM and return once it runs. Raises ``VmStartError`` with the reason."""
        ...

    def state(self, handle: VmHandle) -> VmState:
        """Cheap status: running, stopped (asked to, or guest powered off) or crashed."""
        ...

    def stop_reason(self, handle: VmHandle) -> str | None:
        """Why a stopped VM stopped: ``requested`` (shutdown/kill) or ``guest`` (the guest
        powered off: EC2's InstanceInitiatedShutdownBehavior applies); None otherwise."""
        ...

    def shutdown(self, handle: VmHandle, timeout: float = 30.0) -> bool:
        """Ask the guest to power off (ACPI); force it off after ``timeout`` seconds.

        Returns True when the guest powered off by itself, False when it had to be forced.
        """
        ...

    def kill(self, handle: VmHandle) -> None:
        """Stop the VM at once (power cut). Idempotent."""
        ...

    def reboot(self, handle: VmHandle) -> None:
        """Reset the VM (hard reset; the console log continues)."""
        ...

    def pause(self, handle: VmHandle) -> None:
        """Freeze the vCPUs and flush every disk, so the disk files are consistent to read."""
        ...

    def resume(self, handle: VmHandle) -> None:
        """Undo :meth:`pause`."""
        ...

    def console_output(self, handle: VmHandle, max_bytes: int = CONSOLE_MAX) -> bytes:
        """The last ``max_bytes`` of the serial console (also after the VM stopped)."""
        ...

    def attach_disk(self, handle: VmHandle, disk: DiskSpec, timeout: float = 10.0) -> None:
        """Hot-plug a disk into a running VM. Raises ``DiskError`` (e.g. device in use)."""
        ...

    def detach_disk(self, handle: VmHandle, device: str, timeout: float = 30.0) -> None:
        """Hot-unplug the disk named ``device``; returns once the guest released it.

        Raises ``OperationTimeout`` when the guest does not release it in time (the disk then
        stays attached and the call may be repeated).
        """
        ...

    def disks(self, handle: VmHandle) -> list[DiskSpec]:
        """The disks attached now (boot-time ones plus hot-plugged ones)."""
        ...

    def adopt(self, vm_id: str, run_dir: Path) -> VmHandle | None:
        """Re-attach to a VM started by an earlier process, or None when it is not running."""
        ...

    def screenshot(self, handle: VmHandle) -> bytes:
        """A PNG of the VM's screen (GetConsoleScreenshot; :func:`screen.to_jpeg` makes the
        JPEG EC2 serves). Raises ``VmNotRunningError`` on a VM that does not run."""
        ...

    def wake(self, handle: VmHandle) -> None:
        """Press a key that types nothing (Shift), so a blanked console shows its screen again
        (GetConsoleScreenshot's WakeUp). Raises ``VmNotRunningError`` on a stopped VM."""
        ...
