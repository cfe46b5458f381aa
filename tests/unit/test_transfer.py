"""store.transfer: copying snapshots between repositories, only the chunks that are missing."""

from __future__ import annotations

import random
from collections.abc import Callable
from pathlib import Path

import pytest

from goldsmith.store import (
    BackendError,
    CorruptionError,
    LocalBackend,
    MemoryBackend,
    Repository,
    RepositoryBusyError,
    SnapshotNotFoundError,
    StoreError,
)
from goldsmith.store.backend import Backend
from goldsmith.store.chunks import PackedChunks
from goldsmith.store.testing import FaultyBackend
from goldsmith.store.transfer import COUNTERS, missing_chunks, stored_sizes, transfer_snapshot

CHUNK = 512 * 1024
MiB = 1 << 20
Repos = Callable[[str], Repository]


def write_disk(path: Path, chunks: dict[int, int], size: int = 8 * MiB) -> bytes:
    """A sparse disk whose chunk ``i`` holds compressible data from seed ``chunks[i]``."""
    content = bytearray(size)
    for index, seed in chunks.items():
        rnd = random.Random(seed)
        words = [rnd.randbytes(8) for _ in range(64)]
        data = b"".join(rnd.choice(words) for _ in range(CHUNK // 8))
        content[index * CHUNK : (index + 1) * CHUNK] = data
    with open(path, "wb") as f:
        f.truncate(size)
        for index in chunks:
            f.seek(index * CHUNK)
            f.write(content[index * CHUNK : (index + 1) * CHUNK])
    return bytes(content)


@pytest.fixture(params=["memory", "local", "loose"])
def repos(request: pytest.FixtureRequest, tmp_path: Path) -> Repos:
    """Factory of fresh repositories of one kind (small packs: several units per copy)."""

    def make(name: str) -> Repository:
        backend: Backend = (
            MemoryBackend() if request.param == "memory" else LocalBackend(tmp_path / name)
        )
        layout = "loose" if request.param == "loose" else "packs"
        return Repository(backend, layout=layout, pack_size=2 * MiB, lock_wait=2)

    return make


BASE = {i: 100 + i for i in range(0, 12)}  # 6 MiB of data in 12 chunks
DERIVED = {**BASE, 3: 999, 14: 1000}  # one chunk changed, one added


def snapshot(repo: Repository, tmp_path: Path, sid: str, chunks: dict[int, int], **kw: str):
    disk = tmp_path / f"{sid}.raw"
    content = write_disk(disk, chunks, size=16 * MiB)
    repo.snapshot_file(disk, sid, **kw)
    return content


def test_full_copy_restores_the_same_bytes(repos: Repos, tmp_path: Path) -> None:
    src, dst = repos("src"), repos("dst")
    content = snapshot(src, tmp_path, "snap-a", BASE)
    seen: list[tuple[int, int]] = []
    before = COUNTERS.snapshot()

    report = transfer_snapshot(
        src, "snap-a", dst, "snap-b", progress=lambda m, n: seen.append((m, n))
    )

    sizes = stored_sizes(src, list(set(src.manifest("snap-a").entries.values())))
    assert report.chunks_total == report.chunks_moved == len(BASE)
    assert report.chunks_skipped == 0 and report.bytes_skipped == 0
    assert report.bytes_moved == report.bytes_needed == sum(sizes.values())
    assert seen[0] == (0, report.bytes_needed) and seen[-1] == (report.bytes_moved,) * 2
    assert [m for m, _ in seen] == sorted(m for m, _ in seen)
    out = tmp_path / "restored.raw"
    dst.restore("snap-b", out)
    assert out.read_bytes() == content
    assert dst.check(read_data=True).ok
    assert dst.manifest("snap-b").parent is None
    assert list(dst.backend.list("locks/")) == [] and list(src.backend.list("locks/")) == []
    after = COUNTERS.snapshot()
    assert after["bytes_moved"] - before["bytes_moved"] == report.bytes_moved


def test_derived_copy_moves_only_the_new_chunks(repos: Repos, tmp_path: Path) -> None:
    src, dst = repos("src"), repos("dst")
    snapshot(src, tmp_path, "snap-a", BASE)
    content = snapshot(src, tmp_path, "snap-d", DERIVED, parent="snap-a")
    transfer_snapshot(src, "snap-a", dst, "snap-a")
    stored_before = sum(i.size for i in dst.backend.list("packs/")) + sum(
        i.size for i in dst.backend.list("chunks/")
    )

    report = transfer_snapshot(src, "snap-d", dst, "snap-d", parent="snap-a")

    incremental = {u.snapshot_id: u for u in src.usage(["snap-a", "snap-d"]).snapshots}
    assert report.chunks_moved == 2 and report.chunks_skipped == len(DERIVED) - 2
    assert report.bytes_moved == incremental["snap-d"].incremental
    stored_after = sum(i.size for i in dst.backend.list("packs/")) + sum(
        i.size for i in dst.backend.list("chunks/")
    )
    assert stored_after - stored_before <= report.bytes_moved + 4096  # + one pack's index
    assert dst.diff("snap-a", "snap-d") == [3, 14]  # lineage kept through ``parent``
    out = tmp_path / "restored.raw"
    dst.restore("snap-d", out)
    assert out.read_bytes() == content


def test_second_run_is_already_complete(repos: Repos, tmp_path: Path) -> None:
    src, dst = repos("src"), repos("dst")
    snapshot(src, tmp_path, "snap-a", BASE)
    transfer_snapshot(src, "snap-a", dst, "snap-b")
    again = transfer_snapshot(src, "snap-a", dst, "snap-b")
    assert again.already_complete and again.chunks_moved == 0 and again.bytes_moved == 0


def _corrupt_first_record(repo: Repository, digest: bytes) -> None:
    chunks = repo.chunks
    if isinstance(chunks, PackedChunks):
        where = chunks.locate(digest)
        assert where is not None
        name, off, n = where
    else:
        name, off, n = chunks.location(digest), 0, len(chunks.get(digest))
    blob = bytearray(repo.backend.get(name))
    blob[off + n - 10] ^= 0xFF  # inside the payload: decodes wrong or hashes wrong
    repo.backend.put(name, bytes(blob))


def test_corrupt_source_chunk_is_never_copied(repos: Repos, tmp_path: Path) -> None:
    src, dst = repos("src"), repos("dst")
    snapshot(src, tmp_path, "snap-a", BASE)
    victim = src.manifest("snap-a").entries[5]
    _corrupt_first_record(src, victim)

    with pytest.raises(CorruptionError) as info:
        transfer_snapshot(src, "snap-a", dst, "snap-b")

    assert info.value.snapshot_id == "snap-a" and info.value.offset == 5 * CHUNK
    assert not dst.exists("snap-b")
    assert victim in missing_chunks(dst, [victim])  # the damaged record was not written
    assert list(dst.backend.list("locks/")) == []


def test_missing_source_chunk_is_reported(tmp_path: Path) -> None:
    src = Repository(MemoryBackend(), layout="loose")
    dst = Repository(MemoryBackend())
    snapshot(src, tmp_path, "snap-a", BASE)
    src.backend.delete(src.chunks.location(src.manifest("snap-a").entries[2]))
    with pytest.raises(CorruptionError, match="missing chunk") as info:
        transfer_snapshot(src, "snap-a", dst, "snap-b")
    assert info.value.offset == 2 * CHUNK and not dst.exists("snap-b")


def test_crash_then_resume_finishes_and_gc_leaves_no_orphans(tmp_path: Path) -> None:
    src = Repository(MemoryBackend(), pack_size=2 * MiB)
    faulty = FaultyBackend(MemoryBackend())
    dst = Repository(faulty, pack_size=256 * 1024, lock_wait=2)  # ~3 chunks per pack
    content = snapshot(src, tmp_path, "snap-a", BASE)
    faulty.fail_put_after = faulty.puts + 3  # the lock and two packs land, then a "crash"

    with pytest.raises(BackendError):
        transfer_snapshot(src, "snap-a", dst, "snap-b", workers=1)

    assert not dst.exists("snap-b")
    digests = list(src.manifest("snap-a").entries.values())
    survivors = len(BASE) - len(missing_chunks(dst, digests))
    assert 0 < survivors < len(BASE)
    faulty.fail_put_after = None
    report = transfer_snapshot(src, "snap-a", dst, "snap-b")
    assert report.chunks_skipped == survivors
    assert report.chunks_moved == len(BASE) - survivors
    out = tmp_path / "restored.raw"
    dst.restore("snap-b", out)
    assert out.read_bytes() == content
    assert dst.check(read_data=True).ok


def test_gc_after_a_failed_copy_reclaims_everything(tmp_path: Path) -> None:
    src = Repository(MemoryBackend(), pack_size=2 * MiB)
    faulty = FaultyBackend(MemoryBackend())
    dst = Repository(faulty, pack_size=2 * MiB, lock_wait=2)
    snapshot(src, tmp_path, "snap-a", BASE)
    faulty.fail_put_prefix = "snapshots/"  # every chunk lands, the manifest never does
    with pytest.raises(BackendError):
        transfer_snapshot(src, "snap-a", dst, "snap-b")
    assert list(dst.backend.list("packs/"))
    dst.gc(grace=0)
    assert list(dst.backend.list("packs/")) == [] and dst.check().ok


def test_same_repository_is_a_manifest_copy(tmp_path: Path) -> None:
    repo = Repository(MemoryBackend())
    snapshot(repo, tmp_path, "snap-a", BASE)
    packs = sorted(i.name for i in repo.backend.list("packs/"))
    report = transfer_snapshot(repo, "snap-a", repo, "snap-b")
    assert report.chunks_moved == 0 and report.chunks_skipped == len(BASE)
    assert report.bytes_skipped > 0 and report.bytes_moved == 0
    assert sorted(i.name for i in repo.backend.list("packs/")) == packs
    assert repo.diff("snap-a", "snap-b") == []


def test_bad_inputs(tmp_path: Path) -> None:
    src, dst = Repository(MemoryBackend()), Repository(MemoryBackend())
    snapshot(src, tmp_path, "snap-a", BASE)
    with pytest.raises(SnapshotNotFoundError):
        transfer_snapshot(src, "snap-zz", dst, "snap-b")
    with pytest.raises(SnapshotNotFoundError):
        transfer_snapshot(src, "snap-a", dst, "snap-b", parent="snap-nope")
    with pytest.raises(ValueError):
        transfer_snapshot(src, "snap-a", dst, "../evil")
    other = Repository(MemoryBackend(), chunk_size=CHUNK * 2)
    with pytest.raises(StoreError, match="chunk sizes differ"):
        transfer_snapshot(src, "snap-a", other, "snap-b")
    assert list(dst.backend.list("locks/")) == [] and not dst.exists("snap-b")


def test_gc_cannot_reclaim_either_side_while_a_copy_runs(tmp_path: Path) -> None:
    src = Repository(MemoryBackend(), pack_size=256 * 1024, lock_wait=0.2)
    dst = Repository(MemoryBackend(), pack_size=256 * 1024, lock_wait=0.2)
    content = snapshot(src, tmp_path, "snap-a", BASE)
    outcomes: list[str] = []

    def delete_and_gc(moved: int, needed: int) -> None:
        if 0 < moved < needed and not outcomes:
            src.delete_snapshot("snap-a")  # its owner deletes it mid-copy
            for repo in (src, dst):
                try:
                    repo.gc(grace=0)
                    outcomes.append("ran")
                except RepositoryBusyError:
                    outcomes.append("busy")

    transfer_snapshot(src, "snap-a", dst, "snap-b", progress=delete_and_gc, workers=1)
    assert outcomes == ["busy", "busy"]
    out = tmp_path / "restored.raw"
    dst.restore("snap-b", out)
    assert out.read_bytes() == content
