"""The instance manager: turns catalog states into VMs and VM events into catalog states.

The API calls (RunInstances, Stop/Start/Terminate…) only validate and write the *requested*
state (``pending``, ``stopping``, ``shutting-down``); the manager does the slow part in a
worker thread — volume files, QEMU — and writes the state that is then true (``running``,
``stopped``, ``terminated``, or a failure with a StateReason). Its poll thread watches
running VMs: a guest that powers itself off becomes ``stopped`` or ``terminated`` per
InstanceInitiatedShutdownBehavior; a VM that vanished becomes ``stopped`` with a
``Server.InternalError`` reason.

One lock per instance serialises everything done to its VM (the poller skips a busy
instance), so a CreateImage shutdown is never mistaken for a guest power-off.

Restart: :meth:`start` adopts VMs started by an earlier server process
(``Hypervisor.adopt``); instances whose VM is gone are reported ``stopped`` (truthfully),
unfinished transitions are finished. Volume files are never touched by adoption.
"""

from __future__ import annotations

import logging
import shutil
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from goldsmith.catalog import images as image_rows
from goldsmith.catalog import instances as rows
from goldsmith.catalog import volumes as volume_rows
from goldsmith.catalog.db import Catalog
from goldsmith.compute import (
    BiosBoot,
    Boot,
    ComputeError,
    DirectBoot,
    DiskSpec,
    Hypervisor,
    NetSpec,
    UefiBoot,
    VmHandle,
    VmSpec,
    VmState,
    VolumeError,
)
from goldsmith.compute.bootfiles import extract_boot_files
from goldsmith.compute.network import can_bind, loopback_address, ssh_port
from goldsmith.service.instances.common import host_name
from goldsmith.service.volume_files import VolumeFiles

log = logging.getLogger(__name__)

PV_CMDLINE = "console=ttyS0 root=/dev/vda rw quiet"
"""Kernel command line of paravirtual launches: serial console, root on the first disk."""
SHUTDOWN_TIMEOUT = 30.0
TERMINATE_TIMEOUT = 10.0


@dataclass(frozen=True)
class ImdsTarget:
    """Where the guest's 169.254.169.254:80 is relayed to (the metadata server)."""

    host: str = "127.0.0.1"
    port: int = 0


def now() -> datetime:
    return datetime.now(UTC)


def stamp(at: datetime) -> str:
    return at.strftime("%Y-%m-%d %H:%M:%S GMT")


def root_first(volumes: list[volume_rows.VolumeRow], root: str) -> list[volume_rows.VolumeRow]:
    return sorted(volumes, key=lambda v: (v.device != root, v.attach_time or now(), v.device))


