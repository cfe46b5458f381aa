"""Copying a snapshot between repositories: only the chunks the destination lacks travel.

Each region has its own repository, so a cross-region copy is a real transfer. Content
addressing makes it incremental for free: the destination is asked (in batches, through its
chunk index) which of the snapshot's distinct chunks it already holds, and only the others
are read from the source, verified and written::

    report = transfer_snapshot(src_repo, "snap-1", dst_repo, "snap-9", progress=cb)
    report.chunks_moved, report.bytes_moved, report.chunks_skipped, report.bytes_skipped

How it stays correct (docs/design/store.md, "Copying between repositories"):

* **Both repositories are locked as a writer** for the whole transfer: the source's chunks
  cannot be reclaimed by its GC while they are read (even if the source manifest is deleted
  meanwhile), and a destination chunk found present cannot vanish before the new manifest
  references it. The locks are refreshed while the transfer runs.
* **Chunk records are copied as they are stored** (no recompression), but every record is
  decoded and checked against its hash first: a damaged or missing source chunk raises
  ``CorruptionError`` naming the source snapshot and offset, and is never written.
* **The manifest is written last**, after the destination's chunk session has flushed
  (every chunk durable and visible) and the writer lock has been checked (invariants 3 and
  5), so a crash leaves no visible snapshot, only chunks that GC may reclaim.
* **Idempotent**: a re-run after a crash finds the chunks the first run made durable and
  skips them; a destination manifest that already exists (the crash came after it) ends the
  call at once with ``already_complete``.

Work is split into units of at most ~8 MiB of stored records: in the packed layout the
records of one pack that the destination needs are read with one ranged read per
contiguous span, decoded (zstd and BLAKE3 release the GIL) on a thread pool, and appended to
the destination's packs. At most ``2 × workers`` units are in flight, so memory stays
bounded whatever the snapshot's size.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, replace
from typing import cast

from .chunks import ChunkSession, LooseChunks, PackedChunks
from .errors import (
    BlobNotFoundError,
    CorruptionError,
    SnapshotExistsError,
    SnapshotNotFoundError,
    StoreError,
)
from .formats import Manifest, chunk_name
from .locks import WRITER, Lock
from .repository import Repository, check_snapshot_id

#: progress(bytes_moved, bytes_needed): stored bytes written so far / to write in all.
TransferProgress = Callable[[int, int], None]

#: a unit of work holds at most this many bytes of stored records
UNIT_BYTES = 8 * 1024 * 1024
#: records further apart than this in a pack are read with separate ranged reads
MAX_GAP = 256 * 1024
#: destination existence checks per backend request (format 1 has no in-memory index)
EXISTS_BATCH = 1000


@dataclass(frozen=True, slots=True)
class TransferReport:
    """What a transfer did. Bytes are stored (compressed) bytes, as they travel.

    ``chunks_total``: distinct non-zero chunks of the snapshot; ``chunks_moved`` were
    written to the destination, ``chunks_skipped`` were already there. ``bytes_needed`` =
    ``bytes_moved`` on success. ``already_complete``: the destination manifest existed, so
    nothing was done.
    """

    source_id: str
    dest_id: str
    size: int
    chunks_total: int
    chunks_moved: int
    chunks_skipped: int
    bytes_moved: int
    bytes_skipped: int
    bytes_needed: int
    seconds: float
    already_complete: bool = False


@dataclass(frozen=True, slots=True)
class _Record:
    digest: bytes
    offset: int  # in the pack (0 for a loose chunk)
    length: int


@dataclass(frozen=True, slots=True)
class _Unit:
    """Records to copy that are read together: one span of one pack, or loose chunks."""

    pack: str | None
    records: tuple[_Record, ...]

    @property
    def stored(self) -> int:
        return sum(r.length for r in self.records)


class TransferCounters:
    """Running totals of every transfer in this process (bench and tests read them)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.transfers = 0
        self.chunks_moved = 0
        self.chunks_skipped = 0
        self.bytes_moved = 0
        self.bytes_skipped = 0

    def add(self, report: TransferReport) -> None:
        with self._lock:
            self.transfers += 1
            self.chunks_moved += report.chunks_moved
            self.chunks_skipped += report.chunks_skipped
            self.bytes_moved += report.bytes_moved
            self.bytes_skipped += report.bytes_skipped

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            return {
                "transfers": self.transfers,
                "chunks_moved": self.chunks_moved,
                "chunks_skipped": self.chunks_skipped,
                "bytes_moved": self.bytes_moved,
                "bytes_skipped": self.bytes_skipped,
            }


