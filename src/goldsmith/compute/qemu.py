"""The QEMU driver: one daemonized ``qemu-system-x86_64`` per VM, controlled over QMP.

Run directory (one per VM, owned by the caller)::

    vm.json        the VmSpec it was started with (for adoption after a server restart)
    disks.json     the disks attached now (boot-time plus hot-plugged)
    qemu.pid       QEMU's pid (written by QEMU itself, ``-pidfile``)
    qmp.sock       the QMP monitor socket
    console.log    the serial console, appended to across stop/start and reboots
    stopped        marker: someone asked this VM to stop ("requested" or "guest")
    OVMF_VARS.fd   the VM's own UEFI variable store (UEFI boot only)

Why the command line looks as it does (see docs/design/compute.md for the full story):

- ``-daemonize``: the ``qemu-system`` parent exits only once the VM is set up (with QEMU's
  own error on stderr when it is not), and the VM then belongs to no server process, so it
  survives a server restart and is re-adopted from ``qemu.pid`` + ``qmp.sock``.
- ``-no-shutdown``: when the guest powers off, QEMU stays and reports status ``shutdown``
  instead of vanishing; so a QEMU that vanished unasked is truthfully ``crashed``, and a
  guest power-off is recognisable (EC2's InstanceInitiatedShutdownBehavior).
- ``-machine pc``: the ``microvm`` type hangs intermittently under TCG; ``pc`` never did.
- KVM when the long-mode probe (:mod:`goldsmith.compute.kvm`) passes, else TCG (multi-threaded
  when the VM has several vCPUs).
- Every disk is ``-blockdev`` + ``virtio-blk-pci`` named after its EC2 device, so hot-plug and
  unplug address the same names.
- User-mode networking on ``169.254.169.0/24`` so that the metadata address is inside the
  slirp network (guestfwd only forwards addresses inside it).
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time
import zlib
from pathlib import Path
from typing import Any

from goldsmith.compute import kvm
from goldsmith.compute.errors import (
    DiskError,
    HypervisorError,
    OperationTimeout,
    QmpError,
    VmNotRunningError,
    VmStartError,
)
from goldsmith.compute.hypervisor import CONSOLE_MAX
from goldsmith.compute.qmp import QmpClient
from goldsmith.compute.spec import (
    DirectBoot,
    DiskSpec,
    NetSpec,
    UefiBoot,
    VmHandle,
    VmSpec,
    VmState,
    spec_from_json,
    spec_to_json,
)

GUEST_NET = "169.254.169.0/24"
GUEST_HOST = "169.254.169.1"  # slirp's gateway (the host side)
GUEST_DNS = "169.254.169.3"
GUEST_FIRST_ADDR = "169.254.169.15"  # DHCP hands this to the (only) guest NIC
IMDS_ADDR = "169.254.169.254"
RELAY = Path(__file__).with_name("_relay.py")


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def _opt(value: str) -> str:
    """Escape a value for QEMU's comma-separated option syntax (a comma is doubled)."""
    return value.replace(",", ",,")


def default_mac(vm_id: str) -> str:
    """A stable locally-administered MAC address derived from the vm id."""
    digest = zlib.crc32(vm_id.encode()).to_bytes(4, "big")
    return "52:54:" + ":".join(f"{b:02x}" for b in digest)


