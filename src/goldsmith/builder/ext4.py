"""ext4 file system images from directories, with ``mkfs.ext4 -d`` (no mounting, no loop).

The image file is created sparse; ``mke2fs`` leaves the inode tables uninitialised (the kernel
initialises them lazily), so unused space stays holes and costs nothing to store. The UUID and
the directory-hash seed are fixed by the caller and the mkfs clock is pinned, so rebuilding the
same tree gives a file system with the same identity.
"""

from __future__ import annotations

from pathlib import Path

from goldsmith.builder._common import run, sparse_create

FAKE_TIME = "1700000000"


def make_ext4(
    tree: Path, image: Path, size: int, label: str, fs_uuid: str, features: str = ""
) -> None:
    """Write an ext4 file system of ``size`` bytes holding ``tree`` (owners kept) to ``image``.

    ``features`` is passed to ``mkfs.ext4 -O`` (e.g. ``^orphan_file``) when not empty.
    """
    sparse_create(image, size)
    extra = ["-O", features] if features else []
    run(
        [
            "mkfs.ext4",
            "-q",
            "-F",
            "-L",
            label,
            "-U",
            fs_uuid,
            "-E",
            f"hash_seed={fs_uuid},lazy_itable_init=1,nodiscard",
            *extra,
            "-d",
            tree,
            image,
        ],
        env={"E2FSPROGS_FAKE_TIME": FAKE_TIME},
    )
