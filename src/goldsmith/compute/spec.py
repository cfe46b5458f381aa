"""What a VM is made of: plain, frozen values that every hypervisor driver accepts.

A :class:`VmSpec` says everything needed to start one VM — CPUs, memory, how it boots, its
disks, its network forwards and the directory that holds its run-time files. The service
layer builds it from an instance's catalog row; drivers never read the catalog. The spec
is serialised to ``run_dir/vm.json`` by :func:`spec_to_json` so a restarted server can see
what a running VM was started with (:meth:`Hypervisor.adopt`).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

# EC2 device names a disk may take: /dev/xvda, /dev/sda1, /dev/sdf, /dev/xvdba, /dev/nvme1n1 …
_DEVICE_RE = re.compile(r"^/dev/(?:xvd|sd|hd|vd)[a-z]{1,2}[0-9]{0,2}$|^/dev/nvme[0-9]{1,2}n1$")
_VM_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")
SERIAL_MAX = 20  # virtio-blk serial is 20 bytes (VIRTIO_BLK_ID_BYTES); longer is cut by QEMU


class VmState(StrEnum):
    """What :meth:`Hypervisor.state` reports.

    ``running``: QEMU is alive (the guest may still be booting or be paused).
    ``stopped``: QEMU is gone because it was shut down (by us, or the guest powered off).
    ``crashed``: QEMU is gone and nobody asked it to stop (killed from outside, OOM, bug).
    """

    RUNNING = "running"
    STOPPED = "stopped"
    CRASHED = "crashed"


@dataclass(frozen=True)
class DirectBoot:
    """Boot a kernel (and ramdisk) directly, as EC2 ``paravirtual`` images do."""

    kernel: Path
    initrd: Path | None = None
    cmdline: str = "console=ttyS0"


@dataclass(frozen=True)
class BiosBoot:
    """Legacy BIOS (SeaBIOS) boots the first disk (EC2 BootMode ``legacy-bios``)."""


@dataclass(frozen=True)
class UefiBoot:
    """UEFI (OVMF) boots the first disk (EC2 BootMode ``uefi``).

    ``code`` is the read-only firmware; ``vars_template`` is copied once to
    ``run_dir/OVMF_VARS.fd`` and that copy is kept across stop/start, as EC2 keeps an
    instance's UEFI variables.
    """

    code: Path = Path("/usr/share/OVMF/OVMF_CODE_4M.fd")
    vars_template: Path = Path("/usr/share/OVMF/OVMF_VARS_4M.fd")


Boot = DirectBoot | BiosBoot | UefiBoot


@dataclass(frozen=True)
class DiskSpec:
    """One virtio block device.

    ``device`` is the EC2 device name (``/dev/xvda``); it names the QEMU nodes, so it must be
    unique within a VM. ``serial`` (≤ 20 characters) is what the guest sees in
    ``/sys/block/vdX/serial`` and ``/dev/disk/by-id/virtio-<serial>``; use the volume id
    without its dash (``vol0123456789abcdef0``), as EC2's NVMe devices do.
    """

    path: Path
    device: str
    format: str = "qcow2"
    read_only: bool = False
    serial: str | None = None

    def __post_init__(self) -> None:
        if self.format not in {"qcow2", "raw"}:
            raise ValueError(f"disk format must be qcow2 or raw, not {self.format!r}")
        if not _DEVICE_RE.match(self.device):
            raise ValueError(f"not a device name: {self.device!r}")
        if self.serial is not None and (
            len(self.serial) > SERIAL_MAX or not re.fullmatch(r"[A-Za-z0-9_.-]+", self.serial)
        ):
            raise ValueError(f"disk serial must be ≤ {SERIAL_MAX} of [A-Za-z0-9_.-]")

    @property
    def node_name(self) -> str:
        """QEMU block node and device id stem: ``/dev/sdf`` → ``disk-sdf``."""
        return "disk-" + self.device.removeprefix("/dev/")


@dataclass(frozen=True)
class NetSpec:
    """User-mode (slirp) networking with two forwards.

    ``ssh_host:ssh_port`` on the host is forwarded to the guest's TCP port 22 (use the
    instance's own loopback address, see :mod:`goldsmith.compute.network`).
    The guest's ``169.254.169.254:80`` is forwarded to ``imds_host:imds_port`` on the host
    (the instance metadata service). ``isolated`` (slirp ``restrict=on``) denies the guest any
    other outbound connection; forwards still work. ``hostname`` is offered by DHCP;
    ``mac`` is the NIC's address (``None``: derived from the vm id).
    """

    ssh_host: str
    ssh_port: int
    imds_host: str
    imds_port: int
    isolated: bool = True
    hostname: str | None = None
    mac: str | None = None


@dataclass(frozen=True)
class VmSpec:
    """Everything needed to start one VM. ``run_dir`` must be absolute and owned by this VM."""

    vm_id: str
    vcpus: int
    memory_mib: int
    boot: Boot
    disks: tuple[DiskSpec, ...]
    net: NetSpec | None
    run_dir: Path
    extra: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not _VM_ID_RE.match(self.vm_id):
            raise ValueError(f"bad vm id {self.vm_id!r}")
        if self.vcpus < 1 or self.memory_mib < 16:
            raise ValueError("a VM needs at least 1 vCPU and 16 MiB")
        if not self.run_dir.is_absolute():
            raise ValueError("run_dir must be absolute")
        devices = [d.device for d in self.disks]
        if len(set(devices)) != len(devices):
            raise ValueError(f"duplicate device names in {devices}")


@dataclass(frozen=True)
class VmHandle:
    """A started VM: enough to find it again. ``pid`` is QEMU's process id."""

    vm_id: str
    run_dir: Path
    pid: int


