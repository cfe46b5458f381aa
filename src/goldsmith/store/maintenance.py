"""Repository maintenance: ``check`` (verify), ``gc`` (reclaim) and ``usage`` (accounting).

All three start from the same view: every manifest (snapshot → chunk digests) and the chunk
listing (digest → stored size). GC follows the two-phase lock protocol of
docs/design/store.md: a long unlocked scan, then a short exclusive phase that re-reads only
manifests that appeared meanwhile before deleting anything.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from .backend import Backend
from .chunks import ChunkStore, LooseChunks
from .errors import BlobNotFoundError, CorruptionError, FormatError, StoreError
from .formats import ChunkCodec, Manifest
from .locks import GC, LockManager

Progress = Callable[[int, int], None]


@dataclass(frozen=True, slots=True)
class CheckIssue:
    """One problem: ``kind`` is manifest | missing-chunk | corrupt-chunk | stray-blob |
    corrupt-pack (a pack whose index cannot be read).

    ``affected`` lists (snapshot id, byte offset) pairs whose data the problem breaks.
    """

    kind: str
    message: str
    blob: str | None = None
    affected: tuple[tuple[str, int], ...] = ()


@dataclass(slots=True)
class CheckReport:
    """Result of ``Repository.check``; ``ok`` is true when there are no issues."""

    snapshots: int = 0
    chunks: int = 0
    referenced_chunks: int = 0
    unreferenced_chunks: int = 0
    chunks_read: int = 0
    bytes_read: int = 0
    issues: list[CheckIssue] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.issues


@dataclass(frozen=True, slots=True)
class GcReport:
    """Result of ``Repository.gc``."""

    snapshots: int
    chunks_before: int
    chunks_deleted: int
    bytes_freed: int
    incomplete_removed: int
    stale_locks_removed: tuple[str, ...]
    dry_run: bool
    seconds: float


@dataclass(frozen=True, slots=True)
class SnapshotUsage:
    """Accounting of one snapshot, in bytes.

    ``logical``: the disk size. ``data``: non-zero chunk bytes (uncompressed).
    ``stored``: stored bytes of every distinct chunk it references (its cost alone).
    ``unique``: stored bytes of chunks no other snapshot in the set references (what deleting
    it frees). ``incremental``: stored bytes of chunks its parent does not have (EBS-style).
    """

    snapshot_id: str
    parent: str | None
    logical: int
    data: int
    stored: int
    unique: int
    incremental: int


@dataclass(frozen=True, slots=True)
class UsageReport:
    """Usage of a set of snapshots; ``stored`` counts each shared chunk once (the bill)."""

    snapshots: tuple[SnapshotUsage, ...]
    logical: int
    stored: int


def load_manifests(backend: Backend, names: list[str]) -> tuple[dict[str, Manifest], list[str]]:
    """Decode manifests by blob name; return (id → manifest, names that failed)."""
    good: dict[str, Manifest] = {}
    bad: list[str] = []
    for name in names:
        try:
            m = Manifest.decode(backend.get(name))
        except BlobNotFoundError:
            continue  # deleted meanwhile
        except (ValueError, FormatError):
            bad.append(name)
            continue
        good[name.removeprefix("snapshots/")] = m
    return good, bad


def _references(manifests: dict[str, Manifest]) -> dict[bytes, list[tuple[str, int]]]:
    refs: dict[bytes, list[tuple[str, int]]] = defaultdict(list)
    for sid, m in manifests.items():
        for index, d in m.entries.items():
            refs[d].append((sid, index * m.chunk_size))
    return refs


def _describe(affected: list[tuple[str, int]]) -> str:
    shown = ", ".join(f"{s} at offset {o}" for s, o in sorted(affected)[:5])
    more = len(affected) - 5
    return shown + (f" and {more} more" if more > 0 else "")


def check(
    backend: Backend,
    codec: ChunkCodec,
    *,
    read_data: bool = False,
    workers: int = 2,
    progress: Progress | None = None,
    chunks: ChunkStore | None = None,
) -> CheckReport:
    """Check structure and references; with ``read_data`` re-hash every referenced chunk."""
    report = CheckReport()
    names = [i.name for i in backend.list("snapshots/")]
    manifests, bad = load_manifests(backend, names)
    for name in bad:
        report.issues.append(
            CheckIssue("manifest", f"unreadable manifest of snapshot {name[10:]}", name)
        )
    for sid, m in manifests.items():
        if m.snapshot_id != sid:
            report.issues.append(
                CheckIssue("manifest", f"manifest {sid} names {m.snapshot_id}", f"snapshots/{sid}")
            )
    chunks = chunks if chunks is not None else LooseChunks(backend)
    inv = chunks.inventory()
    sizes = inv.sizes
    for name, reason in inv.problems:
        kind = "stray-blob" if reason.startswith("not a") else "corrupt-pack"
        report.issues.append(CheckIssue(kind, reason, name))
    refs = _references(manifests)
    report.snapshots, report.chunks = len(manifests), len(sizes)
    report.referenced_chunks = len(refs)
    report.unreferenced_chunks = len(sizes.keys() - refs.keys())
    for d, affected in refs.items():
        if d not in sizes:
            report.issues.append(
                CheckIssue(
                    "missing-chunk",
                    f"missing chunk {d.hex()} used by {_describe(affected)}",
                    chunks.location(d),
                    tuple(sorted(affected)),
                )
            )
    if read_data:
        _read_all(chunks, codec, refs, sizes, report, workers, progress)
    return report


def _read_all(
    chunks: ChunkStore,
    codec: ChunkCodec,
    refs: dict[bytes, list[tuple[str, int]]],
    sizes: dict[bytes, int],
    report: CheckReport,
    workers: int,
    progress: Progress | None,
) -> None:
    todo = [d for d in refs if d in sizes]
    total = sum(sizes[d] for d in todo)

    def verify(d: bytes) -> tuple[bytes, int, str | None]:
        try:
            blob = chunks.get(d)
        except BlobNotFoundError:
            return d, 0, "chunk vanished during check"
        try:
            codec.decode(blob, d)
        except (ValueError, FormatError) as exc:
            return d, len(blob), str(exc)
        return d, len(blob), None

    done = 0
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="gs-check") as ex:
        for d, n, problem in ex.map(verify, todo):
            report.chunks_read += 1
            report.bytes_read += n
            done += sizes[d]
            if problem is not None:
                affected = refs[d]
                report.issues.append(
                    CheckIssue(
                        "corrupt-chunk",
                        f"corrupt chunk {d.hex()} ({problem}) used by {_describe(affected)}",
                        chunks.location(d),
                        tuple(sorted(affected)),
                    )
                )
            if progress is not None:
                progress(done, total)


def gc(
    backend: Backend,
    locks: LockManager,
    *,
    grace: float,
    lock_wait: float,
    dry_run: bool = False,
    chunks: ChunkStore | None = None,
) -> GcReport:
    """Delete chunks no manifest references and older than ``grace`` seconds.

    With packs, a pack none of whose chunks is referenced is deleted and a pack that is
    mostly garbage is rewritten with its live chunks (new pack durable before the old one
    goes). Refuses (``CorruptionError``) to delete anything while a manifest is unreadable.
    """
    start = time.monotonic()
    cutoff = time.time() - grace
    chunks = chunks if chunks is not None else LooseChunks(backend)
    names = {i.name for i in backend.list("snapshots/")}
    manifests, bad = load_manifests(backend, sorted(names))
    if bad:
        raise CorruptionError(f"gc refused: unreadable manifest(s) {', '.join(bad)}")
    referenced = set(_references(manifests))
    plan = chunks.plan_gc(referenced, cutoff)
    if dry_run:
        return GcReport(
            len(manifests),
            plan.chunks_before,
            plan.chunks_deleted,
            plan.bytes_freed,
            0,
            (),
            True,
            0,
        )
    lock = locks.acquire(GC, lock_wait)
    try:
        # Writers are excluded now; anything they completed meanwhile is listed here.
        new_names = sorted({i.name for i in backend.list("snapshots/")} - names)
        new, bad = load_manifests(backend, new_names)
        if bad:
            raise CorruptionError(f"gc refused: unreadable manifest(s) {', '.join(bad)}")
        referenced.update(_references(new))
        done = chunks.execute_gc(plan, referenced)
        stale = tuple(locks.break_stale())
        incomplete = backend.purge_incomplete(grace)
    finally:
        lock.release()
    return GcReport(
        len(manifests) + len(new),
        plan.chunks_before,
        done.chunks_deleted,
        done.bytes_freed,
        incomplete,
        stale,
        False,
        time.monotonic() - start,
    )


def usage(
    backend: Backend, snapshot_ids: list[str] | None = None, chunks: ChunkStore | None = None
) -> UsageReport:
    """Usage of ``snapshot_ids`` (default: all); sharing is computed within that set.

    A chunk's stored size is its record's size (for packs: without the 44-byte index entry).
    """
    if snapshot_ids is None:
        names = [i.name for i in backend.list("snapshots/")]
    else:
        names = [f"snapshots/{s}" for s in snapshot_ids]
    manifests, bad = load_manifests(backend, names)
    if bad:
        raise CorruptionError(f"unreadable manifest(s) {', '.join(bad)}")
    if snapshot_ids is not None and len(manifests) != len(set(snapshot_ids)):
        missing = sorted(set(snapshot_ids) - manifests.keys())
        raise StoreError(f"no such snapshot(s): {', '.join(missing)}")
    sizes = (chunks if chunks is not None else LooseChunks(backend)).sizes()
    owners: dict[bytes, int] = defaultdict(int)
    for m in manifests.values():
        for d in set(m.entries.values()):
            owners[d] += 1
    parents: dict[str, set[bytes]] = {}
    out = []
    for sid in sorted(manifests):
        m = manifests[sid]
        mine = set(m.entries.values())
        if m.parent is not None and m.parent not in parents:
            try:
                parents[m.parent] = set(
                    manifests[m.parent].entries.values()
                    if m.parent in manifests
                    else Manifest.decode(backend.get(f"snapshots/{m.parent}")).entries.values()
                )
            except (BlobNotFoundError, ValueError):
                parents[m.parent] = set()
        base = parents.get(m.parent, set()) if m.parent is not None else set()
        out.append(
            SnapshotUsage(
                sid,
                m.parent,
                m.size,
                sum(m.chunk_length(i) for i in m.entries),
                sum(sizes.get(d, 0) for d in mine),
                sum(sizes.get(d, 0) for d in mine if owners[d] == 1),
                sum(sizes.get(d, 0) for d in mine - base),
            )
        )
    return UsageReport(
        tuple(out), sum(m.size for m in manifests.values()), sum(sizes.get(d, 0) for d in owners)
    )
