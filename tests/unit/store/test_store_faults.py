"""Bad input and faults: corruption, disk full, kill -9 of a real writer process."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from store_helpers import CHUNK, ImageFactory, MiB

from goldsmith.store import (
    CorruptionError,
    LocalBackend,
    MemoryBackend,
    Repository,
    StoreFullError,
)
from goldsmith.store.chunks import PackedChunks
from goldsmith.store.formats import chunk_name
from goldsmith.store.testing import FaultyBackend


def _repo_with_snapshot(
    tmp_path: Path, image: ImageFactory, layout: str = "packs"
) -> tuple[Repository, Path, bytes]:
    # pack_size=1: every pack holds one chunk, so damage to a pack hits exactly one chunk
    repo = Repository.open(tmp_path / "repo", layout=layout, pack_size=1)
    path, expected = image(4 * MiB, ranges=[(0, 4 * MiB)])
    repo.snapshot_file(path, "snap-1")
    return repo, tmp_path / "repo", expected


def _damage(repo: Repository, root: Path, index: int, damage: str) -> None:
    """Damage the stored record of chunk ``index`` of snap-1 (in its file or its pack)."""
    d = repo.manifest("snap-1").entries[index]
    if repo.config.layout == "loose":
        f, off, length = root / chunk_name(d), 0, (root / chunk_name(d)).stat().st_size
    else:
        assert isinstance(repo.chunks, PackedChunks)
        where = repo.chunks.locate(d)
        assert where is not None
        f, off, length = root / where[0], where[1], where[2]
    if damage == "flip":
        blob = bytearray(f.read_bytes())
        blob[off + length // 2] ^= 0x40
        f.write_bytes(bytes(blob))
    elif damage == "truncate":
        f.write_bytes(f.read_bytes()[:100])
    else:
        f.unlink()


DAMAGE = [("loose", "flip"), ("loose", "truncate"), ("loose", "delete"), ("packs", "flip"),
          ("packs", "delete")]  # fmt: skip


@pytest.mark.parametrize(("layout", "damage"), DAMAGE)
def test_damaged_chunk_is_an_error_naming_snapshot_and_offset(
    tmp_path: Path, image: ImageFactory, layout: str, damage: str
) -> None:
    repo, root, expected = _repo_with_snapshot(tmp_path, image, layout)
    _damage(repo, root, 2, damage)
    assert repo.read("snap-1", 0, CHUNK) == expected[:CHUNK]  # other chunks still fine
    with pytest.raises(CorruptionError) as info:
        repo.read("snap-1", 2 * CHUNK + 10, 100)
    assert (info.value.snapshot_id, info.value.offset) == ("snap-1", 2 * CHUNK)
    assert "snap-1" in str(info.value)
    assert str(2 * CHUNK) in str(info.value)
    out = tmp_path / "out.raw"
    with pytest.raises(CorruptionError):
        repo.restore("snap-1", out)
    assert not out.exists()  # no half-restored file pretending to be the disk
    report = repo.check(read_data=True)
    assert not report.ok
    [issue] = report.issues
    assert issue.kind == ("missing-chunk" if damage == "delete" else "corrupt-chunk")
    assert issue.affected == (("snap-1", 2 * CHUNK),)
    assert (repo.check().ok) is (damage != "delete")  # structure check sees only missing


def test_truncated_pack_is_reported_and_its_chunks_missing(
    tmp_path: Path, image: ImageFactory
) -> None:
    repo, root, expected = _repo_with_snapshot(tmp_path, image, "packs")
    assert isinstance(repo.chunks, PackedChunks)
    where = repo.chunks.locate(repo.manifest("snap-1").entries[5])
    assert where is not None
    pack = root / where[0]
    pack.write_bytes(pack.read_bytes()[:-10])  # the index footer is gone
    fresh = Repository.open(root, create=False)  # a new process: must read pack indexes
    with pytest.raises(CorruptionError) as info:
        fresh.read("snap-1", 5 * CHUNK, 10)
    assert info.value.offset == 5 * CHUNK
    assert fresh.read("snap-1", 0, CHUNK) == expected[:CHUNK]
    issues = fresh.check().issues
    assert {i.kind for i in issues} == {"corrupt-pack", "missing-chunk"}
    assert [i.affected for i in issues if i.kind == "missing-chunk"] == [(("snap-1", 5 * CHUNK),)]
    assert any(i.blob == where[0] for i in issues)
    fresh.delete_snapshot("snap-1")
    fresh.gc(grace=0)
    assert pack.exists()  # GC never deletes a pack it cannot read


@pytest.mark.parametrize("layout", ["loose", "packs"])
def test_damaged_chunk_reports_every_affected_snapshot(
    tmp_path: Path, image: ImageFactory, layout: str
) -> None:
    repo, root, _ = _repo_with_snapshot(tmp_path, image, layout)
    path, _ = image(4 * MiB, ranges=[(0, 4 * MiB)])
    repo.snapshot_file(path, "snap-2", parent="snap-1")  # same content: shares every chunk
    _damage(repo, root, 1, "delete")
    [issue] = repo.check().issues
    assert issue.affected == (("snap-1", CHUNK), ("snap-2", CHUNK))
    assert "snap-1" in issue.message and "snap-2" in issue.message


@pytest.mark.parametrize("damage", ["flip", "truncate"])
def test_damaged_manifest(tmp_path: Path, image: ImageFactory, damage: str) -> None:
    repo, root, _ = _repo_with_snapshot(tmp_path, image)
    f = root / "snapshots" / "snap-1"
    blob = bytearray(f.read_bytes())
    if damage == "flip":
        blob[40] ^= 1
    else:
        del blob[-50:]
    f.write_bytes(bytes(blob))
    with pytest.raises(CorruptionError) as info:
        repo.read("snap-1", 0, 10)
    assert info.value.snapshot_id == "snap-1"
    report = repo.check()
    assert [i.kind for i in report.issues] == ["manifest"]
    with pytest.raises(CorruptionError):  # GC deletes nothing when in doubt
        repo.gc(grace=0)
    assert len(repo.chunks.inventory().sizes) == 8


def test_disk_full_is_clean_and_retry_works(image: ImageFactory) -> None:
    faulty = FaultyBackend(MemoryBackend())
    repo = Repository(faulty)
    path, expected = image(4 * MiB, ranges=[(0, 4 * MiB)], compressible=False)
    faulty.space = 3 * CHUNK  # room for a few chunks, not all eight
    with pytest.raises(StoreFullError):
        repo.snapshot_file(path, "snap-1")
    assert not repo.exists("snap-1")
    assert list(faulty.list("locks/")) == []
    assert repo.check(read_data=True).ok
    faulty.space = None  # space freed
    repo.snapshot_file(path, "snap-1")
    assert repo.read("snap-1", 0, 4 * MiB) == expected
    assert repo.check(read_data=True).ok


def test_backend_failure_mid_manifest_leaves_nothing(image: ImageFactory) -> None:
    faulty = FaultyBackend(MemoryBackend())
    repo = Repository(faulty)
    path, _ = image(2 * MiB, ranges=[(0, 2 * MiB)])
    faulty.fail_put_prefix = "snapshots/"  # chunks and locks are stored; the manifest fails
    with pytest.raises(Exception, match="injected"):
        repo.snapshot_file(path, "snap-1")
    assert not repo.exists("snap-1")
    assert list(faulty.list("locks/")) == []
    faulty.fail_put_prefix = None
    assert repo.snapshot_file(path, "snap-1").chunks_written == 0  # chunks reused


_KILLER = """
import os, signal, sys
from goldsmith.store import LocalBackend, Repository
func, k, repo, image = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
direct = len(sys.argv) < 6 or sys.argv[5] == "direct"
real, calls = getattr(os, func), [0]
def hook(*args, **kwargs):
    calls[0] += 1
    if calls[0] == k:
        os.kill(os.getpid(), signal.SIGKILL)
    return real(*args, **kwargs)
