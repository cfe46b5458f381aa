"""The tiny machine image: busybox, dropbear and a small init on a whole-disk ext4 root.

Paravirtual: it has no partition table and no boot loader; it boots with the kernel and
ramdisk from :mod:`goldsmith.builder.kernel` and ``root=/dev/vda``. (A copy of the kernel and
ramdisk is also kept in its ``/boot``, for PV-GRUB-style launches.) See :mod:`tiny_files` for
what runs at boot.

Inputs: busybox-static, dropbear-bin and e2fsprogs (for ``resize2fs``, so a root volume
launched larger than the image grows its file system) with their shared libraries, which are
found by reading ELF ``DT_NEEDED`` entries against the unpacked packages (never the host's).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from goldsmith.builder import apt
from goldsmith.builder._common import (
    BuildError,
    Progress,
    building,
    cache_key,
    publish,
    read_manifest,
    report,
    run,
    stable_uuid,
    write_manifest,
)
from goldsmith.builder.artifacts import DiskImage, KernelArtifacts
from goldsmith.builder.elf import library_closure
from goldsmith.builder.ext4 import make_ext4
from goldsmith.builder.kernel import build_kernel
from goldsmith.builder.tiny_files import DEFAULT_USER, STATIC

RECIPE = "tiny-1"
PACKAGES = ["busybox-static", "dropbear-bin", "e2fsprogs"]
# Maintainer-script and documentation helpers that the tiny root never uses.
_SKIP = frozenset({"debconf", "perl-base", "dpkg", "install-info", "init-system-helpers"})
BINARIES = ["usr/sbin/dropbear", "usr/bin/dropbearkey", "sbin/resize2fs"]
SIZE = 256 << 20
ROOT_DEVICE_NAME = "/dev/xvda"
UID = 1000


def build_tiny(
    cache: Path, out: Path, progress: Progress | None = None, size: int = SIZE
) -> DiskImage:
    """Build (or reuse from ``cache``) the tiny image; place ``out/tiny-<key>.img``.

    Also builds the kernel and ramdisk it boots with (``DiskImage.kernel``).
    """
    kernel = build_kernel(cache, out, _scaled(progress, 0.0, 0.3))
    report(progress, "tiny: resolving package versions", 0.3)
    packages = apt.closure(PACKAGES, skip=_SKIP)
    key = cache_key(RECIPE, STATIC, kernel.key, size, [p.spec for p in packages])
    entry = cache / "tiny" / key
    if read_manifest(entry) is None:
        report(progress, "tiny: downloading packages", 0.35)
        trees = [apt.unpack(cache, pkg) for pkg in packages]
        report(progress, "tiny: assembling root file system", 0.6)
        with building(entry) as scratch:
            _build(scratch, trees, kernel, size, key, [p.spec for p in packages])
    report(progress, "tiny: publishing", 0.9)
    image = publish(entry / "root.img", out / f"tiny-{key}.img")
    report(progress, "tiny: done", 1.0)
    return DiskImage(
        path=image,
        size=size,
        virtualization="paravirtual",
        boot_mode=None,
        root_device_name=ROOT_DEVICE_NAME,
        architecture="x86_64",
        default_user=DEFAULT_USER,
        guest_root="/dev/vda",
        description="Goldsmith tiny: busybox, dropbear, metadata-driven first boot",
        key=key,
        kernel=kernel,
    )


def _scaled(progress: Progress | None, start: float, end: float) -> Progress | None:
    if progress is None:
        return None
    outer = progress
    return lambda message, fraction: outer(message, start + (end - start) * fraction)


def _build(
    scratch: Path,
    trees: list[Path],
    kernel: KernelArtifacts,
    size: int,
    key: str,
    specs: list[str],
) -> None:
    sysroot = scratch / "sysroot"
    apt.merge_into(trees, sysroot)
    root = scratch / "root"
    _skeleton(root)
    _install_busybox(sysroot, root)
    for binary in BINARIES:
        _copy_from(sysroot, Path(binary), root)
    for lib in library_closure(sysroot, [sysroot / b for b in BINARIES]):
        _copy_from(sysroot, lib, root)
    for rel, (text, mode) in STATIC.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        path.chmod(mode)
    shutil.copyfile(kernel.kernel, root / "boot" / f"vmlinuz-{kernel.version}")
    shutil.copyfile(kernel.ramdisk, root / "boot" / f"initrd.img-{kernel.version}")
    home = root / "home" / DEFAULT_USER
    for path in [home, *home.rglob("*")]:
        os.lchown(path, UID, UID)
    fs_uuid = stable_uuid(RECIPE, key)
    make_ext4(root, scratch / "root.img", size, "root", fs_uuid)
    shutil.rmtree(sysroot)
    shutil.rmtree(root)
    write_manifest(
        scratch,
        {
            "key": key,
            "recipe": RECIPE,
            "packages": specs,
            "kernel": kernel.package,
            "uuid": fs_uuid,
            "size": size,
        },
    )


def _skeleton(root: Path) -> None:
    modes = {
        "bin": 0o755,
        "sbin": 0o755,
        "usr/bin": 0o755,
        "usr/sbin": 0o755,
        "lib": 0o755,
        "boot": 0o755,
        "dev": 0o755,
        "proc": 0o555,
        "sys": 0o555,
        "run": 0o755,
        "tmp": 0o1777,
        "mnt": 0o755,
        "root": 0o700,
        "root/.ssh": 0o700,
        f"home/{DEFAULT_USER}": 0o755,
        f"home/{DEFAULT_USER}/.ssh": 0o700,
        "etc/dropbear": 0o700,
        "var/log": 0o755,
        "var/lib/goldsmith": 0o755,
    }
    for rel, mode in modes.items():
        path = root / rel
        path.mkdir(parents=True, exist_ok=True)
        path.chmod(mode)


def _install_busybox(sysroot: Path, root: Path) -> None:
    """Copy the static busybox and create a symlink for each of its applets."""
    shutil.copy2(sysroot / "bin/busybox", root / "bin/busybox")
    applets = run([sysroot / "bin/busybox", "--list-full"]).split()
    for rel in applets:
        link = root / rel
        if link.exists() or link.is_symlink():
            continue
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to("/bin/busybox")


def _copy_from(sysroot: Path, rel: Path, root: Path) -> None:
    """Copy ``sysroot/rel`` to ``root/rel``, following (and recreating) symlinks inside sysroot."""
    for _ in range(10):
        src = sysroot / rel
        dst = root / rel
        dst.parent.mkdir(parents=True, exist_ok=True)
        if not src.is_symlink():
            if not src.is_file():
                raise BuildError(f"{rel} is missing from the unpacked packages")
            shutil.copy2(src, dst)
            return
        target = os.readlink(src)
        if not dst.is_symlink() and not dst.exists():
            dst.symlink_to(target)
        rel = Path(target.lstrip("/")) if target.startswith("/") else rel.parent / target
        rel = Path(os.path.normpath(rel))
    raise BuildError(f"too many symlinks resolving {rel}")
