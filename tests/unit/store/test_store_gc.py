"""Garbage collection (with a concurrent writer), usage accounting and locks."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
from store_helpers import CHUNK, ImageFactory, MiB

from goldsmith.store import MemoryBackend, Repository, RepositoryBusyError
from goldsmith.store.formats import chunk_name
from goldsmith.store.locks import GC, WRITER, LockManager


def _chunks(repo: Repository) -> int:
    return len(repo.chunks.inventory().sizes)


def test_gc_removes_only_unreferenced_chunks(image: ImageFactory, tmp_path: Path) -> None:
    """Format 1 (one blob per chunk): every unreferenced chunk goes."""
    repo = Repository.open(tmp_path / "repo", layout="loose")
    path, expected = image(4 * MiB, ranges=[(0, 4 * MiB)])
    repo.snapshot_file(path, "a")
    with open(path, "r+b") as f:
        f.write(b"new first chunk")
    repo.snapshot_file(path, "b", parent="a")
    assert _chunks(repo) == 9
    assert repo.gc(grace=0).chunks_deleted == 0
    repo.delete_snapshot("a")
    assert repo.gc(grace=3600).chunks_deleted == 0  # too young: the grace period keeps them
    dry = repo.gc(grace=0, dry_run=True)
    assert (dry.chunks_deleted, dry.dry_run) == (1, True)
    assert _chunks(repo) == 9
    report = repo.gc(grace=0)
    assert report.chunks_deleted == 1
    assert report.bytes_freed > 0
    assert _chunks(repo) == 8
    assert repo.check(read_data=True).ok
    assert repo.read("b", CHUNK, 3 * CHUNK) == expected[CHUNK : 4 * CHUNK]


def test_gc_with_concurrent_writer_reusing_unreferenced_chunks(image: ImageFactory) -> None:
    """The hazard case: the writer dedups against chunks GC considers garbage."""
    repo = Repository(MemoryBackend(), lock_wait=30)
    path, expected = image(2 * MiB, ranges=[(0, 2 * MiB)])
    stop = threading.Event()
    failures: list[BaseException] = []
    rounds = [0]

    def writer() -> None:
        try:
            i = 0
            while not stop.is_set():
                sid = f"w-{i}"
                repo.snapshot_file(path, sid)  # reuses the chunks of the deleted w-(i-1)
                assert repo.read(sid, 0, 2 * MiB) == expected
                repo.delete_snapshot(sid)  # its chunks are garbage again
                i += 1
                rounds[0] = i
                time.sleep(0.002)
        except BaseException as exc:
            failures.append(exc)

    t = threading.Thread(target=writer)
    t.start()
    deleted = 0
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline and not failures:
        deleted += repo.gc(grace=0).chunks_deleted
    stop.set()
    t.join()
    assert not failures, failures
    assert rounds[0] > 5
    assert deleted > 0  # GC really ran between writers and collected
    assert repo.check().ok


def test_gc_waits_for_a_live_writer_lock_and_writer_waits_for_gc() -> None:
    backend = MemoryBackend()
    repo = Repository(backend, lock_wait=0.2)
    locks = LockManager(backend)
    held = locks.acquire(WRITER, 0)
    with pytest.raises(RepositoryBusyError):
        repo.gc(grace=0)
    held.release()
    repo.gc(grace=0)
    gc_lock = locks.acquire(GC, 0)
    with pytest.raises(RepositoryBusyError):
        repo.open_writer("snap-1", CHUNK)
    gc_lock.release()
    repo.open_writer("snap-1", CHUNK).abort()


def test_stale_locks_do_not_block() -> None:
    backend = MemoryBackend()
    now = [1000.0]
    old = LockManager(backend, stale_after=10, clock=lambda: now[0])
    old.acquire(WRITER, 0)  # never released (its process "died")
    now[0] += 11
    fresh = LockManager(backend, stale_after=10, clock=lambda: now[0])
    fresh.acquire(GC, 0).release()
    assert len(fresh.break_stale()) == 1
    assert list(backend.list("locks/")) == []


def test_broken_writer_lock_fails_the_commit() -> None:
    repo = Repository(MemoryBackend())
    w = repo.open_writer("snap-1", CHUNK)
    w.write_block(0, b"\x05" * CHUNK)
    repo.backend.delete(w.lock.name)  # GC broke it as stale
    with pytest.raises(RepositoryBusyError):
        w.complete()
    assert not repo.exists("snap-1")


def test_usage_accounting(image: ImageFactory) -> None:
    repo = Repository(MemoryBackend())
    path, _ = image(4 * MiB, ranges=[(0, 2 * MiB)], compressible=False)
    repo.snapshot_file(path, "a")
    with open(path, "r+b") as f:
        f.write(b"changed")
    repo.snapshot_file(path, "b", parent="a")
    sizes = {chunk_name(d): n for d, n in repo.chunks.inventory().sizes.items()}
    ma, mb = repo.manifest("a"), repo.manifest("b")

    def stored(digests: set[bytes]) -> int:
        return sum(sizes[chunk_name(d)] for d in digests)

    da, db = set(ma.entries.values()), set(mb.entries.values())
    report = repo.usage()
    ua, ub = report.snapshots
    assert (ua.snapshot_id, ub.snapshot_id) == ("a", "b")
    assert ua.logical == ub.logical == 4 * MiB
    assert ua.data == ub.data == 2 * MiB
    assert ua.stored == stored(da) and ub.stored == stored(db)
    assert ua.unique == stored(da - db) > 0
    assert ub.unique == stored(db - da) > 0
    assert ua.incremental == ua.stored
    assert ub.incremental == stored(db - da)
    assert report.stored == stored(da | db) == sum(sizes.values())
    assert report.stored < ua.stored + ub.stored  # shared chunks are billed once
    [only_b] = repo.usage(["b"]).snapshots
    assert only_b.unique == only_b.stored  # alone in the set, everything is unique
