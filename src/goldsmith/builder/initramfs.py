"""Goldsmith's own small initramfs: busybox, a handful of driver modules, one /init script.

Debian's cloud kernel builds ext4 in but virtio, SCSI/ATA disks, the ACPI power button and
evdev as modules, so a root disk on virtio needs an initramfs that loads them. Debian's own
(initramfs-tools, with udev) is ~30 MB and slow to start under software emulation; this one
is ~1.5 MB and hands over to the real init in well under a second.

The /init script understands these kernel parameters:

``root=``      ``/dev/vda`` (default), any ``/dev/…`` path, ``LABEL=…`` or ``UUID=…``
``rootfstype=`` filesystem type (default: let ``mount`` probe)
``rootflags=`` extra mount options
``ro`` / ``rw``  mount the root read-only / read-write (default ``ro``, like Linux)
``init=``      program to run on the root (default ``/sbin/init``)
``rootdelay=`` seconds to wait for the root device (default 30)

Modules stay loaded after the switch, so the root system has its disk, network, power button
(``button`` + ``evdev``) and hardware RNG drivers without carrying modules of its own. When
the root cannot be found or mounted, /init prints a line starting ``goldsmith-initramfs:
FATAL`` on the console and powers the machine off, so the failure is visible and final.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from goldsmith.builder import cpio
from goldsmith.builder._common import BuildError
from goldsmith.builder.elf import ElfFile

REQUIRED_MODULES = ("virtio_pci", "virtio_blk", "virtio_net")
"""Modules without which the tiny image cannot boot; the build fails if one is missing."""

OPTIONAL_MODULES = (
    "ext4",
    "virtio_scsi",
    "sd_mod",
    "ata_piix",
    "ahci",
    "nvme",
    "virtio_rng",
    "virtio_console",
    "button",
    "evdev",
)
"""Modules included when the kernel has them as modules (built-in or absent: skipped)."""

INIT_SCRIPT = r"""#!/bin/busybox sh
# Goldsmith initramfs: load drivers, find and mount the root, switch to its init.
/bin/busybox mkdir -p /bin /sbin /usr/bin /usr/sbin /proc /sys /dev /newroot
/bin/busybox --install -s
export PATH=/sbin:/bin:/usr/sbin:/usr/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev

say() { echo "goldsmith-initramfs: $*"; }
fail() {
    say "FATAL: $*"
    say "powering off"
    sleep 2
    poweroff -f
}

root=/dev/vda fstype= flags= mode=ro init=/sbin/init delay=30
for arg in $(cat /proc/cmdline); do
    case "$arg" in
        root=*) root="${arg#root=}" ;;
        rootfstype=*) fstype="${arg#rootfstype=}" ;;
        rootflags=*) flags="${arg#rootflags=}" ;;
        init=*) init="${arg#init=}" ;;
        rootdelay=*) delay="${arg#rootdelay=}" ;;
        ro) mode=ro ;;
        rw) mode=rw ;;
    esac
done

while read -r module; do
    insmod "/lib/modules/$module" 2>/dev/null || say "warning: could not load $module"
done < /etc/modules

tries=$((delay * 20))
while :; do
    case "$root" in
        LABEL=*|UUID=*) dev="$(findfs "$root" 2>/dev/null)" ;;
        *) dev="$root" ;;
    esac
    [ -n "$dev" ] && [ -b "$dev" ] && break
    tries=$((tries - 1))
    [ "$tries" -gt 0 ] || fail "root device $root did not appear within ${delay}s"
    usleep 50000
done

opts="$mode${flags:+,$flags}"
if [ -n "$fstype" ]; then
    mount -t "$fstype" -o "$opts" "$dev" /newroot || fail "cannot mount $dev ($fstype, $opts)"
else
    mount -o "$opts" "$dev" /newroot || fail "cannot mount $dev ($opts)"
fi
[ -x "/newroot$init" ] || [ -L "/newroot$init" ] || fail "no $init on $dev"

if [ -d /newroot/dev ]; then
    mount --move /dev /newroot/dev
else
    umount /dev
fi
umount /sys
umount /proc
exec switch_root /newroot "$init" "$@"
"""


def module_index(modroot: Path) -> dict[str, Path]:
    """Module name (``-`` normalised to ``_``) → .ko path, for one kernel's module tree."""
    return {p.stem.replace("-", "_"): p for p in sorted(modroot.rglob("*.ko"))}


def module_order(index: dict[str, Path], wanted: list[str]) -> list[str]:
    """``wanted`` modules and their dependencies, dependencies first (from ``.modinfo``)."""
    order: list[str] = []
    visiting: set[str] = set()

    def visit(name: str) -> None:
        if name in order or name in visiting:
            return
        if name not in index:
            raise BuildError(f"kernel module {name} not found")
        visiting.add(name)
        deps = ElfFile(index[name]).modinfo().get("depends", "")
        for dep in filter(None, deps.split(",")):
            visit(dep.replace("-", "_"))
        visiting.discard(name)
        order.append(name)

    for name in wanted:
        visit(name)
    return order


def build_initramfs(busybox: Path, modroot: Path, out: Path, scratch: Path) -> list[str]:
    """Write the initramfs for the kernel whose modules are at ``modroot``; return its modules.

    ``busybox`` must be a static busybox binary; ``scratch`` an empty work directory.
    """
    index = module_index(modroot)
    missing = [name for name in REQUIRED_MODULES if name not in index]
    if missing:
        raise BuildError(f"kernel lacks required modules: {', '.join(missing)}")
    wanted = [*REQUIRED_MODULES, *(name for name in OPTIONAL_MODULES if name in index)]
    order = module_order(index, wanted)

    tree = scratch / "initramfs"
    for directory in ("bin", "dev", "etc", "lib/modules", "newroot", "proc", "sys"):
        (tree / directory).mkdir(parents=True, exist_ok=True)
    shutil.copy2(busybox, tree / "bin/busybox")
    os.chmod(tree / "bin/busybox", 0o755)
    (tree / "bin/sh").symlink_to("busybox")
    files = []
    for name in order:
        filename = f"{name}.ko"
        shutil.copyfile(index[name], tree / "lib/modules" / filename)
        files.append(filename)
    (tree / "etc/modules").write_text("".join(f"{f}\n" for f in files))
    init = tree / "init"
    init.write_text(INIT_SCRIPT)
    init.chmod(0o755)
    cpio.write_initramfs(tree, out, [cpio.CONSOLE, cpio.NULL])
    return order
