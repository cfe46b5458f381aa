"""Helpers shared by the store tests: backends of every kind, small sparse disk images."""

from __future__ import annotations

import os
import random
from collections.abc import Callable
from pathlib import Path

from goldsmith.store.backend import Backend
from goldsmith.store.local import LocalBackend
from goldsmith.store.memory import MemoryBackend
from goldsmith.store.testing import FaultyBackend

BACKENDS = ["local", "memory", "faulty"]


def make_backend(kind: str, tmp_path: Path) -> Backend:
    """A fresh, empty backend of ``kind``."""
    if kind == "local":
        return LocalBackend(tmp_path / "blobs")
    if kind == "memory":
        return MemoryBackend()
    if kind == "faulty":  # with no fault configured it must behave like its inner backend
        return FaultyBackend(MemoryBackend())
    raise ValueError(kind)


MiB = 1 << 20
CHUNK = 512 * 1024


def write_image(
    path: Path, size: int, data_at: list[tuple[int, int]], seed: int = 1, compressible: bool = True
) -> bytes:
    """Create a sparse file of ``size`` with pseudo-random data in the (offset, length) ranges.

    Returns the full expected content. Compressible data repeats words so zstd shrinks it.
    """
    rnd = random.Random(seed)
    content = bytearray(size)
    with open(path, "wb") as f:
        f.truncate(size)
        for off, length in data_at:
            if compressible:
                words = [rnd.randbytes(8) for _ in range(64)]
                blob = b"".join(rnd.choice(words) for _ in range(length // 8 + 1))[:length]
            else:
                blob = rnd.randbytes(length)
            f.seek(off)
            f.write(blob)
            content[off : off + length] = blob
    return bytes(content)


ImageFactory = Callable[..., tuple[Path, bytes]]


def holes(path: Path) -> list[tuple[int, int]]:
    """The data extents of a file as (start, end), via SEEK_DATA/SEEK_HOLE."""
    out = []
    fd = os.open(path, os.O_RDONLY)
    try:
        size = os.fstat(fd).st_size
        pos = 0
        while pos < size:
            try:
                start = os.lseek(fd, pos, os.SEEK_DATA)
            except OSError:
                break
            end = os.lseek(fd, start, os.SEEK_HOLE)
            out.append((start, end))
            pos = end
    finally:
        os.close(fd)
    return out