class QemuHypervisor:
    """Run VMs as daemonized QEMU processes. See the module docstring for the run directory.

    ``accel``: ``"auto"`` (probe KVM once, fall back to TCG), ``"kvm"`` or ``"tcg"``.
    """

    def __init__(
        self,
        *,
        binary: str = "qemu-system-x86_64",
        accel: str = "auto",
        machine: str = "pc",
        start_timeout: float = 30.0,
        qmp_timeout: float = 10.0,
    ) -> None:
        if accel not in {"auto", "kvm", "tcg"}:
            raise ValueError(f"accel must be auto, kvm or tcg, not {accel!r}")
        self.binary = binary
        self.machine = machine
        self.start_timeout = start_timeout
        self.qmp_timeout = qmp_timeout
        self._accel = accel
        self._locks: dict[Path, threading.RLock] = {}
        self._locks_guard = threading.Lock()

    # ----------------------------------------------------------------- command line

    @property
    def accel(self) -> str:
        """The accelerator VMs get: ``kvm`` or ``tcg`` (``auto`` resolved by the probe)."""
        if self._accel == "auto":
            return "kvm" if kvm.kvm_usable() else "tcg"
        return self._accel

    def command(self, spec: VmSpec) -> list[str]:
        """The full QEMU command line for ``spec`` (no side effects)."""
        run = spec.run_dir
        accel = self.accel
        tcg = "tcg,thread=multi" if spec.vcpus > 1 else "tcg"
        cmd = [
            self.binary,
            "-name", f"{_opt(spec.vm_id)},process=qemu-{_opt(spec.vm_id)}",
            "-machine", f"{self.machine}",
            "-accel", "kvm" if accel == "kvm" else tcg,
            "-cpu", "host" if accel == "kvm" else "max",
            "-smp", str(spec.vcpus),
            "-m", str(spec.memory_mib),
            "-nodefaults", "-no-user-config", "-no-shutdown",
            "-display", "none", "-vga", "std",
            "-chardev", f"file,id=console,path={_opt(str(run / 'console.log'))},append=on",
            "-serial", "chardev:console",
            "-chardev", f"socket,id=qmp,path={_opt(str(run / 'qmp.sock'))},server=on,wait=off",
            "-mon", "chardev=qmp,mode=control",
            "-pidfile", str(run / "qemu.pid"),
            "-daemonize",
            "-device", "virtio-rng-pci",
        ]  # fmt: skip
        cmd += self._boot_args(spec)
        for index, disk in enumerate(spec.disks):
            boot_index = index if not isinstance(spec.boot, DirectBoot) else None
            cmd += ["-blockdev", self._blockdev_arg(disk)]
            cmd += ["-device", self._device_arg(disk, boot_index)]
        if spec.net is not None:
            cmd += self._net_args(spec.vm_id, spec.net)
        return cmd

    def _boot_args(self, spec: VmSpec) -> list[str]:
        boot = spec.boot
        if isinstance(boot, DirectBoot):
            args = ["-kernel", str(boot.kernel), "-append", boot.cmdline]
            return [*args, "-initrd", str(boot.initrd)] if boot.initrd else args
        if isinstance(boot, UefiBoot):
            code, vars_ = _opt(str(boot.code)), _opt(str(spec.run_dir / "OVMF_VARS.fd"))
            return [
                "-drive", f"if=pflash,format=raw,unit=0,readonly=on,file={code}",
                "-drive", f"if=pflash,format=raw,unit=1,file={vars_}",
            ]  # fmt: skip
        return []

    @staticmethod
    def _blockdev_arg(disk: DiskSpec) -> str:
        return json.dumps(QemuHypervisor._blockdev(disk))

    @staticmethod
    def _blockdev(disk: DiskSpec) -> dict[str, Any]:
        return {
            "driver": disk.format,
            "node-name": disk.node_name,
            "read-only": disk.read_only,
            "discard": "unmap",
            "file": {"driver": "file", "filename": str(disk.path)},
        }

    @staticmethod
    def _device(disk: DiskSpec, boot_index: int | None = None) -> dict[str, Any]:
        device: dict[str, Any] = {
            "driver": "virtio-blk-pci",
            "id": "dev-" + disk.node_name,
            "drive": disk.node_name,
        }
        if disk.serial:
            device["serial"] = disk.serial
        if boot_index is not None:
            device["bootindex"] = boot_index
        return device

    @staticmethod
    def _device_arg(disk: DiskSpec, boot_index: int | None) -> str:
        device = QemuHypervisor._device(disk, boot_index)
        return ",".join([device.pop("driver")] + [f"{k}={_opt(str(v))}" for k, v in device.items()])

    @staticmethod
    def _net_args(vm_id: str, net: NetSpec) -> list[str]:
        relay = shlex.join(
            [
                sys.executable,
                "-I",
                "-S",
                str(RELAY),
                net.ssh_host,
                net.imds_host,
                str(net.imds_port),
            ]
        )
        parts = [
            "user",
            "id=net0",
            f"net={GUEST_NET}",
            f"host={GUEST_HOST}",
            f"dns={GUEST_DNS}",
            f"dhcpstart={GUEST_FIRST_ADDR}",
            f"hostfwd=tcp:{net.ssh_host}:{net.ssh_port}-:22",
            f"guestfwd=tcp:{IMDS_ADDR}:80-cmd:{_opt(relay)}",
            f"restrict={'on' if net.isolated else 'off'}",
        ]
        if net.hostname:
            parts.append(f"hostname={_opt(net.hostname)}")
        mac = net.mac or default_mac(vm_id)
        return ["-netdev", ",".join(parts), "-device", f"virtio-net-pci,netdev=net0,mac={mac}"]

    # ----------------------------------------------------------------- lifecycle

    def start(self, spec: VmSpec) -> VmHandle:
        """Start QEMU for ``spec``; see :meth:`Hypervisor.start`."""
        run = spec.run_dir
        run.mkdir(parents=True, exist_ok=True)
        with self._lock(run):
            if self._live_pid(run) is not None:
                raise VmStartError(f"{spec.vm_id} is already running")
            self._check_files(spec)
            for name in ("qmp.sock", "qemu.pid", "stopped"):
                (run / name).unlink(missing_ok=True)
            if isinstance(spec.boot, UefiBoot) and not (run / "OVMF_VARS.fd").exists():
                shutil.copyfile(spec.boot.vars_template, run / "OVMF_VARS.fd")
            _write_atomic(run / "vm.json", spec_to_json(spec))
            self._save_disks(run, list(spec.disks))
            cmd = self.command(spec)
            try:
                done = subprocess.run(
                    cmd, capture_output=True, timeout=self.start_timeout, check=False
                )
            except subprocess.TimeoutExpired as exc:
                self._kill_pidfile(run)
                raise VmStartError(f"QEMU did not start within {self.start_timeout}s") from exc
            if done.returncode != 0:
                message = done.stderr.decode(errors="replace").strip() or f"exit {done.returncode}"
                raise VmStartError(f"QEMU refused to start {spec.vm_id}: {message}")
            pid = self._live_pid(run)
            if pid is None:
                raise VmStartError(f"QEMU for {spec.vm_id} exited right after starting")
            return VmHandle(spec.vm_id, run, pid)

    @staticmethod
    def _check_files(spec: VmSpec) -> None:
        needed: list[Path] = [d.path for d in spec.disks]
        if isinstance(spec.boot, DirectBoot):
            needed.append(spec.boot.kernel)
            if spec.boot.initrd:
                needed.append(spec.boot.initrd)
        if isinstance(spec.boot, UefiBoot):
            needed += [spec.boot.code, spec.boot.vars_template]
        missing = [str(p) for p in needed if not p.exists()]
        if missing:
            raise VmStartError(f"missing files for {spec.vm_id}: {', '.join(missing)}")

    def state(self, handle: VmHandle) -> VmState:
        """running / stopped / crashed; a guest that powered off is stopped here and now."""
        with self._lock(handle.run_dir):
            if not self._alive(handle):
                return self._gone_state(handle.run_dir)
            try:
                with self._qmp(handle) as qmp:
                    status = qmp.execute("query-status", timeout=self.qmp_timeout)["status"]
                    if status == "shutdown":
                        self._mark_stopped(handle.run_dir, "guest")
                        self._quit(handle, qmp)
                        return VmState.STOPPED
                    if status == "guest-panicked":
                        self._kill_pid(handle.pid)
                        return VmState.CRASHED
            except (QmpError, OperationTimeout):
                if not self._alive(handle):
                    return self._gone_state(handle.run_dir)
            return VmState.RUNNING

    def stop_reason(self, handle: VmHandle) -> str | None:
        """Why a stopped VM stopped: ``requested`` (shutdown/kill) or ``guest`` (power-off)."""
        marker = handle.run_dir / "stopped"
        return marker.read_text().strip() if marker.exists() else None

    def shutdown(self, handle: VmHandle, timeout: float = 30.0) -> bool:
        """ACPI power button, wait up to ``timeout`` for the guest, then force."""
        with self._lock(handle.run_dir):
            if not self._alive(handle):
                return True
            self._mark_stopped(handle.run_dir, "requested")
            try:
                with self._qmp(handle) as qmp:
                    status = qmp.execute("query-status", timeout=self.qmp_timeout)["status"]
                    if status != "shutdown":
                        qmp.execute("system_powerdown", timeout=self.qmp_timeout)
                        qmp.wait_event("SHUTDOWN", timeout)
                    self._quit(handle, qmp)
                    return True
            except (QmpError, OperationTimeout):
                self._kill_pid(handle.pid)
                return False

    def kill(self, handle: VmHandle) -> None:
        """SIGKILL QEMU and wait until it is gone."""
        with self._lock(handle.run_dir):
            if self._alive(handle):
                self._mark_stopped(handle.run_dir, "requested")
                self._kill_pid(handle.pid)

    def reboot(self, handle: VmHandle) -> None:
        """Hard reset (``system_reset``)."""
        self._command(handle, "system_reset")

    def pause(self, handle: VmHandle) -> None:
        """``stop``: QEMU stops the vCPUs, drains and flushes all block devices."""
        self._command(handle, "stop")

    def resume(self, handle: VmHandle) -> None:
        """``cont``."""
        self._command(handle, "cont")

    def console_output(self, handle: VmHandle, max_bytes: int = CONSOLE_MAX) -> bytes:
        """The last ``max_bytes`` of ``console.log``."""
        path = handle.run_dir / "console.log"
        try:
            with path.open("rb") as f:
                size = f.seek(0, os.SEEK_END)
                f.seek(max(size - max_bytes, 0))
                return f.read()
        except FileNotFoundError:
            return b""

    def screenshot(self, handle: VmHandle) -> bytes:
        """PNG via QMP ``screendump`` (the VGA device is there even without a display)."""
        path = handle.run_dir / "screen.png"
        self._command(handle, "screendump", {"filename": str(path), "format": "png"})
        try:
            return path.read_bytes()
        finally:
            path.unlink(missing_ok=True)

    def wake(self, handle: VmHandle) -> None:
        """QMP ``send-key`` Shift: the guest sees a key press (unblanks its console)."""
        self._command(handle, "send-key", {"keys": [{"type": "qcode", "data": "shift"}]})

    # ----------------------------------------------------------------- disks

    def disks(self, handle: VmHandle) -> list[DiskSpec]:
        """The disks attached now, from ``disks.json``."""
        path = handle.run_dir / "disks.json"
        return [DiskSpec(**{**d, "path": Path(d["path"])}) for d in json.loads(path.read_text())]

    def attach_disk(self, handle: VmHandle, disk: DiskSpec, timeout: float = 10.0) -> None:
        """``blockdev-add`` then ``device_add``; the first is rolled back if the second fails."""
        with self._lock(handle.run_dir):
            current = self.disks(handle)
            if any(d.device == disk.device for d in current):
                raise DiskError(f"{disk.device} is already in use on {handle.vm_id}")
            if not disk.path.exists():
                raise DiskError(f"no such disk file: {disk.path}")
            with self._qmp(handle) as qmp:
                try:
                    qmp.execute("blockdev-add", self._blockdev(disk), timeout=timeout)
                except QmpError as exc:
                    raise DiskError(f"cannot open {disk.path}: {exc}") from exc
                try:
                    qmp.execute("device_add", self._device(disk), timeout=timeout)
                except QmpError as exc:
                    qmp.execute("blockdev-del", {"node-name": disk.node_name}, timeout=timeout)
                    raise DiskError(f"cannot attach {disk.device}: {exc}") from exc
            self._save_disks(handle.run_dir, [*current, disk])

    def detach_disk(self, handle: VmHandle, device: str, timeout: float = 30.0) -> None:
        """``device_del``, wait for ``DEVICE_DELETED`` (guest's ACPI eject), ``blockdev-del``."""
        with self._lock(handle.run_dir):
            current = self.disks(handle)
            matches = [d for d in current if d.device == device]
            if not matches:
                raise DiskError(f"{device} is not attached to {handle.vm_id}")
            disk = matches[0]
            dev_id = "dev-" + disk.node_name
            with self._qmp(handle) as qmp:
                try:
                    qmp.execute("device_del", {"id": dev_id}, timeout=self.qmp_timeout)
                    qmp.wait_event(
                        "DEVICE_DELETED",
                        timeout,
                        lambda e: e.get("data", {}).get("device") == dev_id,
                    )
                except QmpError as exc:
                    if "not found" not in str(exc):  # already gone after an earlier timeout
                        raise DiskError(f"cannot detach {device}: {exc}") from exc
                except OperationTimeout as exc:
                    raise OperationTimeout(
                        f"the guest did not release {device} within {timeout}s"
                    ) from exc
                try:
                    qmp.execute("blockdev-del", {"node-name": disk.node_name}, timeout=timeout)
                except QmpError as exc:
                    if "not found" not in str(exc).lower():
                        raise DiskError(f"cannot close {device}: {exc}") from exc
            self._save_disks(handle.run_dir, [d for d in current if d.device != device])

    # ----------------------------------------------------------------- adoption

    def adopt(self, vm_id: str, run_dir: Path) -> VmHandle | None:
        """Find the QEMU of ``run_dir`` by its pid file; None unless it runs and answers QMP."""
        with self._lock(run_dir):
            pid = self._live_pid(run_dir)
            if pid is None:
                return None
            try:
                spec = spec_from_json((run_dir / "vm.json").read_text())
            except (OSError, ValueError, KeyError) as exc:
                raise HypervisorError(f"unreadable vm.json in {run_dir}: {exc}") from exc
            if spec.vm_id != vm_id:
                raise HypervisorError(f"{run_dir} belongs to {spec.vm_id}, not {vm_id}")
            handle = VmHandle(vm_id, run_dir, pid)
            with self._qmp(handle) as qmp:
                qmp.execute("query-status", timeout=self.qmp_timeout)
            return handle

    # ----------------------------------------------------------------- helpers

    def _lock(self, run_dir: Path) -> threading.RLock:
        with self._locks_guard:
            return self._locks.setdefault(run_dir, threading.RLock())

    def _qmp(self, handle: VmHandle) -> QmpClient:
        try:
            return QmpClient(handle.run_dir / "qmp.sock", timeout=self.qmp_timeout)
        except QmpError as exc:
            if not self._alive(handle):
                raise VmNotRunningError(f"{handle.vm_id} is not running") from exc
            raise

    def _command(self, handle: VmHandle, name: str, args: dict[str, Any] | None = None) -> Any:
        with self._lock(handle.run_dir):
            if not self._alive(handle):
                raise VmNotRunningError(f"{handle.vm_id} is not running")
            with self._qmp(handle) as qmp:
                return qmp.execute(name, args, timeout=self.qmp_timeout)

    def _quit(self, handle: VmHandle, qmp: QmpClient) -> None:
        """Ask QEMU to exit and wait for the process to go; kill it if it lingers."""
        with contextlib.suppress(QmpError):  # QEMU may close the socket before replying
            qmp.execute("quit", timeout=self.qmp_timeout)
        if not _wait_gone(handle.pid, 5.0):
            self._kill_pid(handle.pid)

    @staticmethod
    def _mark_stopped(run_dir: Path, reason: str) -> None:
        _write_atomic(run_dir / "stopped", reason + "\n")

    @staticmethod
    def _gone_state(run_dir: Path) -> VmState:
        return VmState.STOPPED if (run_dir / "stopped").exists() else VmState.CRASHED

    @staticmethod
    def _kill_pid(pid: int) -> None:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            return
        if not _wait_gone(pid, 10.0):
            raise OperationTimeout(f"QEMU pid {pid} did not die after SIGKILL")

    def _kill_pidfile(self, run_dir: Path) -> None:
        pid = self._live_pid(run_dir)
        if pid is not None:
            self._kill_pid(pid)

    def _alive(self, handle: VmHandle) -> bool:
        return _is_our_qemu(handle.pid, handle.run_dir)

    @staticmethod
    def _live_pid(run_dir: Path) -> int | None:
        try:
            pid = int((run_dir / "qemu.pid").read_text().strip())
        except (OSError, ValueError):
            return None
        return pid if _is_our_qemu(pid, run_dir) else None

    @staticmethod
    def _save_disks(run_dir: Path, disks: list[DiskSpec]) -> None:
        data = [{**d.__dict__, "path": str(d.path)} for d in disks]
        _write_atomic(run_dir / "disks.json", json.dumps(data, indent=1))


def _is_our_qemu(pid: int, run_dir: Path) -> bool:
    """Alive (not a zombie) and really the QEMU of ``run_dir`` (guards against pid reuse)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    if stat.rsplit(")", 1)[-1].split()[0] in {"Z", "X"}:
        return False
    return f"path={run_dir / 'qmp.sock'}".encode() in cmdline.replace(b",,", b",")


def _wait_gone(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[-1].split()[0]
        except OSError:
            return True
        if state in {"Z", "X"}:
            return True
        time.sleep(0.02)
    return False
