"""Snapshot, restore, random reads, diff and the streaming writer."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from store_helpers import CHUNK, ImageFactory, MiB, holes

from goldsmith.store import Repository
from goldsmith.store.backend import Backend
from goldsmith.store.errors import (
    LineageError,
    SnapshotExistsError,
    SnapshotNotFoundError,
)
from goldsmith.store.formats import chunk_name
from goldsmith.store.memory import MemoryBackend


def stored_chunks(repo: Repository) -> set[bytes]:
    return set(repo.chunks.inventory().sizes)


def test_full_snapshot_restores_byte_equal_and_sparse(
    backend: Backend, image: ImageFactory, tmp_path: Path
) -> None:
    repo = Repository(backend)
    path, expected = image(8 * MiB)
    info = repo.snapshot_file(path, "snap-1")
    # data at chunk 0, chunk 2-3 (straddling), and the last chunk: 4 non-zero chunks
    assert info.data_chunks == 4
    assert info.chunks_written == 4
    assert len(stored_chunks(repo)) == 4
    out = tmp_path / "restored.raw"
    repo.restore("snap-1", out)
    assert out.read_bytes() == expected
    extents = holes(out)
    # every zero chunk is a hole: only the written chunks hold data
    allocated = sum(e - s for s, e in extents)
    assert allocated <= 4 * CHUNK
    assert os.stat(out).st_blocks * 512 <= 4 * CHUNK + 64 * 1024


def test_zero_and_identical_chunks_not_stored_twice(image: ImageFactory) -> None:
    backend = MemoryBackend()
    repo = Repository(backend)
    path, _ = image(4 * MiB, ranges=[(0, CHUNK)])
    with open(path, "r+b") as f:  # chunk 2 = copy of chunk 0, chunk 3 explicitly zeros
        f.seek(2 * CHUNK)
        f.write(path.read_bytes()[:CHUNK])
        f.seek(3 * CHUNK)
        f.write(bytes(CHUNK))
    info = repo.snapshot_file(path, "snap-a")
    assert info.data_chunks == 2
    assert info.chunks_written == 1
    again = repo.snapshot_file(path, "snap-b")
    assert again.chunks_written == 0
    assert len(stored_chunks(repo)) == 1


def test_incompressible_chunk_stored_raw_and_compressible_compressed(image: ImageFactory) -> None:
    backend = MemoryBackend()
    repo = Repository(backend)
    rnd_path, _ = image(CHUNK, ranges=[(0, CHUNK)], compressible=False)
    info = repo.snapshot_file(rnd_path, "snap-r")
    assert CHUNK < info.bytes_written <= CHUNK + 64
    txt_path, _ = image(CHUNK, ranges=[(0, CHUNK)], compressible=True, seed=5)
    info = repo.snapshot_file(txt_path, "snap-t")
    assert info.bytes_written < CHUNK // 2


def test_size_not_multiple_of_chunk_and_empty_file(image: ImageFactory, tmp_path: Path) -> None:
    repo = Repository(MemoryBackend())
    path, expected = image(3 * CHUNK + 777, ranges=[(3 * CHUNK, 777)])
    repo.snapshot_file(path, "snap-odd")
    out = tmp_path / "odd.raw"
    repo.restore("snap-odd", out)
    assert out.read_bytes() == expected
    empty = tmp_path / "empty.raw"
    empty.write_bytes(b"")
    info = repo.snapshot_file(empty, "snap-empty")
    assert (info.size, info.data_chunks) == (0, 0)
    repo.restore("snap-empty", out)
    assert out.read_bytes() == b""


def test_parent_without_change_map_dedups_unchanged(image: ImageFactory, tmp_path: Path) -> None:
    repo = Repository(MemoryBackend())
    path, _ = image(8 * MiB, ranges=[(0, 8 * MiB)])
    repo.snapshot_file(path, "snap-1")
    with open(path, "r+b") as f:
        f.seek(5 * CHUNK + 10)
        f.write(b"changed!")
        f.seek(7 * CHUNK)  # punch: this chunk becomes zero
        f.write(bytes(CHUNK))
    info = repo.snapshot_file(path, "snap-2", parent="snap-1")
    assert info.chunks_written == 1
    assert info.data_chunks == 15
    assert repo.diff("snap-1", "snap-2") == [5, 7]
    out = tmp_path / "r.raw"
    repo.restore("snap-2", out)
    assert out.read_bytes() == path.read_bytes()


def test_change_map_reads_only_changed_ranges(image: ImageFactory, tmp_path: Path) -> None:
    repo = Repository(MemoryBackend())
    path, _ = image(8 * MiB, ranges=[(0, 8 * MiB)])
    repo.snapshot_file(path, "snap-1")
    with open(path, "r+b") as f:
        f.seek(3 * CHUNK - 2)  # straddles chunks 2 and 3
        f.write(b"XXXX")
        f.seek(6 * CHUNK)  # chunk 6 becomes zero
        f.write(bytes(CHUNK))
    ranges = [(3 * CHUNK - 2, 4), (6 * CHUNK, CHUNK)]
    info = repo.snapshot_file(path, "snap-2", parent="snap-1", changed_ranges=ranges)
    assert info.chunks_hashed == 2  # chunk 6 read as zero: not hashed
    assert info.chunks_written == 2
    assert repo.diff("snap-1", "snap-2") == [2, 3, 6]
    out = tmp_path / "r.raw"
    repo.restore("snap-2", out)
    assert out.read_bytes() == path.read_bytes()


def test_change_map_with_grown_disk_reads_new_tail(image: ImageFactory, tmp_path: Path) -> None:
    repo = Repository(MemoryBackend())
    path, _ = image(2 * CHUNK + 100, ranges=[(0, 2 * CHUNK + 100)])
    repo.snapshot_file(path, "snap-1")
    with open(path, "ab") as f:
        f.write(b"tail" * 200_000)  # old short chunk 2 grows, chunk 3 is new
    info = repo.snapshot_file(path, "snap-2", parent="snap-1", changed_ranges=[])
    assert info.chunks_hashed == 2  # the short old last chunk and the new one
    out = tmp_path / "r.raw"
    repo.restore("snap-2", out)
    assert out.read_bytes() == path.read_bytes()


def test_change_map_requires_parent(image: ImageFactory) -> None:
    repo = Repository(MemoryBackend())
    path, _ = image()
    with pytest.raises(ValueError):
        repo.snapshot_file(path, "snap-1", changed_ranges=[(0, 1)])


def test_duplicate_and_invalid_ids(image: ImageFactory) -> None:
    repo = Repository(MemoryBackend())
    path, _ = image()
    repo.snapshot_file(path, "snap-1")
    with pytest.raises(SnapshotExistsError):
        repo.snapshot_file(path, "snap-1")
    for bad in ["", "../x", "a/b", ".hidden", "x" * 200]:
        with pytest.raises(ValueError):
            repo.snapshot_file(path, bad)
    with pytest.raises(SnapshotNotFoundError):
        repo.snapshot_file(path, "snap-2", parent="snap-missing")
    assert repo.list_snapshots() == ["snap-1"]
    # the failed attempt released its writer lock
    assert list(repo.backend.list("locks/")) == []


def test_progress_reaches_total(image: ImageFactory) -> None:
    repo = Repository(MemoryBackend())
    path, _ = image(8 * MiB)
    seen: list[tuple[int, int]] = []
    repo.snapshot_file(path, "snap-1", progress=lambda d, t: seen.append((d, t)))
    assert seen[-1] == (8 * MiB, 8 * MiB)
    assert [d for d, _ in seen] == sorted(d for d, _ in seen)
    restored: list[tuple[int, int]] = []
    repo.restore("snap-1", path.with_suffix(".out"), progress=lambda d, t: restored.append((d, t)))
    assert restored[-1] == (8 * MiB, 8 * MiB)


_read_repo: dict[str, tuple[Repository, bytes]] = {}


def _reads_fixture(tmp: Path) -> tuple[Repository, bytes]:
    if "r" not in _read_repo:
        from store_helpers import write_image

        path = tmp / "reads.raw"
        content = write_image(path, 3 * CHUNK + 1234, [(100, CHUNK), (2 * CHUNK + 5, 9000)])
        repo = Repository(MemoryBackend())
        repo.snapshot_file(path, "snap-r")
        _read_repo["r"] = (repo, content)
    return _read_repo["r"]


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.data())
def test_random_reads_across_chunk_boundaries(tmp_path: Path, data: st.DataObject) -> None:
    repo, content = _reads_fixture(tmp_path)
    size = len(content)
    offset = data.draw(st.integers(0, size))
    length = data.draw(st.integers(0, min(size - offset, 2 * CHUNK + 10)))
    assert repo.read("snap-r", offset, length) == content[offset : offset + length]


def test_read_bounds_and_blocks(image: ImageFactory) -> None:
    repo = Repository(MemoryBackend())
    path, expected = image(2 * CHUNK, ranges=[(0, 2 * CHUNK)])
    repo.snapshot_file(path, "snap-1")
    with pytest.raises(ValueError):
        repo.read("snap-1", 2 * CHUNK - 1, 2)
    assert repo.read_block("snap-1", 1) == expected[CHUNK:]
    reader = repo.open_reader("snap-1")
    assert reader.read(CHUNK - 3, 6) == expected[CHUNK - 3 : CHUNK + 3]


def test_streaming_writer_inherits_parent(image: ImageFactory) -> None:
    repo = Repository(MemoryBackend())
    path, expected = image(4 * CHUNK, ranges=[(0, 4 * CHUNK)])
    repo.snapshot_file(path, "snap-1")
    block = bytes([7]) * CHUNK
    with repo.open_writer("snap-2", 4 * CHUNK, parent="snap-1") as w:
        w.write_block(2, block)
        w.write_block(3, bytes(CHUNK))
        with pytest.raises(ValueError):
            w.write_block(4, block)
        with pytest.raises(ValueError):
            w.write_block(1, b"short")
        info = w.complete()
    assert info.parent == "snap-1"
    assert repo.read("snap-2", 0, 4 * CHUNK) == expected[: 2 * CHUNK] + block + bytes(CHUNK)
    assert repo.diff("snap-1", "snap-2") == [2, 3]
    assert repo.diff(None, "snap-2") == [0, 1, 2]


def test_aborted_writer_leaves_no_snapshot() -> None:
    repo = Repository(MemoryBackend())
    with repo.open_writer("snap-x", 2 * CHUNK) as w:
        w.write_block(0, b"\x01" * CHUNK)
    assert not repo.exists("snap-x")
    assert list(repo.backend.list("locks/")) == []
    with repo.open_writer("snap-x", 2 * CHUNK) as w:  # retry with the same id works
        w.write_block(0, b"\x01" * CHUNK)
        w.complete()
    assert repo.read("snap-x", 0, 2) == b"\x01\x01"


def test_diff_requires_lineage(image: ImageFactory) -> None:
    repo = Repository(MemoryBackend())
    path, _ = image()
    repo.snapshot_file(path, "a")
    repo.snapshot_file(path, "b", parent="a")
    repo.snapshot_file(path, "c", parent="b")
    repo.snapshot_file(path, "other")
    assert repo.diff("a", "c") == []
    assert repo.diff("c", "a") == []
    with pytest.raises(LineageError):
        repo.diff("a", "other")
    assert repo.diff("a", "other", require_lineage=False) == []


def test_delete_snapshot_keeps_children_readable(image: ImageFactory) -> None:
    repo = Repository(MemoryBackend())
    path, expected = image()
    repo.snapshot_file(path, "a")
    repo.snapshot_file(path, "b", parent="a")
    repo.delete_snapshot("a")
    with pytest.raises(SnapshotNotFoundError):
        repo.delete_snapshot("a")
    assert repo.read("b", 0, len(expected)) == expected
    assert repo.ancestors("b") == []


def test_qcow2_image(image: ImageFactory, tmp_path: Path) -> None:
    repo = Repository(MemoryBackend())
    path, expected = image(4 * MiB)
    qcow = tmp_path / "disk.qcow2"
    subprocess.run(["qemu-img", "convert", "-O", "qcow2", str(path), str(qcow)], check=True)
    info = repo.snapshot_file(qcow, "snap-q")
    assert info.size == 4 * MiB
    assert repo.read("snap-q", 0, len(expected)) == expected


@pytest.mark.parametrize("layout", ["packs", "loose"])
def test_local_repository_reopens(image: ImageFactory, tmp_path: Path, layout: str) -> None:
    path, expected = image()
    Repository.open(tmp_path / "repo", layout=layout).snapshot_file(path, "snap-1")
    repo = Repository.open(tmp_path / "repo", create=False, layout="packs")  # kept: loose
    assert repo.config.layout == layout
    assert repo.read("snap-1", 0, len(expected)) == expected
    d = repo.manifest("snap-1").entries[0]
    if layout == "loose":  # format 1: one file per chunk
        assert (tmp_path / "repo" / chunk_name(d)).is_file()
    else:  # format 2: every chunk of this small disk in one pack file
        [pack] = [p for p in (tmp_path / "repo" / "packs").rglob("*") if p.is_file()]
        assert repo.chunks.location(d) == str(pack.relative_to(tmp_path / "repo"))
        assert not (tmp_path / "repo" / "chunks").exists()
