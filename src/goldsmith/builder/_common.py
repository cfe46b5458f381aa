"""Shared plumbing for the image builders: subprocesses, progress, cache keys, file copies.

Every builder follows one pattern: resolve the exact package versions it will use, hash them
with the recipe version into a *key*, and look for ``<cache>/<kind>/<key>/``. A hit means the
artifact was built from the same inputs and is reused as it is; a miss builds into a temporary
sibling directory that is renamed into place only when complete, so an interrupted build never
leaves a half-written artifact that a later run would trust.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

Progress = Callable[[str, float], None]
"""``progress(message, fraction)``: what the build is doing and how far along it is (0–1)."""

BLOCK = 1 << 16


class BuildError(RuntimeError):
    """A build step failed; the message names the step and carries the tool's output."""


def report(progress: Progress | None, message: str, fraction: float) -> None:
    """Call ``progress`` if one was given."""
    if progress is not None:
        progress(message, max(0.0, min(1.0, fraction)))


def run(
    cmd: Sequence[str | os.PathLike[str]],
    *,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
    stdin: str | None = None,
    timeout: float | None = 1800,
) -> str:
    """Run ``cmd`` and return its stdout; raise :class:`BuildError` with stderr on failure."""
    full_env = None if env is None else {**os.environ, **env}
    try:
        done = subprocess.run(
            [str(part) for part in cmd],
            cwd=cwd,
            env=full_env,
            input=stdin,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise BuildError(f"{cmd[0]}: {exc}") from exc
    if done.returncode != 0:
        tail = (done.stderr or done.stdout)[-3000:]
        raise BuildError(f"{' '.join(map(str, cmd))} failed ({done.returncode}):\n{tail}")
    return done.stdout


def cache_key(*parts: object) -> str:
    """A short stable digest of the build inputs (JSON-serialisable parts)."""
    blob = json.dumps(parts, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def stable_uuid(*parts: object) -> str:
    """A UUID derived from the inputs, so rebuilding the same recipe gives the same ids."""
    return str(uuid.UUID(hashlib.sha256(repr(parts).encode()).hexdigest()[:32]))


@contextmanager
def building(final: Path) -> Iterator[Path]:
    """Yield a scratch directory that becomes ``final`` only if the block succeeds."""
    final.parent.mkdir(parents=True, exist_ok=True)
    scratch = final.with_name(f".{final.name}.tmp-{os.getpid()}")
    shutil.rmtree(scratch, ignore_errors=True)
    scratch.mkdir()
    try:
        yield scratch
        shutil.rmtree(final, ignore_errors=True)
        scratch.rename(final)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def write_manifest(directory: Path, data: Mapping[str, Any]) -> None:
    """Record what a cached artifact was built from (read back by :func:`read_manifest`)."""
    (directory / "manifest.json").write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")


def read_manifest(directory: Path) -> dict[str, Any] | None:
    """The manifest of a complete cached artifact, or None when there is none."""
    try:
        data = json.loads((directory / "manifest.json").read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def copy_sparse(src: Path, dst: Path, offset: int = 0) -> None:
    """Copy ``src`` into ``dst`` at byte ``offset``, skipping holes and all-zero blocks.

    ``dst`` is created if missing and never truncated, so this also places a partition image
    inside a disk image (like ``dd conv=notrunc,sparse seek=…``).
    """
    zero = bytes(BLOCK)
    fd_out = os.open(dst, os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        with open(src, "rb") as fin:
            for start, end in _data_extents(fin.fileno()):
                fin.seek(start)
                pos = start
                while pos < end:
                    block = fin.read(min(BLOCK, end - pos))
                    if not block:
                        break
                    if block != zero[: len(block)]:
                        os.pwrite(fd_out, block, offset + pos)
                    pos += len(block)
    finally:
        os.close(fd_out)


def _data_extents(fd: int) -> Iterator[tuple[int, int]]:
    """(start, end) ranges of ``fd`` that may hold data, via SEEK_DATA/SEEK_HOLE."""
    size = os.fstat(fd).st_size
    pos = 0
    while pos < size:
        try:
            start = os.lseek(fd, pos, os.SEEK_DATA)
        except OSError:  # ENXIO: no data after pos
            return
        end = os.lseek(fd, start, os.SEEK_HOLE)
        yield start, end
        pos = end


def publish(src: Path, dst: Path) -> Path:
    """Place a cached artifact at ``dst`` (sparse, atomically replacing an older one)."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.with_name(f".{dst.name}.tmp-{os.getpid()}")
    tmp.unlink(missing_ok=True)
    try:
        run(["cp", "--sparse=always", "--reflink=auto", src, tmp])
        tmp.rename(dst)
    finally:
        tmp.unlink(missing_ok=True)
    return dst


def sparse_create(path: Path, size: int) -> None:
    """Create (or replace) ``path`` as an all-hole file of ``size`` bytes."""
    with open(path, "wb") as handle:
        handle.truncate(size)
