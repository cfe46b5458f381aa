"""PV-GRUB without Xen: the kernel and initrd of a paravirtual image, read from its own disk.

EC2 boots a paravirtual image that has no kernel image (aki-) with PV-GRUB, which reads
``/boot/grub/menu.lst`` on the root volume and boots the kernel it names. Goldsmith does the
same before QEMU starts: it finds the root filesystem on the raw disk (the whole disk, or the
first ext2/3/4 partition of an MBR or GPT table), then picks the kernel —

1. the first ``kernel`` (and its ``initrd``) of ``/boot/grub/menu.lst`` (``grub.conf``), when
   the file is there and names files that exist;
2. else the newest ``/boot/vmlinuz-<version>`` (version order), with the initrd of the same
   version (``initrd.img-<v>``, ``initrd-<v>.img``, ``initramfs-<v>.img``) if there is one;
3. else ``/boot/vmlinuz`` (and ``/boot/initrd.img``) as regular files.

Everything is read with ``debugfs`` (e2fsprogs) in read-only mode: nothing is mounted, no
loop device, no root. Symbolic links are not followed (``/vmlinuz`` → ``boot/…`` links are
found through rule 2 anyway). Failures are ``VolumeError`` with a reason a person can act on.
"""

from __future__ import annotations

import re
import struct
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from goldsmith.compute.errors import VolumeError

DEBUGFS_TIMEOUT = 60.0
EXT_MAGIC = 0xEF53
SECTOR = 512
_EXT_TYPES = {0x83}  # MBR "Linux"
_GPT_LINUX = {
    "0fc63daf-8483-4772-8e79-3d69d8477de4",  # Linux filesystem
    "4f68bce3-e8cd-4db1-96e7-fbcaf984b709",  # Linux root (x86-64)
}
_INITRD_NAMES = ("initrd.img-{v}", "initrd-{v}.img", "initramfs-{v}.img", "initrd-{v}")


@dataclass(frozen=True)
class BootFiles:
    """Where a disk's kernel (and initrd) are: filesystem paths and the filesystem's offset."""

    kernel: str
    initrd: str | None
    offset: int = 0


