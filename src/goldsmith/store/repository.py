"""The repository: snapshots of disks as manifests of content-addressed chunks.

This is the store's public face for the service layer::

    repo = Repository.open("/data/regions/us-east-1/store")     # or Repository(backend)
    info = repo.snapshot_file("/vols/vol-1.raw", "snap-1")        # full
    info = repo.snapshot_file(path, "snap-2", parent="snap-1",    # incremental; with a change
                              changed_ranges=[(off, length)])     # map only those are read
    with repo.open_writer("snap-3", size, parent="snap-2") as w:  # EBS direct API style
        w.write_block(7, block); w.complete()
    repo.restore("snap-2", "/vols/vol-2.raw")                     # sparse raw file
    repo.read("snap-2", offset, length)                           # random access, verified
    repo.diff("snap-1", "snap-2")                                 # changed chunk indexes
    repo.copy_snapshot("snap-2", "snap-9")                         # new manifest, same chunks
    repo.delete_snapshot("snap-1"); repo.gc(); repo.check(); repo.usage()

Snapshot ids are opaque to the store (letters, digits, ``.``, ``_``, ``-``, ≤ 128 chars).
Invariants, formats and the lock protocol are specified in docs/design/store.md.
"""

from __future__ import annotations

import os
import re
import subprocess
import tempfile
import time
from collections.abc import Iterable, Mapping
from pathlib import Path

from . import maintenance
from .backend import Backend
from .chunks import ChunkStore, LooseChunks, PackedChunks
from .errors import (
    BlobNotFoundError,
    CorruptionError,
    LineageError,
    SnapshotExistsError,
    SnapshotNotFoundError,
    StoreError,
)
from .formats import (
    CHUNK_HEADER,
    DEFAULT_CHUNK_SIZE,
    DEFAULT_LEVEL,
    DEFAULT_PACK_SIZE,
    FORMAT_VERSION,
    LAYOUT_LOOSE,
    ChunkCodec,
    Manifest,
    RepoConfig,
)
from .local import LocalBackend
from .locks import WRITER, LockManager
from .maintenance import CheckReport, GcReport, UsageReport
from .reader import SnapshotReader
from .writer import (
    Progress,
    SnapshotInfo,
    SnapshotWriter,
    changed_chunks,
    data_chunks,
    run_file_pipeline,
)

_SNAPSHOT_ID = re.compile(r"^[A-Za-z0-9_-][A-Za-z0-9._-]{0,127}$")
QCOW2_MAGIC = b"QFI\xfb"


def check_snapshot_id(snapshot_id: str) -> str:
    """Return ``snapshot_id`` if valid, else raise ``ValueError``."""
    if not isinstance(snapshot_id, str) or not _SNAPSHOT_ID.match(snapshot_id):
        raise ValueError(f"invalid snapshot id: {snapshot_id!r}")
    return snapshot_id


def default_workers() -> int:
    """Worker threads: one per core plus one to overlap fsync waits with compression."""
    return (os.cpu_count() or 1) + 1


