"""Kernel and ramdisk images from Debian's ``linux-image-cloud-amd64``.

``linux-image-cloud-amd64`` is a metapackage; its ``Depends`` names the real, versioned
kernel package (``linux-image-6.1.0-N-cloud-amd64``), which is downloaded and unpacked. The
kernel is its ``/boot/vmlinuz-*``; the ramdisk is Goldsmith's own initramfs
(:mod:`goldsmith.builder.initramfs`) built from its modules and ``busybox-static``.

Cache key: the two package versions plus :data:`RECIPE`; bump ``RECIPE`` whenever the
initramfs contents change.
"""

from __future__ import annotations

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
    write_manifest,
)
from goldsmith.builder.artifacts import KernelArtifacts
from goldsmith.builder.initramfs import INIT_SCRIPT, OPTIONAL_MODULES, build_initramfs

RECIPE = "kernel-2"
METAPACKAGE = "linux-image-cloud-amd64"
DEFAULT_CMDLINE = "console=ttyS0 root=/dev/vda rw quiet"
"""For the ``pc`` machine. (QEMU's ``microvm`` also needs ``tsc_early_khz=…`` under TCG.)"""


def kernel_packages() -> tuple[apt.Package, apt.Package]:
    """The versioned kernel package the metapackage points at, and ``busybox-static``."""
    meta = apt.candidate(METAPACKAGE)
    images = [d for d in meta.depends if d.startswith("linux-image-")]
    if not images:
        raise BuildError(f"{METAPACKAGE} {meta.version} depends on no linux-image package")
    return apt.candidate(images[0]), apt.candidate("busybox-static")


def build_kernel(cache: Path, out: Path, progress: Progress | None = None) -> KernelArtifacts:
    """Build (or reuse from ``cache``) the kernel and ramdisk; place them in ``out``.

    Returns ``out/vmlinuz-<release>`` and ``out/initrd-goldsmith-<release>.img``. Only
    ``cache`` and ``out`` are written.
    """
    report(progress, "kernel: resolving package versions", 0.0)
    image, busybox = kernel_packages()
    key = cache_key(RECIPE, INIT_SCRIPT, OPTIONAL_MODULES, image.spec, busybox.spec)
    entry = cache / "kernel" / key
    manifest = read_manifest(entry)
    if manifest is None:
        report(progress, f"kernel: downloading {image.spec}", 0.1)
        image_dir = apt.unpack(cache, image)
        busybox_dir = apt.unpack(cache, busybox)
        report(progress, "kernel: building initramfs", 0.6)
        with building(entry) as scratch:
            manifest = _build(image_dir, busybox_dir, scratch, image, busybox, key)
    release = str(manifest["release"])
    report(progress, "kernel: publishing", 0.9)
    kernel = publish(entry / "vmlinuz", out / f"vmlinuz-{release}")
    ramdisk = publish(entry / "initrd.img", out / f"initrd-goldsmith-{release}.img")
    report(progress, "kernel: done", 1.0)
    return KernelArtifacts(
        kernel=kernel,
        ramdisk=ramdisk,
        version=release,
        cmdline=DEFAULT_CMDLINE,
        package=image.spec,
        key=key,
    )


def _build(
    image_dir: Path,
    busybox_dir: Path,
    scratch: Path,
    image: apt.Package,
    busybox: apt.Package,
    key: str,
) -> dict[str, object]:
    kernels = sorted((image_dir / "boot").glob("vmlinuz-*"))
    if len(kernels) != 1:
        raise BuildError(f"{image.spec}: expected one /boot/vmlinuz-*, found {len(kernels)}")
    release = kernels[0].name.removeprefix("vmlinuz-")
    modroot = image_dir / "lib/modules" / release
    work = scratch / "work"
    work.mkdir()
    modules = build_initramfs(busybox_dir / "bin/busybox", modroot, scratch / "initrd.img", work)
    (scratch / "vmlinuz").write_bytes(kernels[0].read_bytes())
    manifest: dict[str, object] = {
        "key": key,
        "recipe": RECIPE,
        "release": release,
        "packages": [image.spec, busybox.spec],
        "modules": modules,
        "cmdline": DEFAULT_CMDLINE,
    }
    shutil.rmtree(work)
    write_manifest(scratch, manifest)
    return manifest
