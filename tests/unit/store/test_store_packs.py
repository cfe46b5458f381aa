"""Format 2: pack files — encoding, durability of streamed blocks, GC rewriting, format 1."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest
from store_helpers import CHUNK, ImageFactory, MiB

from goldsmith.store import BackendError, FormatError, MemoryBackend, Repository
from goldsmith.store.chunks import PackedChunks
from goldsmith.store.formats import (
    PACK_ENTRY,
    PACK_FOOTER,
    RepoConfig,
    decode_pack_index,
    encode_pack_index,
)
from goldsmith.store.testing import FaultyBackend


def _packs(repo: Repository) -> list[str]:
    return sorted(i.name for i in repo.backend.list("packs/"))


def test_pack_index_roundtrip_and_damage() -> None:
    entries = [(bytes([i]) * 32, i * 100, 100) for i in range(5)]
    index, footer = encode_pack_index(entries)
    records = b"r" * 500
    pack = records + index + footer
    assert len(index) == 5 * PACK_ENTRY.size and len(footer) == PACK_FOOTER.size
    assert decode_pack_index(pack, len(pack)) == entries
    assert decode_pack_index(pack[-300:], len(pack)) == entries  # a tail is enough
    flipped = bytearray(pack)
    flipped[510] ^= 1
    with pytest.raises(ValueError, match="checksum"):
        decode_pack_index(bytes(flipped), len(pack))
    with pytest.raises(ValueError, match="magic"):
        decode_pack_index(pack[:-3], len(pack) - 3)
    bad_offsets = encode_pack_index([(b"x" * 32, 490, 100)])
    with pytest.raises(ValueError, match="beyond"):
        decode_pack_index(records + b"".join(bad_offsets), 500 + 44 + 44)


def test_config_versions() -> None:
    v2 = RepoConfig.decode(RepoConfig().encode())
    assert (v2.version, v2.layout, v2.pack_size) == (2, "packs", 8 * MiB)
    v1 = RepoConfig.decode(RepoConfig(version=1).encode())
    assert v1.layout == "loose"
    assert "layout" not in json.loads(RepoConfig(version=1).encode())  # as format 1 wrote it
    doc = json.loads(RepoConfig().encode())
    for change in ({"version": 3}, {"layout": "tree"}):
        with pytest.raises(FormatError):
            RepoConfig.decode(json.dumps({**doc, **change}).encode())


def test_full_snapshot_writes_few_packs(image: ImageFactory) -> None:
    repo = Repository(MemoryBackend(), pack_size=1 * MiB)
    path, expected = image(8 * MiB, ranges=[(0, 8 * MiB)], compressible=False)
    info = repo.snapshot_file(path, "snap-1")
    assert info.chunks_written == 16
    assert len(_packs(repo)) == 16  # each 512 KiB raw record alone in a 1 MiB pack
    repo2 = Repository(MemoryBackend(), pack_size=4 * MiB)
    repo2.snapshot_file(path, "snap-1")
    assert len(_packs(repo2)) == 3  # a 4 MiB pack takes 7 such records: 7 + 7 + 2
    assert repo2.read("snap-1", 0, 8 * MiB) == expected
    assert list(repo2.backend.list("chunks/")) == []


def test_streamed_block_is_stored_before_write_block_returns(tmp_path: Path) -> None:
    """The EBS direct API's resumable uploads rely on this (see SnapshotWriter)."""
    repo = Repository.open(tmp_path / "repo")
    w = repo.open_writer("snap-1", 4 * CHUNK)
    w.write_block(1, b"\x07" * CHUNK)
    other = Repository.open(tmp_path / "repo", create=False)  # e.g. after a restart
    other.chunks.refresh()
    assert other.chunks.contains(w.entries[1])
    w.abort()
    writer, missing = other.resume_writer("snap-1", 4 * CHUNK, {1: w.entries[1], 2: b"z" * 32})
    assert missing == [2]
    writer.complete()
    assert other.read("snap-1", CHUNK, CHUNK) == b"\x07" * CHUNK


def test_gc_rewrites_mostly_dead_pack_and_readers_follow(image: ImageFactory) -> None:
    repo = Repository(MemoryBackend())
    path, expected = image(4 * MiB, ranges=[(0, 4 * MiB)])
    repo.snapshot_file(path, "a")  # one pack of 8 chunks
    with open(path, "r+b") as f:  # b changes chunks 0-5: only 2 of a's 8 chunks stay shared
        for i in range(6):
            f.seek(i * CHUNK)
            f.write(b"changed %d" % i)
    expected_b = path.read_bytes()
    repo.snapshot_file(path, "b", parent="a")
    before = set(_packs(repo))
    reader = repo.open_reader("b")  # holds locations from before GC
    repo.delete_snapshot("a")
    assert repo.gc(grace=0, dry_run=True).chunks_deleted == 6
    report = repo.gc(grace=0)
    assert report.chunks_deleted == 6 and report.bytes_freed > 0
    after = set(_packs(repo))
    assert len(before - after) == 1 and len(after - before) == 1  # a's pack rewritten
    assert len(repo.chunks.inventory().sizes) == 8
    assert reader.read(0, 4 * MiB) == expected_b  # relocated chunks are found again
    fresh = Repository(repo.backend)
    assert fresh.read("b", 0, 4 * MiB) == expected_b
    assert fresh.check(read_data=True).ok
    repo.delete_snapshot("b")
    assert repo.gc(grace=0).chunks_deleted == 8
    assert _packs(repo) == []
    del expected


