"""What the builders return: a kernel with its ramdisk, and disk images with their metadata."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class KernelArtifacts:
    """A bootable kernel and the Goldsmith initramfs built for it.

    ``version`` is the kernel release (``uname -r``); ``package`` the Debian package it came
    from, pinned as ``name=version``; ``cmdline`` the default kernel command line for a
    virtio root disk and a serial console.
    """

    kernel: Path
    ramdisk: Path
    version: str
    cmdline: str
    package: str
    key: str


@dataclass(frozen=True)
class DiskImage:
    """A raw disk image and how to register it as a machine image.

    ``virtualization`` is ``paravirtual`` (boot ``kernel``/``ramdisk`` directly, root on the
    whole disk) or ``hvm`` (firmware boots the disk; ``boot_mode`` says which firmware).
    ``root_device_name`` is the name to advertise in EC2 (the guest sees ``guest_root``).
    """

    path: Path
    size: int
    virtualization: str
    boot_mode: str | None
    root_device_name: str
    architecture: str
    default_user: str
    guest_root: str
    description: str
    key: str
    kernel: KernelArtifacts | None = None
