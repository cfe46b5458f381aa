"""``goldsmith snapshots`` against a real server: upload (raw, qcow2, resumed), download."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from goldsmith.cli.snapshots_cmd import _token
from harness import Creds, Server

pytestmark = pytest.mark.integration

BLOCK = 512 * 1024
MIB = 1024 * 1024


def run(server: Server, creds: Creds, *args: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "AWS_ACCESS_KEY_ID": creds.access_key_id,
        "AWS_SECRET_ACCESS_KEY": creds.secret_access_key,
    }
    cmd = [sys.executable, "-m", "goldsmith", "snapshots", *args, "--endpoint", server.endpoint]
    done = subprocess.run(cmd, check=False, capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    return done


def make_disk(path: Path, size: int = 6 * MIB) -> bytes:
    """A sparse disk: data in blocks 0, 3 (partly) and the last one; zeros elsewhere."""
    content = bytearray(size)
    content[0:BLOCK] = os.urandom(BLOCK)
    content[3 * BLOCK + 100 : 3 * BLOCK + 5000] = os.urandom(4900)
    content[size - 4096 :] = os.urandom(4096)
    with open(path, "wb") as f:
        f.truncate(size)
        for start, end in ((0, BLOCK), (3 * BLOCK, 4 * BLOCK), (size - BLOCK, size)):
            f.seek(start)
            f.write(content[start:end])
    return bytes(content)


def read_back(path: Path, length: int) -> bytes:
    """The first ``length`` bytes of a downloaded disk; the rest must be a hole."""
    with open(path, "rb") as f:
        data = f.read(length)
        fd = f.fileno()
        size = os.fstat(fd).st_size
        with contextlib.suppress(OSError):  # ENXIO: no data after the disk's end
            assert os.lseek(fd, -(-length // BLOCK) * BLOCK, os.SEEK_DATA) >= size
    return data


def test_upload_download_round_trip_and_manage(
    server: Server, account: Creds, tmp_path: Path
) -> None:
    disk = tmp_path / "disk.raw"
    content = make_disk(disk)
    out = json.loads(
        run(server, account, "upload", str(disk), "--description", "d", "--json").stdout
    )
    sid = out["SnapshotId"]
    assert out["BlocksSent"] == 3
    again = json.loads(
        run(server, account, "upload", str(disk), "--description", "d", "--json").stdout
    )
    assert again["SnapshotId"] == sid and again["BlocksSent"] == 0  # the same upload
    back = tmp_path / "back.raw"
    run(server, account, "download", sid, str(back))
    assert read_back(back, len(content)) == content
    assert os.stat(back).st_blocks * 512 < 4 * MIB  # sparse
    listed = json.loads(run(server, account, "list", "--json").stdout)
    assert [s["SnapshotId"] for s in listed] == [sid]
    other = server.new_account()
    run(server, account, "share", sid, "--account", other.account_id)
    shown = json.loads(run(server, account, "show", sid).stdout)
    assert shown["CreateVolumePermissions"] == [{"UserId": other.account_id}]
    theirs = tmp_path / "theirs.raw"
    run(server, other, "download", sid, str(theirs))
    assert read_back(theirs, len(content)) == content
    run(server, account, "unshare", sid, "--account", other.account_id)
    run(server, account, "delete", sid)
    assert json.loads(run(server, account, "list", "--json").stdout) == []


def test_qcow2_upload(server: Server, account: Creds, tmp_path: Path) -> None:
    raw = tmp_path / "disk.raw"
    content = make_disk(raw, 3 * MIB)
    qcow = tmp_path / "disk.qcow2"
    subprocess.run(
        ["qemu-img", "convert", "-f", "raw", "-O", "qcow2", str(raw), str(qcow)], check=True
    )
    sid = json.loads(run(server, account, "upload", str(qcow), "--json").stdout)["SnapshotId"]
    back = tmp_path / "back.raw"
    run(server, account, "download", sid, str(back))
    assert read_back(back, len(content)) == content


def test_interrupted_upload_resumes(server: Server, account: Creds, tmp_path: Path) -> None:
    disk = tmp_path / "disk.raw"
    content = make_disk(disk)
    ebs: Any = server.client(account, service="ebs")
    # What an interrupted run left behind: the same token, one block already sent.
    started = ebs.start_snapshot(
        VolumeSize=1, Description="", ClientToken=_token(disk, "|None|[]|"), Timeout=4320
    )
    first = content[:BLOCK]
    ebs.put_snapshot_block(
        SnapshotId=started["SnapshotId"],
        BlockIndex=0,
        BlockData=first,
        DataLength=BLOCK,
        Checksum=base64.b64encode(hashlib.sha256(first).digest()).decode(),
        ChecksumAlgorithm="SHA256",
    )
    out = json.loads(run(server, account, "upload", str(disk), "--json").stdout)
    assert out == {"SnapshotId": started["SnapshotId"], "BlocksSent": 2, "BlocksResumed": 1}
    back = tmp_path / "back.raw"
    run(server, account, "download", out["SnapshotId"], str(back))
    assert read_back(back, len(content)) == content