#: every transfer of this process adds its report here
COUNTERS = TransferCounters()


def missing_chunks(dest: Repository, digests: list[bytes]) -> set[bytes]:
    """The subset of ``digests`` that ``dest`` does not store.

    Packed layout: the pack index, refreshed first (one listing plus the tails of packs new
    since the last refresh). Loose layout: ``has_many`` in batches of ``EXISTS_BATCH``. The
    answer holds only as long as the caller keeps a writer lock on ``dest``.
    """
    chunks = dest.chunks
    if isinstance(chunks, LooseChunks):
        out: set[bytes] = set()
        for start in range(0, len(digests), EXISTS_BATCH):
            names = {chunk_name(d): d for d in digests[start : start + EXISTS_BATCH]}
            present = dest.backend.has_many(names)
            out.update(d for n, d in names.items() if n not in present)
        return out
    chunks.refresh()
    return {d for d in digests if not chunks.contains(d)}


def stored_sizes(repo: Repository, digests: list[bytes]) -> dict[bytes, int]:
    """Stored bytes of each of ``digests`` that ``repo`` holds (absent ones are left out)."""
    chunks = repo.chunks
    if isinstance(chunks, PackedChunks):
        chunks.refresh()
        out = {}
        for d in digests:
            where = chunks.locate(d)
            if where is not None:
                out[d] = where[2]
        return out
    every = chunks.sizes()
    return {d: every[d] for d in digests if d in every}


def _units(source: Repository, wanted: list[bytes], sizes: dict[bytes, int]) -> Iterator[_Unit]:
    """Group the chunks to copy into read units (by pack and offset in the packed layout)."""
    chunks = source.chunks
    if not isinstance(chunks, PackedChunks):
        batch: list[_Record] = []
        for d in wanted:
            batch.append(_Record(d, 0, sizes.get(d, 0)))
            if sum(r.length for r in batch) >= UNIT_BYTES:
                yield _Unit(None, tuple(batch))
                batch = []
        if batch:
            yield _Unit(None, tuple(batch))
        return
    by_pack: dict[str, list[_Record]] = {}
    for d in wanted:
        where = chunks.locate(d)
        if where is None:  # vanished since ``stored_sizes``: the worker names it
            yield _Unit(None, (_Record(d, 0, sizes.get(d, 0)),))
            continue
        name, off, n = where
        by_pack.setdefault(name, []).append(_Record(d, off, n))
    for name in sorted(by_pack):
        span: list[_Record] = []
        for rec in sorted(by_pack[name], key=lambda r: r.offset):
            if span and (
                rec.offset - (span[-1].offset + span[-1].length) > MAX_GAP
                or rec.offset + rec.length - span[0].offset > UNIT_BYTES
            ):
                yield _Unit(name, tuple(span))
                span = []
            span.append(rec)
        if span:
            yield _Unit(name, tuple(span))


