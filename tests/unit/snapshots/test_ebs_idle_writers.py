"""Idle EBS upload writers release their store lock, so GC never waits on an idle upload."""

from __future__ import annotations

import base64
import hashlib
import time

from snapshot_helpers import ctx_for

from goldsmith.service.app import Services

BLOCK = 512 * 1024


def test_idle_writer_releases_lock_and_upload_resumes(services: Services) -> None:
    ctx = ctx_for(services)
    ebs = services.ebs
    sid = ebs.start_snapshot(ctx, {"VolumeSize": 1})["SnapshotId"]
    data = b"\x07" * BLOCK
    checksum = base64.b64encode(hashlib.sha256(data).digest()).decode()
    block = {
        "SnapshotId": sid,
        "BlockData": data,
        "DataLength": BLOCK,
        "Checksum": checksum,
        "ChecksumAlgorithm": "SHA256",
    }
    ebs.put_snapshot_block(ctx, {**block, "BlockIndex": 0})
    repo = services.snapshots.repository(ctx.region)
    assert repo.locks.locks(), "an active upload holds a writer lock"
    assert ebs.release_idle(3600) == 0  # not idle yet
    time.sleep(0.05)
    assert ebs.release_idle(0.01) == 1
    assert repo.locks.locks() == []  # GC could run now
    repo.gc(grace=3600)  # and does, without waiting for the upload
    ebs.put_snapshot_block(ctx, {**block, "BlockIndex": 1})  # the upload resumes
    done = ebs.complete_snapshot(ctx, {"SnapshotId": sid, "ChangedBlocksCount": 2})
    assert done["Status"] == "completed"
    assert repo.read(sid, 0, 4) == b"\x07" * 4 and repo.read(sid, BLOCK, 4) == b"\x07" * 4
