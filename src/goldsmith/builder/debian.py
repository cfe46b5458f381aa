"""The Debian 12 server image: a GPT disk with an EFI System Partition and an ext4 root.

Built without mounting or loop devices:

1. ``mmdebstrap --mode=unshare`` installs bookworm (minbase + systemd, OpenSSH, the cloud
   kernel pinned to the version :func:`build_kernel` resolved, initramfs-tools, curl, sudo)
   into a directory; downloaded packages are kept in ``<cache>/apt-archives`` between builds.
2. The tree is configured in place (``chroot`` only runs ``useradd``/``systemctl enable``):
   default user ``admin`` with passwordless sudo, systemd-networkd DHCP, the
   ``goldsmith-init`` first-boot units (:mod:`debian_files`), no SSH host keys and an empty
   machine-id, so each instance makes its own.
3. ``grub-mkstandalone`` makes ``BOOTX64.EFI`` with an embedded grub.cfg that finds the root
   by file-system UUID and boots Debian's ``/vmlinuz`` + ``/initrd.img``; ``mkfs.vfat`` and
   ``mcopy`` put it on a FAT image; ``mkfs.ext4 -d`` makes the root image.
4. ``sfdisk`` writes the GPT on the sparse disk file and both images are copied in at their
   partition offsets, skipping zeros.

HVM, boot mode ``uefi`` (OVMF). The cache key is the recipe, the kernel, and the candidate
versions of the explicitly installed packages; dependencies that change without those
changing are picked up when ``RECIPE`` is bumped or the cache entry is removed.
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
    copy_sparse,
    publish,
    read_manifest,
    report,
    run,
    sparse_create,
    stable_uuid,
    write_manifest,
)
from goldsmith.builder.artifacts import DiskImage, KernelArtifacts
from goldsmith.builder.debian_files import (
    CMDLINE,
    DEFAULT_USER,
    FINAL_UNIT,
    GOLDSMITH_INIT,
    GRUB_CFG,
    KEYS_UNIT,
    NETWORK,
    SSHD_CONFIG,
    SUDOERS,
    fstab,
)
from goldsmith.builder.ext4 import make_ext4
from goldsmith.builder.kernel import build_kernel

RECIPE = "debian-1"
SUITE = "bookworm"
MIRRORS = (
    "deb http://deb.debian.org/debian bookworm main",
    "deb http://deb.debian.org/debian bookworm-updates main",
    "deb http://deb.debian.org/debian-security bookworm-security main",
)
PACKAGES = (
    "systemd-sysv",
    "udev",
    "dbus",
    "systemd-resolved",
    "openssh-server",
    "sudo",
    "curl",
    "ca-certificates",
    "e2fsprogs",
    "iproute2",
    "netbase",
    "initramfs-tools",
)
SLOW_UNITS = ("e2scrub_reap.service", "e2scrub_all.timer")
SIZE = 2 << 30
MiB = 1 << 20
ESP_START = 1 * MiB
ESP_SIZE = 63 * MiB
ROOT_START = ESP_START + ESP_SIZE
ROOT_DEVICE_NAME = "/dev/xvda"
ESP_TYPE = "C12A7328-F81F-11D2-BA4B-00A0C93EC93B"
LINUX_TYPE = "0FC63DAF-8483-4772-8E79-3D69D8477DE4"
OVMF_CODE = Path("/usr/share/OVMF/OVMF_CODE_4M.fd")
OVMF_VARS = Path("/usr/share/OVMF/OVMF_VARS_4M.fd")
"""The UEFI firmware to boot the image with (Debian package ``ovmf``); VARS is a template."""


def build_debian(
    cache: Path, out: Path, progress: Progress | None = None, size: int = SIZE
) -> DiskImage:
    """Build (or reuse from ``cache``) the Debian 12 disk; place ``out/debian-12-<key>.img``."""
    kernel = build_kernel(cache, out, None)
    report(progress, "debian: resolving package versions", 0.02)
    found = apt.candidates(list(PACKAGES))
    missing = sorted(set(PACKAGES) - set(found))
    if missing:
        raise BuildError(f"no candidate version in APT for: {', '.join(missing)}")
    specs = sorted(p.spec for p in found.values())
    texts = [GOLDSMITH_INIT, KEYS_UNIT, FINAL_UNIT, NETWORK, SUDOERS, SSHD_CONFIG, GRUB_CFG]
    texts.append(CMDLINE)
    key = cache_key(RECIPE, MIRRORS, specs, kernel.package, size, texts)
    entry = cache / "debian" / key
    if read_manifest(entry) is None:
        with building(entry) as scratch:
            _build(cache, scratch, kernel, size, key, specs, progress)
    report(progress, "debian: publishing", 0.95)
    image = publish(entry / "disk.img", out / f"debian-12-{key}.img")
    report(progress, "debian: done", 1.0)
    return DiskImage(
        path=image,
        size=size,
        virtualization="hvm",
        boot_mode="uefi",
        root_device_name=ROOT_DEVICE_NAME,
        architecture="x86_64",
        default_user=DEFAULT_USER,
        guest_root="/dev/vda2",
        description="Debian 12 (bookworm) server: systemd, OpenSSH, goldsmith-init first boot",
        key=key,
        kernel=None,
    )


def _build(
    cache: Path,
    scratch: Path,
    kernel: KernelArtifacts,
    size: int,
    key: str,
    specs: list[str],
    progress: Progress | None,
) -> None:
    root_uuid = stable_uuid(RECIPE, key, "root")
    esp_serial = stable_uuid(RECIPE, key, "esp")[:8].upper()
    esp_uuid = f"{esp_serial[:4]}-{esp_serial[4:]}"
    tree = scratch / "root"
    report(progress, "debian: installing packages with mmdebstrap", 0.05)
    _mmdebstrap(cache, tree, kernel.package, scratch)
    report(progress, "debian: configuring", 0.6)
    _configure(tree, root_uuid, esp_uuid)
    report(progress, "debian: making the EFI System Partition", 0.65)
    esp = scratch / "esp.img"
    _make_esp(scratch, esp, esp_serial, GRUB_CFG.format(root_uuid=root_uuid, cmdline=CMDLINE))
    report(progress, "debian: making the root file system", 0.7)
    root_size = size - ROOT_START - MiB
    root_img = scratch / "root.img"
    # GRUB 2.06 (bookworm) cannot read ext4 with these newer features.
    make_ext4(tree, root_img, root_size, "root", root_uuid, "^orphan_file,^metadata_csum_seed")
    shutil.rmtree(tree)
    report(progress, "debian: assembling the GPT disk", 0.9)
    disk = scratch / "disk.img"
    _partition(disk, size, key)
    copy_sparse(esp, disk, ESP_START)
    copy_sparse(root_img, disk, ROOT_START)
    esp.unlink()
    root_img.unlink()
    write_manifest(
        scratch,
        {
            "key": key,
            "recipe": RECIPE,
            "packages": specs,
            "kernel": kernel.package,
            "root_uuid": root_uuid,
            "esp_uuid": esp_uuid,
            "size": size,
        },
    )


def _mmdebstrap(cache: Path, tree: Path, kernel_spec: str, scratch: Path) -> None:
    archives = cache / "apt-archives"
    archives.mkdir(parents=True, exist_ok=True)
    include = ",".join([*PACKAGES, kernel_spec])
    run(
        [
            "mmdebstrap",
            "--mode=unshare",
            "--variant=minbase",
            "--format=directory",
            f"--include={include}",
            "--skip=essential/unlink",
            '--setup-hook=mkdir -p "$1"/var/cache/apt/archives/',
            f"--setup-hook=sync-in {archives} /var/cache/apt/archives/",
            f"--customize-hook=sync-out /var/cache/apt/archives {archives}",
            SUITE,
            tree,
            *MIRRORS,
        ],
        env={"TMPDIR": str(scratch)},
        timeout=1800,
    )


def _write(path: Path, text: str, mode: int = 0o644) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(mode)


def _configure(tree: Path, root_uuid: str, esp_uuid: str) -> None:
    _write(tree / "etc/hostname", "debian\n")
    _write(tree / "etc/hosts", "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost\n")
    _write(tree / "etc/fstab", fstab(root_uuid, esp_uuid))
    (tree / "boot/efi").mkdir(parents=True, exist_ok=True)
    _write(tree / "etc/systemd/network/90-dhcp.network", NETWORK)
    _write(tree / "usr/local/sbin/goldsmith-init", GOLDSMITH_INIT, 0o755)
    _write(tree / "etc/systemd/system/goldsmith-keys.service", KEYS_UNIT)
    _write(tree / "etc/systemd/system/goldsmith-final.service", FINAL_UNIT)
    _write(tree / "etc/sudoers.d/90-goldsmith-admin", SUDOERS, 0o440)
    _write(tree / "etc/ssh/sshd_config.d/goldsmith.conf", SSHD_CONFIG)
    run(["chroot", tree, "useradd", "-m", "-s", "/bin/bash", "-c", "Debian", DEFAULT_USER])
    run(["chroot", tree, "usermod", "-a", "-G", "sudo,adm", DEFAULT_USER])
    units = ["systemd-networkd", "systemd-resolved", "ssh", "goldsmith-keys", "goldsmith-final"]
    run(["chroot", tree, "systemctl", "enable", "--quiet", *units])
    # Not needed on a fresh single-disk image, and slow to start under software emulation.
    run(["chroot", tree, "systemctl", "mask", "--quiet", *SLOW_UNITS])
    for path in (tree / "etc/ssh").glob("ssh_host_*"):
        path.unlink()
    (tree / "etc/machine-id").write_text("")
    (tree / "var/lib/dbus/machine-id").unlink(missing_ok=True)
    for path in (tree / "var/lib/apt/lists").glob("*_*"):
        path.unlink()


def _make_esp(scratch: Path, esp: Path, serial: str, grub_cfg: str) -> None:
    cfg = scratch / "grub.cfg"
    cfg.write_text(grub_cfg)
    efi = scratch / "BOOTX64.EFI"
    run(
        [
            "grub-mkstandalone",
            "-O",
            "x86_64-efi",
            "-o",
            efi,
            "--modules=part_gpt ext2 fat search search_fs_uuid linux normal serial gzio",
            "--locales=",
            "--fonts=",
            "--themes=",
            f"boot/grub/grub.cfg={cfg}",
        ],
        env={"TMPDIR": str(scratch)},
    )
    run(["mkfs.vfat", "-C", "-F", "16", "-n", "EFI", "-i", serial, esp, str(ESP_SIZE // 1024)])
    run(["mmd", "-i", esp, "::/EFI", "::/EFI/BOOT"])
    run(["mcopy", "-i", esp, efi, "::/EFI/BOOT/BOOTX64.EFI"])
    cfg.unlink()
    efi.unlink()


def _partition(disk: Path, size: int, key: str) -> None:
    sparse_create(disk, size)
    sector = 512
    root_sectors = (size - ROOT_START - MiB) // sector
    script = "\n".join(
        [
            "label: gpt",
            f"label-id: {stable_uuid(RECIPE, key, 'disk')}",
            "unit: sectors",
            f"start={ESP_START // sector}, size={ESP_SIZE // sector}, type={ESP_TYPE}, "
            f'uuid={stable_uuid(RECIPE, key, "esp-part")}, name="EFI System"',
            f"start={ROOT_START // sector}, size={root_sectors}, type={LINUX_TYPE}, "
            f'uuid={stable_uuid(RECIPE, key, "root-part")}, name="root"',
            "",
        ]
    )
    run(["sfdisk", "--quiet", "--no-reread", "--no-tell-kernel", disk], stdin=script)
    if os.path.getsize(disk) != size:
        raise BuildError(f"sfdisk changed the size of {disk}")