class _Transfer:
    """One running transfer: the shared state of the worker threads."""

    def __init__(
        self,
        source: Repository,
        manifest: Manifest,
        session: ChunkSession,
        needed: int,
        progress: TransferProgress | None,
    ) -> None:
        self.source = source
        self.manifest = manifest
        self.session = session
        self.needed = needed
        self.progress = progress
        self.moved_chunks = 0
        self.moved_bytes = 0
        self._mutex = threading.Lock()
        # digest → first byte offset that references it, for error messages
        self._offsets: dict[bytes, int] = {}
        for index in sorted(manifest.entries, reverse=True):
            self._offsets[manifest.entries[index]] = index * manifest.chunk_size

    def corruption(self, digest: bytes, detail: str) -> CorruptionError:
        return CorruptionError(
            detail,
            blob=self.source.chunks.location(digest),
            snapshot_id=self.manifest.snapshot_id,
            offset=self._offsets.get(digest),
        )

    def _read(self, unit: _Unit) -> list[tuple[_Record, memoryview]]:
        if unit.pack is None:
            out = []
            for rec in unit.records:
                try:
                    out.append((rec, memoryview(self.source.chunks.get(rec.digest))))
                except BlobNotFoundError:
                    raise self.corruption(rec.digest, "missing chunk") from None
            return out
        first = unit.records[0].offset
        end = unit.records[-1].offset + unit.records[-1].length
        try:
            span = memoryview(self.source.backend.get_range(unit.pack, first, end - first))
        except BlobNotFoundError:
            raise self.corruption(unit.records[0].digest, "missing pack") from None
        if len(span) < end - first:
            raise self.corruption(unit.records[-1].digest, "truncated pack")
        return [(r, span[r.offset - first : r.offset - first + r.length]) for r in unit.records]

    def copy(self, unit: _Unit) -> None:
        """Read, verify and put one unit's records (runs on a worker thread)."""
        for rec, record in self._read(unit):
            try:
                # decode = decompress + length + BLAKE3 check; the bytes are not kept
                self.source.codec.decode(cast(bytes, record), rec.digest)
            except ValueError as exc:
                raise self.corruption(rec.digest, f"corrupt chunk: {exc}") from None
            self.session.put(rec.digest, record, b"")
            with self._mutex:
                self.moved_chunks += 1
                self.moved_bytes += len(record)
        if self.progress is not None:
            with self._mutex:
                moved = self.moved_bytes
            self.progress(moved, self.needed)


def _locks(source: Repository, dest: Repository) -> tuple[Lock, Lock]:
    src_lock = source.locks.acquire(WRITER, source.lock_wait)
    try:
        return src_lock, dest.locks.acquire(WRITER, dest.lock_wait)
    except BaseException:
        src_lock.release()
        raise


def transfer_snapshot(
    source: Repository,
    source_id: str,
    dest: Repository,
    dest_id: str,
    *,
    parent: str | None = None,
    progress: TransferProgress | None = None,
    workers: int | None = None,
) -> TransferReport:
    """Copy snapshot ``source_id`` of ``source`` to ``dest`` as ``dest_id``.

    Only chunks ``dest`` lacks are read, verified and written; the manifest goes last.
    ``parent``: a snapshot in ``dest`` to record as the copy's parent (the copy of the
    source's parent, so lineage and ``diff`` work there); it must exist. ``progress`` gets
    ``(bytes_moved, bytes_needed)`` in stored bytes. Returns at once with
    ``already_complete`` when ``dest_id`` exists. Raises ``SnapshotNotFoundError`` (source or
    parent), ``CorruptionError`` (a source chunk missing or damaged; nothing of it written),
    ``RepositoryBusyError`` and backend errors; after any error nothing is visible and the
    call can be repeated.

    The same repository on both sides is a manifest copy (``Repository.copy_snapshot``).
    """
    check_snapshot_id(source_id)
    check_snapshot_id(dest_id)
    start = time.monotonic()
    if dest.exists(dest_id):
        return _done(source_id, dest_id, dest, start)
    if source is dest:
        return _same_repository(source, source_id, dest_id, start)
    if source.chunk_size != dest.chunk_size:
        raise StoreError(
            f"chunk sizes differ ({source.chunk_size} → {dest.chunk_size}); cannot transfer"
        )
    src_lock, dest_lock = _locks(source, dest)
    try:
        if dest.exists(dest_id):  # a racing transfer finished first
            return _done(source_id, dest_id, dest, start)
        manifest = source.manifest(source_id)
        if parent is not None and not dest.exists(parent):
            raise SnapshotNotFoundError(parent)
        report = _run(
            source, manifest, dest, dest_id, parent, (src_lock, dest_lock), progress, workers
        )
    finally:
        dest_lock.release()
        src_lock.release()
    report = _finish(report, start)
    COUNTERS.add(report)
    return report


