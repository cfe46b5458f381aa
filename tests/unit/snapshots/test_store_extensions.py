"""Repository.copy_snapshot and Repository.resume_writer (added for the snapshot APIs)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from goldsmith.store import Repository, SnapshotExistsError
from goldsmith.store.formats import digest

BLOCK = 512 * 1024


def test_copy_snapshot_is_a_new_manifest_over_the_same_chunks(tmp_path: Path) -> None:
    repo = Repository.open(tmp_path / "store")
    data = os.urandom(BLOCK)
    with repo.open_writer("snap-a", 3 * BLOCK) as w:
        w.write_block(1, data)
        w.complete()
    before = repo.usage().stored
    copy = repo.copy_snapshot("snap-a", "snap-b")
    assert copy.parent == "snap-a"
    assert repo.read("snap-b", 0, 3 * BLOCK) == repo.read("snap-a", 0, 3 * BLOCK)
    assert repo.diff("snap-a", "snap-b") == []
    assert repo.usage().stored == before  # no chunk written
    with pytest.raises(SnapshotExistsError):
        repo.copy_snapshot("snap-a", "snap-b")
    repo.delete_snapshot("snap-a")
    assert repo.read("snap-b", BLOCK, BLOCK) == data


def test_resume_writer_rebuilds_from_recorded_blocks(tmp_path: Path) -> None:
    repo = Repository.open(tmp_path / "store")
    one, two = os.urandom(BLOCK), os.urandom(BLOCK)
    with repo.open_writer("snap-p", 4 * BLOCK) as w:
        w.write_block(0, one)
        w.write_block(3, one)
        w.complete()
    w = repo.open_writer("snap-c", 4 * BLOCK, parent="snap-p")
    w.write_block(1, two)
    w.abort()  # the server died: nothing visible, the chunk stays stored
    blocks = {1: digest(two), 3: None, 2: digest(os.urandom(BLOCK))}  # 2: never stored
    writer, missing = repo.resume_writer("snap-c", 4 * BLOCK, blocks, parent="snap-p")
    assert missing == [2]
    with writer:
        writer.complete()
    got = repo.read("snap-c", 0, 4 * BLOCK)
    assert got == one + two + bytes(BLOCK) + bytes(BLOCK)
