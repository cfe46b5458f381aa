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
from goldsmith.store.formats import chunk_name
from goldsmith.store.testing import FaultyBackend


def _repo_with_snapshot(tmp_path: Path, image: ImageFactory) -> tuple[Repository, Path, bytes]:
    repo = Repository.open(tmp_path / "repo")
    path, expected = image(4 * MiB, ranges=[(0, 4 * MiB)])
    repo.snapshot_file(path, "snap-1")
    return repo, tmp_path / "repo", expected


def _chunk_file(repo: Repository, root: Path, index: int) -> Path:
    return root / chunk_name(repo.manifest("snap-1").entries[index])


@pytest.mark.parametrize("damage", ["flip", "truncate", "delete"])
def test_damaged_chunk_is_an_error_naming_snapshot_and_offset(
    tmp_path: Path, image: ImageFactory, damage: str
) -> None:
    repo, root, expected = _repo_with_snapshot(tmp_path, image)
    f = _chunk_file(repo, root, 2)
    if damage == "flip":
        blob = bytearray(f.read_bytes())
        blob[len(blob) // 2] ^= 0x40
        f.write_bytes(bytes(blob))
    elif damage == "truncate":
        f.write_bytes(f.read_bytes()[:100])
    else:
        f.unlink()
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


def test_damaged_chunk_reports_every_affected_snapshot(tmp_path: Path, image: ImageFactory) -> None:
    repo, root, _ = _repo_with_snapshot(tmp_path, image)
    path, _ = image(4 * MiB, ranges=[(0, 4 * MiB)])
    repo.snapshot_file(path, "snap-2", parent="snap-1")  # same content: shares every chunk
    _chunk_file(repo, root, 1).unlink()
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
    assert len(list(repo.backend.list("chunks/"))) == 8


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
    faulty.fail_put_after = faulty.puts + 1 + 4 + 1  # lock, 4 chunks, lock refresh; not manifest
    with pytest.raises(Exception, match="injected"):
        repo.snapshot_file(path, "snap-1")
    assert not repo.exists("snap-1")
    faulty.fail_put_after = None
    assert repo.snapshot_file(path, "snap-1").chunks_written == 0  # chunks reused


_KILLER = """
import os, signal, sys
from goldsmith.store import Repository
func, k, repo, image = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
real, calls = getattr(os, func), [0]
def hook(*args, **kwargs):
    calls[0] += 1
    if calls[0] == k:
        os.kill(os.getpid(), signal.SIGKILL)
    return real(*args, **kwargs)
setattr(os, func, hook)
Repository.open(repo, workers=1).snapshot_file(image, "snap-1")
"""

# (os function, call number at which the process kills itself with SIGKILL). With a fresh
# repository, renames are: 1 config, 2 writer lock, 3-10 chunks, 11 lock refresh, 12 manifest.
KILL_POINTS = [("rename", 1), ("rename", 2), ("rename", 5), ("fsync", 7), ("write", 9),
               ("rename", 11), ("rename", 12)]  # fmt: skip


@pytest.mark.parametrize(("func", "k"), KILL_POINTS)
def test_kill_9_during_snapshot_then_check_and_retry(
    tmp_path: Path, image: ImageFactory, func: str, k: int
) -> None:
    path, expected = image(4 * MiB, ranges=[(0, 4 * MiB)], compressible=False)
    root = tmp_path / "repo"
    proc = subprocess.run(
        [sys.executable, "-c", _KILLER, func, str(k), str(root), str(path)],
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
    temps = list(root.rglob(".tmp-*"))
    assert len(temps) == 1  # the interrupted put: invisible to the repository
    assert LocalBackend(root).purge_incomplete(0) == 1
    assert not (root / "snapshots").exists() or os.listdir(root / "snapshots") == []