def _run(
    source: Repository,
    manifest: Manifest,
    dest: Repository,
    dest_id: str,
    parent: str | None,
    locks: tuple[Lock, Lock],
    progress: TransferProgress | None,
    workers: int | None,
) -> TransferReport:
    digests = list(dict.fromkeys(manifest.entries.values()))
    sizes = stored_sizes(source, digests)
    missing = missing_chunks(dest, digests)
    wanted = [d for d in digests if d in missing]  # manifest order: reads stay sequential
    needed = sum(sizes.get(d, 0) for d in wanted)
    skipped = sum(sizes.get(d, 0) for d in digests if d not in missing)
    session = dest.chunks.session()
    try:
        state = _Transfer(source, manifest, session, needed, progress)
        absent = next((d for d in wanted if d not in sizes), None)
        if absent is not None:  # fail before writing anything
            raise state.corruption(absent, "missing chunk")
        if progress is not None:
            progress(0, needed)
        _pump(state, _units(source, wanted, sizes), workers or dest.workers, locks)
        session.flush()  # every chunk durable and visible before the manifest names it
        locks[1].refresh(force=True)  # raises if GC broke our lock as stale
        copy = Manifest(
            dest_id,
            parent,
            manifest.size,
            manifest.chunk_size,
            time.time(),
            dict(manifest.entries),
        )
        dest.backend.put(f"snapshots/{dest_id}", copy.encode())
        dest.backend.flush()
    finally:
        session.close()
    return TransferReport(
        manifest.snapshot_id,
        dest_id,
        manifest.size,
        len(digests),
        state.moved_chunks,
        len(digests) - len(wanted),
        state.moved_bytes,
        skipped,
        needed,
        0.0,
    )


def _pump(state: _Transfer, units: Iterator[_Unit], workers: int, locks: tuple[Lock, Lock]) -> None:
    """Run ``state.copy`` over ``units`` with at most ``2 × workers`` in flight."""
    inflight: set[Future[None]] = set()
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="gs-transfer") as ex:
        try:
            for unit in units:
                if unit.pack is not None:  # start the read-ahead while earlier units run
                    first = unit.records[0].offset
                    last = unit.records[-1]
                    state.source.backend.prefetch(
                        unit.pack, first, last.offset + last.length - first
                    )
                inflight.add(ex.submit(state.copy, unit))
                if len(inflight) >= 2 * workers:
                    done, inflight = wait(inflight, return_when=FIRST_COMPLETED)
                    for f in done:
                        f.result()
                    for lock in locks:
                        lock.refresh()
            for f in inflight:
                f.result()
        except BaseException:
            for f in inflight:
                f.cancel()
            raise


def _done(source_id: str, dest_id: str, dest: Repository, start: float) -> TransferReport:
    m = dest.manifest(dest_id)
    n = len(set(m.entries.values()))
    return TransferReport(
        source_id, dest_id, m.size, n, 0, n, 0, 0, 0, time.monotonic() - start, True
    )


def _same_repository(
    repo: Repository, source_id: str, dest_id: str, start: float
) -> TransferReport:
    try:
        m = repo.copy_snapshot(source_id, dest_id)
    except SnapshotExistsError:
        return _done(source_id, dest_id, repo, start)
    digests = list(set(m.entries.values()))
    shared = sum(stored_sizes(repo, digests).values())
    report = TransferReport(
        source_id, dest_id, m.size, len(digests), 0, len(digests), 0, shared, 0, 0.0
    )
    return _finish(report, start)


def _finish(report: TransferReport, start: float) -> TransferReport:
    return replace(report, seconds=time.monotonic() - start)
