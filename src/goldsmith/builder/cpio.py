"""A writer for the ``newc`` cpio format that the Linux kernel unpacks as an initramfs.

Written in Python rather than with ``cpio(1)`` so that device nodes (``/dev/console``, which
the kernel needs before devtmpfs is mounted) can be added without ``mknod`` on the host, and
so that ownership is root and timestamps are fixed: the same tree gives the same bytes.
"""

from __future__ import annotations

import gzip
import os
import stat
from dataclasses import dataclass
from pathlib import Path

_MAGIC = b"070701"
_TRAILER = "TRAILER!!!"


@dataclass(frozen=True)
class Node:
    """An extra entry that is not a file on disk: a character or block device."""

    path: str
    mode: int
    major: int
    minor: int


def _pad(length: int) -> bytes:
    return b"\0" * (-length % 4)


def _entry(name: str, mode: int, data: bytes, ino: int, rdev: tuple[int, int] = (0, 0)) -> bytes:
    encoded = name.encode() + b"\0"
    fields = (ino, mode, 0, 0, 1, 0, len(data), 0, 0, rdev[0], rdev[1], len(encoded), 0)
    header = _MAGIC + b"".join(b"%08X" % value for value in fields)
    out = header + encoded
    out += _pad(len(out))
    return out + data + _pad(len(data))


def archive(root: Path, nodes: list[Node] | None = None) -> bytes:
    """The uncompressed newc archive of the tree at ``root`` plus ``nodes``, root-owned."""
    parts: list[bytes] = []
    ino = 1
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        base = Path(dirpath)
        for name in [*dirnames, *sorted(filenames)]:
            path = base / name
            rel = path.relative_to(root).as_posix()
            info = path.lstat()
            if stat.S_ISLNK(info.st_mode):
                data = os.readlink(path).encode()
            elif stat.S_ISREG(info.st_mode):
                data = path.read_bytes()
            else:
                data = b""
            parts.append(_entry(rel, info.st_mode, data, ino))
            ino += 1
    for node in nodes or []:
        parts.append(_entry(node.path.lstrip("/"), node.mode, b"", ino, (node.major, node.minor)))
        ino += 1
    parts.append(_entry(_TRAILER, 0, b"", 0))
    return b"".join(parts)


def write_initramfs(root: Path, out: Path, nodes: list[Node] | None = None) -> None:
    """Write ``root`` (plus ``nodes``) as a gzip-compressed newc archive to ``out``."""
    out.write_bytes(gzip.compress(archive(root, nodes), compresslevel=6, mtime=0))


CONSOLE = Node("dev/console", stat.S_IFCHR | 0o600, 5, 1)
NULL = Node("dev/null", stat.S_IFCHR | 0o666, 1, 3)