class Repository:
    """A snapshot repository in one backend. Thread-safe; share one per process and region.

    ``create``: initialise an empty backend (else ``StoreError`` if it has no config).
    ``chunk_size``/``level``/``layout``/``pack_size`` apply only when creating: ``layout``
    "packs" (format 2, the default) stores chunks in pack files of about ``pack_size``
    bytes, "loose" (format 1) one blob per chunk. Both formats are read and written.
    ``lock_wait``: seconds a writer or GC waits for a conflicting lock before
    ``RepositoryBusyError``. ``stale_after``: seconds after which an unrefreshed lock no
    longer counts.
    """

    def __init__(
        self,
        backend: Backend,
        *,
        create: bool = True,
        chunk_size: int = DEFAULT_CHUNK_SIZE,
        level: int = DEFAULT_LEVEL,
        workers: int | None = None,
        lock_wait: float = 120.0,
        stale_after: float = 600.0,
        layout: str = "packs",
        pack_size: int = DEFAULT_PACK_SIZE,
    ) -> None:
        self.backend = backend
        self.config = self._load_config(create, chunk_size, level, layout, pack_size)
        self.codec = ChunkCodec(self.config.level, self.config.zstd_params)
        self.chunks: ChunkStore = (
            LooseChunks(backend)
            if self.config.layout == LAYOUT_LOOSE
            else PackedChunks(
                backend, self.config.pack_size, self.config.chunk_size + CHUNK_HEADER.size
            )
        )
        self.workers = workers or default_workers()
        self.lock_wait = lock_wait
        self.locks = LockManager(backend, stale_after=stale_after)

    @classmethod
    def open(cls, path: str | os.PathLike[str], **kwargs: object) -> Repository:
        """Open (or with ``create=True``, the default, initialise) a local-directory repo."""
        return cls(LocalBackend(path), **kwargs)  # type: ignore[arg-type]

    def _load_config(
        self, create: bool, chunk_size: int, level: int, layout: str, pack_size: int
    ) -> RepoConfig:
        try:
            return RepoConfig.decode(self.backend.get("config"))
        except BlobNotFoundError:
            if not create:
                raise StoreError(f"not a snapshot repository: {self.backend!r}") from None
        if chunk_size <= 0 or chunk_size % 4096:
            raise ValueError("chunk_size must be a positive multiple of 4096")
        if layout not in ("packs", LAYOUT_LOOSE) or pack_size <= 0:
            raise ValueError("layout must be 'packs' or 'loose', pack_size positive")
        version = 1 if layout == LAYOUT_LOOSE else FORMAT_VERSION
        config = RepoConfig(chunk_size, level, version=version, pack_size=pack_size)
        self.backend.put("config", config.encode())
        self.backend.flush()
        return RepoConfig.decode(self.backend.get("config"))  # a racing creator may have won

    @property
    def chunk_size(self) -> int:
        return self.config.chunk_size

    # -- snapshots ---------------------------------------------------------------------------

    def manifest(self, snapshot_id: str) -> Manifest:
        """The snapshot's manifest; ``SnapshotNotFoundError`` or ``CorruptionError``."""
        name = f"snapshots/{check_snapshot_id(snapshot_id)}"
        try:
            blob = self.backend.get(name)
        except BlobNotFoundError:
            raise SnapshotNotFoundError(snapshot_id) from None
        try:
            m = Manifest.decode(blob)
        except ValueError as exc:
            raise CorruptionError(
                f"corrupt manifest: {exc}", blob=name, snapshot_id=snapshot_id
            ) from None
        if m.snapshot_id != snapshot_id:
            raise CorruptionError(
                f"manifest belongs to {m.snapshot_id}", blob=name, snapshot_id=snapshot_id
            )
        return m

    def exists(self, snapshot_id: str) -> bool:
        return self.backend.has(f"snapshots/{check_snapshot_id(snapshot_id)}")

    def list_snapshots(self) -> list[str]:
        """Ids of every completed snapshot, sorted."""
        return sorted(i.name.removeprefix("snapshots/") for i in self.backend.list("snapshots/"))

    def delete_snapshot(self, snapshot_id: str) -> None:
        """Delete the manifest (chunks are reclaimed by ``gc``). Missing → not-found error."""
        if not self.exists(snapshot_id):
            raise SnapshotNotFoundError(snapshot_id)
        self.backend.delete(f"snapshots/{snapshot_id}")
        self.backend.flush()

    def copy_snapshot(self, source: str, dest: str) -> Manifest:
        """Make ``dest`` a copy of ``source``: a new manifest over the same chunks.

        Nothing but the manifest is written, so a copy costs no chunk space. ``dest``'s
        parent is ``source`` (one lineage: ``diff(source, dest)`` is empty). Taken under a
        writer lock so GC cannot reclaim the chunks between reading and writing.
        """
        check_snapshot_id(dest)
        lock = self.locks.acquire(WRITER, self.lock_wait)
        try:
            if self.exists(dest):
                raise SnapshotExistsError(dest)
            src = self.manifest(source)
            copy = Manifest(dest, source, src.size, src.chunk_size, time.time(), dict(src.entries))
            self.backend.put(f"snapshots/{dest}", copy.encode())
            self.backend.flush()
        finally:
            lock.release()
        return copy

    def open_writer(
        self, snapshot_id: str, size: int, *, parent: str | None = None
    ) -> SnapshotWriter:
        """Start a snapshot of ``size`` bytes written block by block (see ``SnapshotWriter``).

        Unwritten blocks inherit the parent's content (zero without a parent). Holds a writer
        lock until ``complete``/``abort``.
        """
        return self._writer(snapshot_id, size, parent, inherit=True)

    def resume_writer(
        self,
        snapshot_id: str,
        size: int,
        blocks: Mapping[int, bytes | None],
        *,
        parent: str | None = None,
    ) -> tuple[SnapshotWriter, list[int]]:
        """Reopen an interrupted block-by-block snapshot from its recorded blocks.

        ``blocks``: index → digest of each block written before the interruption (None: the
        block was written as zeros). Returns the writer (as ``open_writer`` would, with those
        blocks set) and the indexes whose chunk is no longer stored (GC may reclaim chunks of
        an upload whose writer died); those keep the parent's content until written again.
        """
        writer = self.open_writer(snapshot_id, size, parent=parent)
        try:
            # open_writer refreshed the chunk view under the writer lock
            missing = sorted(
                i for i, d in blocks.items() if d is not None and not self.chunks.contains(d)
            )
            count = -(-size // self.chunk_size)
            for index, d in blocks.items():
                if not 0 <= index < count:
                    raise ValueError(f"block index {index} out of range")
                if d is None:
                    writer.set_zero(index)
                elif index not in missing:
                    writer.entries[index] = d
        except BaseException:
            writer.abort()
            raise
        return writer, missing

    def _writer(
        self, snapshot_id: str, size: int, parent: str | None, inherit: bool
    ) -> SnapshotWriter:
        if size < 0:
            raise ValueError("size must be >= 0")
        if self.exists(snapshot_id):
            raise SnapshotExistsError(snapshot_id)
        lock = self.locks.acquire(WRITER, self.lock_wait)
        try:
            # Read the parent under the lock: GC cannot delete its chunks until we finish.
            pm = self.manifest(parent) if parent is not None else None
            if pm is not None and pm.chunk_size != self.chunk_size:
                raise StoreError("parent snapshot has a different chunk size")
            # Under the lock, the chunk view cannot lose chunks until we finish.
            self.chunks.refresh()
        except BaseException:
            lock.release()
            raise
        return SnapshotWriter(
            self.backend,
            self.codec,
            lock,
            snapshot_id,
            size,
            self.chunk_size,
            pm,
            inherit,
            self.chunks,
        )

    def snapshot_file(
        self,
        path: str | os.PathLike[str],
        snapshot_id: str,
        *,
        parent: str | None = None,
        changed_ranges: Iterable[tuple[int, int]] | None = None,
        progress: Progress | None = None,
    ) -> SnapshotInfo:
        """Snapshot a disk image file (raw, sparse or not; qcow2 via ``qemu-img``).

        Holes are not read, zero chunks not stored, chunks already stored not written again.
        ``parent``: the snapshot this disk derives from (dedup by index and lineage for
        ``diff``). ``changed_ranges`` (requires ``parent``): (offset, length) byte ranges that
        may differ from the parent — the caller promises that every other byte is unchanged,
        and only chunks touching these ranges are read. When this returns, the snapshot is
        complete and durable; on any error nothing is visible and it can be retried.
        """
        check_snapshot_id(snapshot_id)
        if changed_ranges is not None and parent is None:
            raise ValueError("changed_ranges requires a parent snapshot")
        with open(path, "rb") as f:
            if f.read(4) == QCOW2_MAGIC:
                if changed_ranges is not None:
                    raise ValueError("changed_ranges is not supported for qcow2 images")
                return self._snapshot_qcow2(Path(path), snapshot_id, parent, progress)
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        try:
            size = os.fstat(fd).st_size
            writer = self._writer(snapshot_id, size, parent, inherit=changed_ranges is not None)
            with writer:
                if changed_ranges is not None and writer.parent is not None:
                    indexes = changed_chunks(
                        changed_ranges, size, self.chunk_size, writer.parent.size
                    )
                else:
                    indexes = list(data_chunks(fd, size, self.chunk_size))
                    os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_SEQUENTIAL)
                run_file_pipeline(writer, fd, indexes, self.workers, progress)
                info = writer.complete()
        finally:
            os.close(fd)
        if progress is not None:
            progress(size, size)
        return info

    def _snapshot_qcow2(
        self, path: Path, snapshot_id: str, parent: str | None, progress: Progress | None
    ) -> SnapshotInfo:
        with tempfile.TemporaryDirectory(dir=path.parent, prefix=".gs-qcow2-") as tmp:
            raw = Path(tmp) / "disk.raw"
            try:
                subprocess.run(
                    ["qemu-img", "convert", "-O", "raw", "-S", "4k", str(path), str(raw)],
                    check=True,
                    capture_output=True,
                )
            except (OSError, subprocess.CalledProcessError) as exc:
                raise StoreError(f"cannot convert qcow2 image {path}: {exc}") from exc
            return self.snapshot_file(raw, snapshot_id, parent=parent, progress=progress)

    # -- reading -----------------------------------------------------------------------------

    def open_reader(self, snapshot_id: str) -> SnapshotReader:
        """A reader for random access (keeps the manifest and a few chunks cached)."""
        return SnapshotReader(
            self.backend, self.codec, self.manifest(snapshot_id), chunks=self.chunks
        )

    def read(self, snapshot_id: str, offset: int, length: int) -> bytes:
        """``length`` bytes at ``offset`` of the snapshot, verified against chunk hashes."""
        return self.open_reader(snapshot_id).read(offset, length)

    def read_block(self, snapshot_id: str, index: int) -> bytes:
        """Chunk ``index`` of the snapshot (the EBS GetSnapshotBlock unit), verified."""
        return self.open_reader(snapshot_id).read_chunk(index)

    def restore(
        self,
        snapshot_id: str,
        dest: str | os.PathLike[str],
        *,
        progress: Progress | None = None,
    ) -> None:
        """Write the snapshot to ``dest`` as a sparse raw file; on error ``dest`` is removed."""
        self.open_reader(snapshot_id).restore(dest, self.workers, progress)

    def ancestors(self, snapshot_id: str) -> list[str]:
        """Parent, grandparent, … of a snapshot, as far as their manifests still exist."""
        out: list[str] = []
        parent = self.manifest(snapshot_id).parent
        while parent is not None and parent not in out and self.exists(parent):
            out.append(parent)
            parent = self.manifest(parent).parent
        return out

    def diff(self, first: str | None, second: str, *, require_lineage: bool = True) -> list[int]:
        """Sorted chunk indexes whose content differs between ``first`` and ``second``.

        ``first=None`` lists every non-zero chunk of ``second``. With ``require_lineage``,
        one snapshot must be an ancestor of the other (EBS ListChangedBlocks), else
        ``LineageError``.
        """
        b = self.manifest(second)
        if first is None:
            return sorted(b.entries)
        a = self.manifest(first)
        if a.chunk_size != b.chunk_size:
            raise LineageError("snapshots have different chunk sizes")
        if (
            require_lineage
            and first != second
            and first not in self.ancestors(second)
            and second not in self.ancestors(first)
        ):
            raise LineageError(f"{first} and {second} are not of one lineage")
        keys = a.entries.keys() | b.entries.keys()
        return sorted(i for i in keys if a.entries.get(i) != b.entries.get(i))

    # -- maintenance -------------------------------------------------------------------------

    def check(self, *, read_data: bool = False, progress: Progress | None = None) -> CheckReport:
        """Verify manifests and references; ``read_data`` also re-hashes every chunk.

        Problems are reported (never raised) with the snapshots and offsets they affect.
        """
        return maintenance.check(
            self.backend,
            self.codec,
            read_data=read_data,
            workers=self.workers,
            progress=progress,
            chunks=self.chunks,
        )

    def gc(self, *, grace: float = 3600.0, dry_run: bool = False) -> GcReport:
        """Delete chunks no snapshot references (older than ``grace`` seconds).

        Safe while writers run (lock protocol); waits up to ``lock_wait`` for them.
        """
        return maintenance.gc(
            self.backend,
            self.locks,
            grace=grace,
            lock_wait=self.lock_wait,
            dry_run=dry_run,
            chunks=self.chunks,
        )

    def usage(self, snapshot_ids: Iterable[str] | None = None) -> UsageReport:
        """Logical, stored and unique bytes per snapshot, and the set's total stored bytes.

        Pass an account's snapshot ids to get what that account is charged for.
        """
        ids = None if snapshot_ids is None else [check_snapshot_id(s) for s in snapshot_ids]
        return maintenance.usage(self.backend, ids, self.chunks)