class InstanceManager:
    """Runs VMs for instance rows; see the module docstring."""

    def __init__(
        self,
        catalog: Catalog,
        hypervisor: Hypervisor,
        files: VolumeFiles,
        *,
        inline: bool = False,
        poll_interval: float = 1.0,
        workers: int = 4,
    ) -> None:
        self.catalog = catalog
        self.hypervisor = hypervisor
        self.files = files
        self.imds = ImdsTarget()
        self._inline = inline
        self._poll_interval = poll_interval
        self._pool = ThreadPoolExecutor(workers, thread_name_prefix="gs-vm")
        self._futures: set[Future[None]] = set()
        self._handles: dict[str, VmHandle] = {}
        self._locks: dict[str, threading.RLock] = {}
        self._guard = threading.Lock()
        self._stop = threading.Event()
        self._poller: threading.Thread | None = None
        self.ssh_ports: Callable[[str], int] = ssh_port

    # -- plumbing ----------------------------------------------------------------------------

    def lock(self, instance_id: str) -> threading.RLock:
        with self._guard:
            return self._locks.setdefault(instance_id, threading.RLock())

    def handle(self, instance_id: str) -> VmHandle | None:
        return self._handles.get(instance_id)

    def submit(self, fn: Callable[..., None], *args: Any) -> None:
        """Run ``fn(*args)`` in a worker (or now, inline); errors are logged, not raised."""
        if self._inline:
            fn(*args)
            return
        future = self._pool.submit(self._guarded, fn, *args)
        self._futures.add(future)
        future.add_done_callback(self._futures.discard)

    @staticmethod
    def _guarded(fn: Callable[..., None], *args: Any) -> None:
        try:
            fn(*args)
        except Exception:
            log.exception("instance action %s%r failed", getattr(fn, "__name__", fn), args)

    def wait(self, timeout: float | None = 60.0) -> None:
        """Wait for queued actions (tests, benchmarks)."""
        while self._futures:
            for future in list(self._futures):
                future.result(timeout)

    def _row(self, region: str, instance_id: str) -> rows.InstanceRow | None:
        with self.catalog.begin() as conn:
            return rows.get_instance(conn, region, instance_id)

    def _update(self, instance_id: str, **values: Any) -> None:
        with self.catalog.begin() as conn:
            rows.update_instance(conn, instance_id, **values)

    # -- start/stop of the manager -----------------------------------------------------------

    def start(self) -> None:
        """Adopt VMs of an earlier process, finish interrupted transitions, start polling."""
        with self.catalog.begin() as conn:
            active = rows.active_instances(conn)
        for row in active:
            run_dir = self.files.run_dir(row.region, row.instance_id)
            handle = None
            if (run_dir / "vm.json").exists():
                try:
                    handle = self.hypervisor.adopt(row.instance_id, run_dir)
                except ComputeError as exc:
                    log.warning("cannot adopt %s: %s", row.instance_id, exc)
            if handle is not None:
                self._handles[row.instance_id] = handle
            self._recover(row, handle)
        if not self._inline:
            self._poller = threading.Thread(target=self._poll_loop, name="gs-poll", daemon=True)
            self._poller.start()

    def _recover(self, row: rows.InstanceRow, handle: VmHandle | None) -> None:
        iid, region = row.instance_id, row.region
        if row.state == "pending":
            if handle is None:
                self.submit(self.launch, region, iid)
            else:
                self._update(iid, state="running")
        elif row.state == "stopping":
            self.submit(self.stop_vm, region, iid, False)
        elif row.state == "shutting-down":
            self.submit(self.terminate_vm, region, iid)
        elif row.state == "running" and handle is None:
            self._update(
                iid,
                state="stopped",
                state_reason_code="Server.InternalError",
                state_reason_message=(
                    "Server.InternalError: the virtual machine was not running when the "
                    "server restarted"
                ),
                state_transition_reason=f"Service initiated ({stamp(now())})",
            )

    def close(self) -> None:
        """Stop polling and the workers. VMs keep running (adopted at the next start)."""
        self._stop.set()
        if self._poller is not None:
            self._poller.join(timeout=5)
        self._pool.shutdown(wait=False, cancel_futures=True)

    # -- the VM spec ------------------------------------------------------------------------

    def _boot(self, row: rows.InstanceRow, run_dir: Path) -> Boot:
        if row.virtualization_type == "paravirtual":
            kernel = run_dir / "kernel"
            initrd = run_dir / "initrd"
            return DirectBoot(kernel, initrd if initrd.exists() else None, PV_CMDLINE)
        if row.boot_mode == "uefi":
            return UefiBoot()
        return BiosBoot()

    def _stage_boot_files(self, row: rows.InstanceRow, run_dir: Path) -> None:
        """Copy the aki/ari contents into the run dir (they outlive their images), or, for
        a paravirtual instance without a kernel image, the root volume's own kernel."""
        if row.virtualization_type != "paravirtual":
            return
        if row.kernel_id is None:
            self._stage_pv_grub(row, run_dir)
            return
        for image_id, name in ((row.kernel_id, "kernel"), (row.ramdisk_id, "initrd")):
            if image_id is None or (run_dir / name).exists():
                continue
            with self.catalog.begin() as conn:
                image = image_rows.get_images(conn, [image_id]).get(image_id)
            devices = image.block_devices if image is not None else ()
            snap = next((d.snapshot_id for d in devices if d.snapshot_id), None)
            if snap is None:
                raise ComputeError(f"the {name} image {image_id} is gone")
            self.files.link_into(self.files.base(row.region, snap), run_dir / name)
        if not (run_dir / "kernel").exists():
            raise ComputeError("a paravirtual instance needs a kernel image (KernelId)")

    def _stage_pv_grub(self, row: rows.InstanceRow, run_dir: Path) -> None:
        """PV-GRUB: the kernel (and initrd) in the root volume's /boot, read at every boot
        like PV-GRUB reads menu.lst, so a kernel the guest installed is the one that boots."""
        with self.catalog.begin() as conn:
            vols = volume_rows.volumes_of(conn, [row.instance_id])[row.instance_id]
        root = next((v for v in vols if v.device == row.root_device_name), None)
        if root is None:
            raise ComputeError(f"no root volume at {row.root_device_name} to boot from")
        (run_dir / "initrd").unlink(missing_ok=True)  # this boot's disk may have none
        with self.files.raw_view(row.region, root.volume_id, root.snapshot_id) as disk:
            try:
                extract_boot_files(disk, run_dir)
            except VolumeError as exc:
                raise ComputeError(f"PV-GRUB boot from {root.volume_id}: {exc}") from exc

    def spec(self, row: rows.InstanceRow) -> VmSpec:
        run_dir = self.files.run_dir(row.region, row.instance_id)
        with self.catalog.begin() as conn:
            vols = volume_rows.volumes_of(conn, [row.instance_id])[row.instance_id]
        disks = tuple(
            DiskSpec(
                path=self.files.path(row.region, v.volume_id).absolute(),
                device=str(v.device),
                serial=v.volume_id.replace("-", ""),
            )
            for v in root_first(vols, row.root_device_name)
        )
        assert row.address_index is not None and row.ssh_port is not None
        net = NetSpec(
            ssh_host=loopback_address(row.address_index),
            ssh_port=row.ssh_port,
            imds_host=self.imds.host,
            imds_port=self.imds.port,
            hostname=host_name(row.address_index),
        )
        return VmSpec(
            vm_id=row.instance_id,
            vcpus=row.vcpus,
            memory_mib=row.memory_mib,
            boot=self._boot(row, run_dir),
            disks=disks,
            net=net,
            run_dir=run_dir,
        )

    def _pick_ssh_port(self, row: rows.InstanceRow) -> int:
        assert row.address_index is not None
        address = loopback_address(row.address_index)
        if row.ssh_port is not None and can_bind(address, row.ssh_port):
            return row.ssh_port
        return self.ssh_ports(address)

    # -- actions (worker threads) -----------------------------------------------------------

    def launch(self, region: str, instance_id: str) -> None:
        """pending → running: make the volume files, start the VM (or fail with a reason)."""
        with self.lock(instance_id):
            row = self._row(region, instance_id)
            if row is None or row.state != "pending":
                return
            try:
                self._boot_vm(row)
            except Exception as exc:
                log.warning("launch of %s failed: %s", instance_id, exc)
                self._fail_launch(row, str(exc))

    def _boot_vm(self, row: rows.InstanceRow) -> None:
        run_dir = self.files.run_dir(row.region, row.instance_id)
        run_dir.mkdir(parents=True, exist_ok=True)
        with self.catalog.begin() as conn:
            vols = volume_rows.volumes_of(conn, [row.instance_id])[row.instance_id]
        for vol in vols:
            self.files.create(row.region, vol.volume_id, vol.snapshot_id, vol.size_gib)
        self._stage_boot_files(row, run_dir)
        port = self._pick_ssh_port(row)
        if port != row.ssh_port:
            self._update(row.instance_id, ssh_port=port)
        row = self._row(row.region, row.instance_id) or row
        handle = self.hypervisor.start(self.spec(row))
        self._handles[row.instance_id] = handle
        with self.catalog.begin() as conn:
            current = rows.get_instance(conn, row.region, row.instance_id)
            if current is not None and current.state == "pending":
                rows.update_instance(
                    conn,
                    row.instance_id,
                    state="running",
                    state_reason_code=None,
                    state_reason_message=None,
                    state_transition_reason="",
                )
            for vol in vols:
                volume_rows.update_volume(conn, vol.volume_id, attachment_state="attached")

    def _fail_launch(self, row: rows.InstanceRow, message: str) -> None:
        reason = f"Server.InternalError: Internal error on launch: {message}"[:255]
        if self._never_ran(row):
            self._finish_terminate(row, "Server.InternalError", reason)
        else:  # a Start of a stopped instance failed: it stays stopped, with the reason
            self._update(
                row.instance_id,
                state="stopped",
                state_reason_code="Server.InternalError",
                state_reason_message=reason,
            )

    def _never_ran(self, row: rows.InstanceRow) -> bool:
        return not (self.files.run_dir(row.region, row.instance_id) / "vm.json").exists()

    def stop_vm(self, region: str, instance_id: str, force: bool) -> None:
        """stopping → stopped."""
        with self.lock(instance_id):
            row = self._row(region, instance_id)
            if row is None or row.state != "stopping":
                return
            self._halt(instance_id, force, SHUTDOWN_TIMEOUT)
            self._update(
                instance_id,
                state="stopped",
                state_reason_code="Client.UserInitiatedShutdown",
                state_reason_message="Client.UserInitiatedShutdown: User initiated shutdown",
            )

    def _halt(self, instance_id: str, force: bool, timeout: float) -> None:
        handle = self._handles.pop(instance_id, None)
        if handle is None:
            return
        try:
            if force:
                self.hypervisor.kill(handle)
            else:
                self.hypervisor.shutdown(handle, timeout=timeout)
        except ComputeError as exc:
            log.warning("shutdown of %s: %s; killing it", instance_id, exc)
            self.hypervisor.kill(handle)

    def terminate_vm(self, region: str, instance_id: str) -> None:
        """shutting-down → terminated: VM off, DeleteOnTermination volumes deleted."""
        with self.lock(instance_id):
            row = self._row(region, instance_id)
            if row is None or row.state != "shutting-down":
                return
            self._halt(instance_id, False, TERMINATE_TIMEOUT)
            self._finish_terminate(
                row,
                "Client.UserInitiatedShutdown",
                "Client.UserInitiatedShutdown: User initiated shutdown",
            )

    def _finish_terminate(self, row: rows.InstanceRow, code: str, message: str) -> None:
        deleted: list[str] = []
        with self.catalog.begin() as conn:
            for vol in volume_rows.volumes_of(conn, [row.instance_id])[row.instance_id]:
                if vol.delete_on_termination:
                    volume_rows.delete_volume(conn, vol.volume_id)
                    deleted.append(vol.volume_id)
                else:
                    volume_rows.update_volume(
                        conn,
                        vol.volume_id,
                        state="available",
                        instance_id=None,
                        device=None,
                        attach_time=None,
                        attachment_state=None,
                        delete_on_termination=None,
                    )
            rows.update_instance(
                conn,
                row.instance_id,
                state="terminated",
                state_reason_code=code,
                state_reason_message=message[:255],
                terminated_at=now(),
                address_index=None,
                ssh_port=None,
            )
        for volume_id in deleted:
            self.files.delete(row.region, volume_id)
        shutil.rmtree(self.files.run_dir(row.region, row.instance_id), ignore_errors=True)

    def start_vm(self, region: str, instance_id: str) -> None:
        """pending (from stopped) → running."""
        self.launch(region, instance_id)

    def reboot_vm(self, region: str, instance_id: str) -> None:
        with self.lock(instance_id):
            handle = self._handles.get(instance_id)
            if handle is not None:
                self.hypervisor.reboot(handle)

    # -- CreateImage support ------------------------------------------------------------------

    def quiesce(self, instance_id: str, reboot: bool) -> str:
        """Make the disks consistent: ``stopped`` (clean shutdown), ``paused`` or ``idle``.

        The caller holds :meth:`lock` and calls :meth:`unquiesce` with the answer.
        """
        handle = self._handles.get(instance_id)
        if handle is None or self.hypervisor.state(handle) is not VmState.RUNNING:
            return "idle"
        if reboot:
            self._halt(instance_id, False, SHUTDOWN_TIMEOUT)
            return "stopped"
        self.hypervisor.pause(handle)
        return "paused"

    def unquiesce(self, region: str, instance_id: str, how: str) -> None:
        if how == "paused":
            handle = self._handles.get(instance_id)
            if handle is not None:
                self.hypervisor.resume(handle)
        elif how == "stopped":
            row = self._row(region, instance_id)
            if row is not None and row.state == "running":
                self._handles[instance_id] = self.hypervisor.start(self.spec(row))

    # -- polling ------------------------------------------------------------------------------

    def _poll_loop(self) -> None:
        while not self._stop.wait(self._poll_interval):
            try:
                self.poll_once()
            except Exception:
                log.exception("instance poll failed")

    def poll_once(self) -> None:
        """Reconcile running instances with their VMs once."""
        with self.catalog.begin() as conn:
            running = [r for r in rows.active_instances(conn) if r.state == "running"]
        for row in running:
            handle = self._handles.get(row.instance_id)
            lock = self.lock(row.instance_id)
            if handle is None or not lock.acquire(blocking=False):
                continue
            try:
                self._reconcile(row, handle)
            finally:
                lock.release()

    def _reconcile(self, row: rows.InstanceRow, handle: VmHandle) -> None:
        state = self.hypervisor.state(handle)
        if state is VmState.RUNNING:
            return
        current = self._row(row.region, row.instance_id)
        if (
            current is None
            or current.state != "running"
            or self._handles.get(row.instance_id) is not handle
        ):
            return
        self._handles.pop(row.instance_id, None)
        if state is VmState.STOPPED and self.hypervisor.stop_reason(handle) == "guest":
            message = "Client.InstanceInitiatedShutdown: Instance initiated shutdown"
            if row.shutdown_behavior == "terminate":
                self._finish_terminate(row, "Client.InstanceInitiatedShutdown", message)
                return
            self._update(
                row.instance_id,
                state="stopped",
                state_reason_code="Client.InstanceInitiatedShutdown",
                state_reason_message=message,
                state_transition_reason=f"User initiated ({stamp(now())})",
            )
            return
        self._update(
            row.instance_id,
            state="stopped",
            state_reason_code="Server.InternalError",
            state_reason_message="Server.InternalError: the virtual machine exited unexpectedly",
            state_transition_reason=f"Service initiated ({stamp(now())})",
        )