def _debugfs(image: Path, offset: int, request: str) -> subprocess.CompletedProcess[bytes]:
    target = f"{image}?offset={offset}" if offset else str(image)
    try:
        return subprocess.run(
            ["debugfs", "-R", request, target],
            capture_output=True,
            timeout=DEBUGFS_TIMEOUT,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise VolumeError(f"debugfs timed out reading {image}") from exc
    except OSError as exc:
        raise VolumeError(f"cannot run debugfs: {exc}") from exc


def _has_ext(f: BinaryIO, offset: int) -> bool:
    f.seek(offset + 1024 + 56)
    raw = f.read(2)
    return len(raw) == 2 and struct.unpack("<H", raw)[0] == EXT_MAGIC


def filesystem_offset(image: Path) -> int:
    """Byte offset of the root filesystem: 0 for a whole-disk filesystem, else the first
    Linux partition (MBR type 0x83, or GPT Linux filesystem/root) that holds ext2/3/4."""
    with image.open("rb") as f:
        if _has_ext(f, 0):
            return 0
        f.seek(0)
        mbr = f.read(SECTOR)
        if len(mbr) < SECTOR or mbr[510:512] != b"\x55\xaa":
            raise VolumeError(
                "the root volume holds neither an ext filesystem nor a partition table"
            )
        entries = [mbr[446 + 16 * i : 462 + 16 * i] for i in range(4)]
        if any(e[4] == 0xEE for e in entries):
            starts = _gpt_starts(f)
        else:
            starts = [
                struct.unpack("<I", e[8:12])[0] * SECTOR for e in entries if e[4] in _EXT_TYPES
            ]
        for start in starts:
            if _has_ext(f, start):
                return start
    raise VolumeError("no ext2/3/4 Linux partition on the root volume")


def _gpt_starts(f: BinaryIO) -> list[int]:
    f.seek(SECTOR)
    header = f.read(92)
    if header[:8] != b"EFI PART":
        raise VolumeError("protective MBR without a GPT header")
    table_lba, count, size = struct.unpack("<QII", header[72:88])
    f.seek(table_lba * SECTOR)
    table = f.read(min(count, 128) * size)
    out: list[int] = []
    for i in range(len(table) // size):
        entry = table[i * size : (i + 1) * size]
        type_guid = _guid(entry[:16])
        if type_guid in _GPT_LINUX:
            out.append(struct.unpack("<Q", entry[32:40])[0] * SECTOR)
    return out


def _guid(raw: bytes) -> str:
    a, b, c = struct.unpack("<IHH", raw[:8])
    return f"{a:08x}-{b:04x}-{c:04x}-{raw[8:10].hex()}-{raw[10:16].hex()}"


def list_dir(image: Path, offset: int, path: str) -> dict[str, str]:
    """Entries of directory ``path``: name → ``file``, ``dir``, ``link`` or ``other``."""
    done = _debugfs(image, offset, f"ls -p {path}")
    out: dict[str, str] = {}
    for line in done.stdout.decode(errors="replace").splitlines():
        parts = line.split("/")
        if len(parts) < 7 or parts[5] in (".", ".."):
            continue
        kind = {"10": "file", "04": "dir", "12": "link"}.get(parts[2][:2], "other")
        out[parts[5]] = kind
    return out


def _version_key(version: str) -> list[tuple[int, int | str]]:
    return [(0, int(p)) if p.isdigit() else (1, p) for p in re.split(r"[.\-+~_]", version)]


def _from_menu(image: Path, offset: int, boot: dict[str, str]) -> BootFiles | None:
    grub = list_dir(image, offset, "/boot/grub") if boot.get("grub") == "dir" else {}
    name = next((n for n in ("menu.lst", "grub.conf") if grub.get(n) == "file"), None)
    if name is None:
        return None
    text = _debugfs(image, offset, f"cat /boot/grub/{name}").stdout.decode(errors="replace")
    kernel: str | None = None
    initrd: str | None = None
    for line in text.splitlines():
        words = line.split()
        if not words:
            continue
        if words[0] == "title" and kernel is not None:
            break  # the first entry only (PV-GRUB's default=0)
        if words[0] == "kernel" and len(words) > 1 and kernel is None:
            kernel = _boot_path(words[1], boot)
        elif words[0] == "initrd" and len(words) > 1 and kernel is not None:
            initrd = _boot_path(words[1], boot)
    if kernel is None:
        return None
    return BootFiles(kernel, initrd, offset)


def _boot_path(path: str, boot: dict[str, str]) -> str | None:
    """A menu.lst path (``(hd0)/boot/x``, ``/boot/x`` or ``/x`` on a /boot partition) as a
    path on the root filesystem, if that file is in /boot."""
    path = re.sub(r"^\([^)]*\)", "", path)
    name = path.removeprefix("/boot/").removeprefix("/")
    return f"/boot/{name}" if boot.get(name) == "file" else None


def find_boot_files(image: Path) -> BootFiles:
    """The kernel and initrd a PV-GRUB boot of ``image`` (a raw disk) would use."""
    offset = filesystem_offset(image)
    boot = list_dir(image, offset, "/boot")
    if not boot:
        raise VolumeError("the root volume has no /boot directory (or it is empty)")
    menu = _from_menu(image, offset, boot)
    if menu is not None and menu.kernel:
        return menu
    versions = [
        n.removeprefix("vmlinuz-")
        for n, k in boot.items()
        if n.startswith("vmlinuz-") and k == "file"
    ]
    if versions:
        version = max(versions, key=_version_key)
        initrd = next(
            (n.format(v=version) for n in _INITRD_NAMES if boot.get(n.format(v=version)) == "file"),
            None,
        )
        return BootFiles(f"/boot/vmlinuz-{version}", f"/boot/{initrd}" if initrd else None, offset)
    if boot.get("vmlinuz") == "file":
        initrd = "/boot/initrd.img" if boot.get("initrd.img") == "file" else None
        return BootFiles("/boot/vmlinuz", initrd, offset)
    raise VolumeError("no kernel in /boot of the root volume (vmlinuz-<version> or menu.lst)")


def extract(image: Path, path: str, dest: Path, offset: int = 0) -> Path:
    """Copy the file at ``path`` of the filesystem in ``image`` to ``dest`` (atomically)."""
    tmp = dest.with_name(f".{dest.name}.tmp")
    tmp.unlink(missing_ok=True)
    done = _debugfs(image, offset, f"dump {path} {tmp}")
    try:
        if not tmp.exists() or tmp.stat().st_size == 0:
            err = done.stderr.decode(errors="replace").strip().splitlines()
            raise VolumeError(f"cannot read {path} from the root volume: {err[-1] if err else '?'}")
        tmp.replace(dest)
    finally:
        tmp.unlink(missing_ok=True)
    return dest


def extract_boot_files(image: Path, run_dir: Path) -> tuple[Path, Path | None]:
    """PV-GRUB: ``run_dir/kernel`` (and ``run_dir/initrd``) from the disk ``image``."""
    found = find_boot_files(image)
    kernel = extract(image, found.kernel, run_dir / "kernel", found.offset)
    initrd = (
        extract(image, found.initrd, run_dir / "initrd", found.offset) if found.initrd else None
    )
    return kernel, initrd