def test_gc_keeps_pack_that_a_new_snapshot_references(image: ImageFactory) -> None:
    """Phase 2 re-reads manifests completed after the scan: their chunks are kept."""
    repo = Repository(MemoryBackend())
    path, expected = image(2 * MiB, ranges=[(0, 2 * MiB)])
    repo.snapshot_file(path, "a")
    repo.delete_snapshot("a")
    plan_referenced: set[bytes] = set()
    plan = repo.chunks.plan_gc(plan_referenced, cutoff=1e12)  # phase 1: the pack is dead
    assert len(plan.delete) == 1
    repo.snapshot_file(path, "b")  # reuses the chunks (writer runs between the phases)
    done = repo.chunks.execute_gc(plan, set(repo.manifest("b").entries.values()))
    assert done.delete == {} and done.chunks_deleted == 0
    assert repo.read("b", 0, 2 * MiB) == expected


def test_loose_repository_keeps_working(image: ImageFactory, tmp_path: Path) -> None:
    """A format-1 repository (one file per chunk) is read, written and collected as before."""
    repo = Repository.open(tmp_path / "repo", layout="loose")
    path, expected = image(2 * MiB, ranges=[(0, 2 * MiB)])
    repo.snapshot_file(path, "a")
    reopened = Repository.open(tmp_path / "repo")  # default layout does not convert it
    assert reopened.config.version == 1 and not isinstance(reopened.chunks, PackedChunks)
    reopened.snapshot_file(path, "b", parent="a")
    assert not (tmp_path / "repo" / "packs").exists()
    assert len(list((tmp_path / "repo" / "chunks").rglob("*"))) > 4
    assert reopened.read("b", 0, 2 * MiB) == expected
    assert reopened.check(read_data=True).ok


def test_duplicate_chunk_found_after_its_indexed_pack_vanishes() -> None:
    """Two writers may store one chunk twice; losing one copy must not lose the chunk."""
    backend = MemoryBackend()
    store = PackedChunks(backend, pack_size=1 * MiB, max_record=CHUNK + 12)
    for _ in range(2):  # the same record in two packs, as racing writers would leave it
        session = store.session()
        session.put(b"d" * 32, b"head", b"payload")
        session.flush()
    first, second = sorted(i.name for i in backend.list("packs/"))
    reader = PackedChunks(backend, pack_size=1 * MiB, max_record=CHUNK + 12)
    where = reader.locate(b"d" * 32) if reader.contains(b"d" * 32) else None
    assert where is not None
    backend.delete(where[0])  # e.g. GC rewrote that pack
    reader.refresh()  # forgets the vanished pack (and with it the chunk's only index entry)
    assert reader.get(b"d" * 32) == b"headpayload"  # found in the other pack
    assert reader.locate(b"d" * 32) is not None
    assert {first, second} - {where[0]}


def test_restore_hints_the_packs_it_reads_next(image: ImageFactory, tmp_path: Path) -> None:
    backend = MemoryBackend()
    hints: list[tuple[str, int, int]] = []
    backend.prefetch = lambda name, off, n: hints.append((name, off, n))  # type: ignore[method-assign]
    repo = Repository(backend, pack_size=1 * MiB)
    path, expected = image(8 * MiB, ranges=[(0, 8 * MiB)], compressible=False)
    repo.snapshot_file(path, "snap-1")
    repo.restore("snap-1", tmp_path / "out.raw")
    assert (tmp_path / "out.raw").read_bytes() == expected
    assert {name for name, _o, _n in hints} == set(_packs(repo))  # every pack, ahead of reads
    assert all(n > 0 for _name, _o, n in hints)


def test_failed_pack_write_fails_the_session_without_hanging() -> None:
    faulty = FaultyBackend(MemoryBackend(), fail_put_prefix="packs/")
    store = PackedChunks(faulty, pack_size=100, max_record=CHUNK + 12)
    session = store.session()
    session.put(b"a" * 32, b"h", b"x" * 90)  # buffered
    done = threading.Event()
    errors: list[BaseException] = []

    def put_now() -> None:  # overflows the pack (sealed: fails) and seals its own at once
        try:
            session.put(b"b" * 32, b"h", b"y" * 90, now=True)
        except BackendError as exc:
            errors.append(exc)
        done.set()

    threading.Thread(target=put_now, daemon=True).start()
    assert done.wait(10) and errors
    with pytest.raises(BackendError):  # returns (no wait for a pack never written) and fails
        session.flush()
    with pytest.raises(BackendError):
        session.put(b"c" * 32, b"h", b"z")
    session.close()
    assert list(faulty.list("packs/")) == []
    assert not store.contains(b"a" * 32) and not store.contains(b"b" * 32)