def _boot_to_json(boot: Boot) -> dict[str, Any]:
    if isinstance(boot, DirectBoot):
        return {
            "kind": "direct",
            "kernel": str(boot.kernel),
            "initrd": str(boot.initrd) if boot.initrd else None,
            "cmdline": boot.cmdline,
        }
    if isinstance(boot, UefiBoot):
        return {"kind": "uefi", "code": str(boot.code), "vars_template": str(boot.vars_template)}
    return {"kind": "bios"}


def _boot_from_json(data: dict[str, Any]) -> Boot:
    if data["kind"] == "direct":
        initrd = data.get("initrd")
        return DirectBoot(Path(data["kernel"]), Path(initrd) if initrd else None, data["cmdline"])
    if data["kind"] == "uefi":
        return UefiBoot(Path(data["code"]), Path(data["vars_template"]))
    return BiosBoot()


def spec_to_json(spec: VmSpec) -> str:
    """Serialise a spec (paths as strings) for ``run_dir/vm.json``."""
    net = spec.net
    return json.dumps(
        {
            "vm_id": spec.vm_id,
            "vcpus": spec.vcpus,
            "memory_mib": spec.memory_mib,
            "boot": _boot_to_json(spec.boot),
            "disks": [
                {
                    "path": str(d.path),
                    "device": d.device,
                    "format": d.format,
                    "read_only": d.read_only,
                    "serial": d.serial,
                }
                for d in spec.disks
            ],
            "net": None if net is None else net.__dict__,
            "run_dir": str(spec.run_dir),
            "extra": spec.extra,
        },
        indent=1,
    )


def spec_from_json(text: str) -> VmSpec:
    """Inverse of :func:`spec_to_json`."""
    data = json.loads(text)
    return VmSpec(
        vm_id=data["vm_id"],
        vcpus=data["vcpus"],
        memory_mib=data["memory_mib"],
        boot=_boot_from_json(data["boot"]),
        disks=tuple(
            DiskSpec(
                path=Path(d["path"]),
                device=d["device"],
                format=d["format"],
                read_only=d["read_only"],
                serial=d["serial"],
            )
            for d in data["disks"]
        ),
        net=None if data["net"] is None else NetSpec(**data["net"]),
        run_dir=Path(data["run_dir"]),
        extra=dict(data["extra"]),
    )