setattr(os, func, hook)
backend = LocalBackend(repo, direct=direct)
Repository(backend, workers=1, pack_size=PACK).snapshot_file(image, "snap-1")
"""
# two incompressible 512 KiB chunks per pack: the 8-chunk disk makes four packs
PACK = 2 * (CHUNK + 12)
_KILLER = _KILLER.replace("PACK", str(PACK))

# (os function, call number at which the process kills itself with SIGKILL, how packs are
# written). With a fresh repository, renames are: 1 config, 2 writer lock, 3-6 packs, 7 lock
# refresh, 8 manifest; fsyncs: 1 config, 2 its directory, 3 lock, 4-7 packs (each before its
# rename). Packs (> 1 MiB) are written with O_DIRECT by default: two pwrites each (the first
# aligned MiB, then the padded tail), so pwrite 4 dies in the middle of the second pack.
# Through the page cache ("buffered") a pack is one write per part (records, index, footer:
# writes 3-5, 6-8, ...), so write 7 dies in its middle too. fsync 5 dies with the second pack
# written but neither fsynced nor renamed.
KILL_POINTS = [("rename", 1, "direct"), ("rename", 2, "direct"), ("rename", 4, "direct"),
               ("fsync", 5, "direct"), ("pwrite", 4, "direct"), ("write", 7, "buffered"),
               ("fsync", 5, "buffered"), ("rename", 7, "direct"),
               ("rename", 8, "direct")]  # fmt: skip


@pytest.mark.parametrize(("func", "k", "mode"), KILL_POINTS)
def test_kill_9_during_snapshot_then_check_and_retry(
    tmp_path: Path, image: ImageFactory, func: str, k: int, mode: str
) -> None:
    path, expected = image(4 * MiB, ranges=[(0, 4 * MiB)], compressible=False)
    root = tmp_path / "repo"
    proc = subprocess.run(
        [sys.executable, "-c", _KILLER, func, str(k), str(root), str(path), mode],
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr.decode()
    repo = Repository.open(root)
    assert not repo.exists("snap-1")  # nothing partial is visible
    report = repo.check(read_data=True)
    assert report.ok, report.issues
    info = repo.snapshot_file(path, "snap-1")  # retry
    assert repo.read("snap-1", 0, 4 * MiB) == expected
    assert info.data_chunks == 8
    assert repo.check(read_data=True).ok
    repo.gc(grace=0)  # the dead writer's lock and temp files do not block or survive GC
    assert not [p for p in root.rglob(".tmp-*")]
    assert list(repo.backend.list("locks/")) == []
    assert repo.read("snap-1", 0, 4 * MiB) == expected


def test_local_backend_really_leaves_temp_files_on_kill(
    tmp_path: Path, image: ImageFactory
) -> None:
    path, _ = image(4 * MiB, ranges=[(0, 4 * MiB)], compressible=False)
    root = tmp_path / "repo"
    subprocess.run(
        [sys.executable, "-c", _KILLER, "rename", "5", str(root), str(path)],
        timeout=60,
        check=False,
    )
    # killed between writing + fsyncing the third pack and renaming it
    temps = list(root.rglob(".tmp-*"))
    assert len(temps) == 1  # the interrupted put: invisible to the repository
    assert temps[0].stat().st_size > 2 * CHUNK  # the whole pack was written, not renamed
    packs = [p for p in (root / "packs").rglob("*") if p.is_file() and p not in temps]
    assert len(packs) == 2
    repo = Repository.open(root)
    assert len(repo.chunks.inventory().sizes) == 4  # only the renamed packs' chunks exist
    assert repo.check(read_data=True).ok
    assert repo.snapshot_file(path, "snap-1").chunks_written == 4  # the rest is reused
    assert LocalBackend(root).purge_incomplete(0) == 1
    assert not (root / "snapshots").exists() or os.listdir(root / "snapshots") == ["snap-1"]
