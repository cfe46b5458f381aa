"""EBS direct API over HTTP with boto3's ``ebs`` client, plus the EC2 snapshot operations."""

from __future__ import annotations

import base64
import hashlib
import os
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from botocore.exceptions import ClientError

from harness import Creds, Server, start_server, stop_server

pytestmark = pytest.mark.integration

BLOCK = 512 * 1024
GIB = 1024**3


def checksum(data: bytes) -> str:
    return base64.b64encode(hashlib.sha256(data).digest()).decode()


def error_of(call: Any, **kwargs: Any) -> tuple[str, int, str | None]:
    with pytest.raises(ClientError) as info:
        call(**kwargs)
    response = info.value.response
    return (
        str(response["Error"]["Code"]),
        int(response["ResponseMetadata"]["HTTPStatusCode"]),
        response.get("Reason"),
    )


def put(ebs: Any, snapshot_id: str, index: int, data: bytes) -> None:
    ebs.put_snapshot_block(
        SnapshotId=snapshot_id,
        BlockIndex=index,
        BlockData=data,
        DataLength=len(data),
        Checksum=checksum(data),
        ChecksumAlgorithm="SHA256",
    )


def upload(ebs: Any, blocks: dict[int, bytes], parent: str | None = None, **extra: Any) -> str:
    kwargs: dict[str, Any] = {"VolumeSize": 1, **extra}
    if parent:
        kwargs["ParentSnapshotId"] = parent
    sid = str(ebs.start_snapshot(**kwargs)["SnapshotId"])
    with ThreadPoolExecutor(4) as pool:
        list(pool.map(lambda item: put(ebs, sid, *item), blocks.items()))
    assert ebs.complete_snapshot(SnapshotId=sid, ChangedBlocksCount=len(blocks))["Status"] in (
        "completed",
        "pending",
    )
    return sid


def all_blocks(ebs: Any, sid: str) -> Iterator[dict[str, Any]]:
    kwargs: dict[str, Any] = {"SnapshotId": sid, "MaxResults": 100}
    while True:
        page = ebs.list_snapshot_blocks(**kwargs)
        yield from page["Blocks"]
        if not page.get("NextToken"):
            return
        kwargs["NextToken"] = page["NextToken"]


def download(ebs: Any, sid: str, blocks: int) -> bytes:
    out = bytearray(blocks * BLOCK)
    for block in all_blocks(ebs, sid):
        got = ebs.get_snapshot_block(
            SnapshotId=sid, BlockIndex=block["BlockIndex"], BlockToken=block["BlockToken"]
        )
        data = got["BlockData"].read()
        assert got["Checksum"] == checksum(data) and got["DataLength"] == BLOCK
        i = block["BlockIndex"]
        out[i * BLOCK : (i + 1) * BLOCK] = data
    return bytes(out)


@pytest.fixture
def ebs(server: Server, account: Creds) -> Any:
    return server.client(account, service="ebs")


def test_upload_and_download_byte_equal(ebs: Any, ec2: Any) -> None:
    disk = {i: os.urandom(BLOCK) for i in (0, 1, 5, 7)}  # 8 blocks = 4 MiB, with zero holes
    disk[3] = bytes(BLOCK)  # an explicit zero block
    sid = upload(ebs, disk, Description="uploaded", Tags=[{"Key": "k", "Value": "v"}])
    expected = b"".join(disk.get(i, bytes(BLOCK)) for i in range(8))
    assert download(ebs, sid, 8) == expected
    assert sorted(b["BlockIndex"] for b in all_blocks(ebs, sid)) == [0, 1, 5, 7]
    (snap,) = ec2.describe_snapshots(SnapshotIds=[sid])["Snapshots"]
    assert snap["State"] == "completed" and snap["Progress"] == "100%"
    assert snap["VolumeSize"] == 1 and snap["Description"] == "uploaded"
    assert snap["FullSnapshotSizeInBytes"] == 4 * BLOCK
    assert snap["Tags"] == [{"Key": "k", "Value": "v"}]
    ec2.get_waiter("snapshot_completed").wait(SnapshotIds=[sid])


def test_changed_blocks_between_parent_and_child(ebs: Any) -> None:
    one, two = os.urandom(BLOCK), os.urandom(BLOCK)
    parent = upload(ebs, {0: one, 2: one})
    child = upload(ebs, {2: two, 4: one}, parent=parent)
    changed = ebs.list_changed_blocks(FirstSnapshotId=parent, SecondSnapshotId=child)
    indexes = [b["BlockIndex"] for b in changed["ChangedBlocks"]]
    assert indexes == [2, 4]
    by_index = {b["BlockIndex"]: b for b in changed["ChangedBlocks"]}
    assert "FirstBlockToken" in by_index[2] and "FirstBlockToken" not in by_index[4]
    got = ebs.get_snapshot_block(
        SnapshotId=child, BlockIndex=2, BlockToken=by_index[2]["SecondBlockToken"]
    )
    assert got["BlockData"].read() == two
    # The child inherits the parent's block 0.
    assert [b["BlockIndex"] for b in all_blocks(ebs, child)] == [0, 2, 4]
    alone = ebs.list_changed_blocks(SecondSnapshotId=parent)
    assert [b["BlockIndex"] for b in alone["ChangedBlocks"]] == [0, 2]
    stranger = upload(ebs, {1: one})
    assert (
        error_of(ebs.list_changed_blocks, FirstSnapshotId=stranger, SecondSnapshotId=child)[2]
        == "UNRELATED_SNAPSHOTS"
    )


def test_validation_errors(ebs: Any) -> None:
    sid = ebs.start_snapshot(VolumeSize=1)["SnapshotId"]
    data = os.urandom(BLOCK)
    bad = {
        "SnapshotId": sid,
        "BlockIndex": 0,
        "BlockData": data,
        "DataLength": BLOCK,
        "Checksum": checksum(b"other"),
        "ChecksumAlgorithm": "SHA256",
    }
    assert error_of(ebs.put_snapshot_block, **bad)[:2] == ("ValidationException", 400)
    bad["Checksum"] = checksum(data)
    bad["BlockIndex"] = GIB // BLOCK  # one past the end
    assert error_of(ebs.put_snapshot_block, **bad)[0] == "ValidationException"
    put(ebs, sid, 0, data)
    assert error_of(ebs.complete_snapshot, SnapshotId=sid, ChangedBlocksCount=2)[0] == (
        "ValidationException"
    )
    assert ebs.complete_snapshot(SnapshotId=sid, ChangedBlocksCount=1)["Status"] == "completed"
    assert error_of(ebs.put_snapshot_block, **{**bad, "BlockIndex": 1})[0] == (
        "ValidationException"
    )
    block = next(all_blocks(ebs, sid))
    assert (
        error_of(
            ebs.get_snapshot_block, SnapshotId=sid, BlockIndex=1, BlockToken=block["BlockToken"]
        )[2]
        == "INVALID_BLOCK_TOKEN"
    )
    assert error_of(ebs.start_snapshot, VolumeSize=1, Encrypted=True)[0] == "ValidationException"
    missing = "snap-0123456789abcdef0"
    assert error_of(ebs.list_snapshot_blocks, SnapshotId=missing)[:2] == (
        "ResourceNotFoundException",
        404,
    )


def test_client_token_is_idempotent(ebs: Any) -> None:
    first = ebs.start_snapshot(VolumeSize=1, ClientToken="tok-1", Description="a")
    again = ebs.start_snapshot(VolumeSize=1, ClientToken="tok-1", Description="a")
    assert first["SnapshotId"] == again["SnapshotId"]
    code, status, _ = error_of(ebs.start_snapshot, VolumeSize=2, ClientToken="tok-1")
    assert (code, status) == ("ConflictException", 409)


def test_permissions_between_accounts(server: Server, account: Creds, ebs: Any, ec2: Any) -> None:
    other = server.new_account()
    other_ebs = server.client(other, service="ebs")
    other_ec2 = server.client(other)
    data = os.urandom(BLOCK)
    sid = upload(ebs, {0: data})
    pending = ebs.start_snapshot(VolumeSize=1)["SnapshotId"]
    assert error_of(other_ebs.list_snapshot_blocks, SnapshotId=sid)[:2] == (
        "AccessDeniedException",
        403,
    )
    assert (
        error_of(
            other_ebs.put_snapshot_block,
            SnapshotId=pending,
            BlockIndex=0,
            BlockData=data,
            DataLength=BLOCK,
            Checksum=checksum(data),
            ChecksumAlgorithm="SHA256",
        )[0]
        == "AccessDeniedException"
    )
    assert error_of(other_ec2.describe_snapshots, SnapshotIds=[sid])[0] == (
        "InvalidSnapshot.NotFound"
    )
    ec2.modify_snapshot_attribute(
        SnapshotId=sid,
        Attribute="createVolumePermission",
        OperationType="add",
        UserIds=[other.account_id],
    )
    assert download(other_ebs, sid, 1) == data
    (seen,) = other_ec2.describe_snapshots(SnapshotIds=[sid])["Snapshots"]
    assert seen["OwnerId"] == account.account_id
    assert error_of(other_ec2.delete_snapshot, SnapshotId=sid)[0] == "AuthFailure"
    copy = other_ec2.copy_snapshot(SourceSnapshotId=sid, SourceRegion="us-east-1")["SnapshotId"]
    assert download(other_ebs, copy, 1) == data
    ec2.delete_snapshot(SnapshotId=sid)
    assert download(other_ebs, copy, 1) == data


def test_unsigned_and_badly_signed_requests_are_rejected(server: Server, account: Creds) -> None:
    import urllib.error
    import urllib.request

    request = urllib.request.Request(f"{server.endpoint}/snapshots", data=b"{}", method="POST")
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(request, timeout=10)
    assert info.value.code == 403
    assert info.value.headers["x-amzn-ErrorType"] == "MissingAuthenticationToken"
    wrong = Creds(account.account_id, account.access_key_id, "x" * 40)
    code, status, _ = error_of(server.client(wrong, service="ebs").start_snapshot, VolumeSize=1)
    assert (code, status) == ("SignatureDoesNotMatch", 403)


def test_pending_upload_resumes_after_a_restart(tmp_path: Any) -> None:
    srv = start_server(tmp_path / "data")
    try:
        creds = srv.new_account()
        ebs = srv.client(creds, service="ebs")
        one, two = os.urandom(BLOCK), os.urandom(BLOCK)
        sid = ebs.start_snapshot(VolumeSize=1, ClientToken="disk-1")["SnapshotId"]
        put(ebs, sid, 3, one)
    finally:
        stop_server(srv.proc)
    srv = start_server(tmp_path / "data")
    try:
        ebs = srv.client(creds, service="ebs")
        # Same token: the same pending upload; its written blocks are listed (to resume).
        assert ebs.start_snapshot(VolumeSize=1, ClientToken="disk-1")["SnapshotId"] == sid
        assert [b["BlockIndex"] for b in all_blocks(ebs, sid)] == [3]
        put(ebs, sid, 4, two)
        ebs.complete_snapshot(SnapshotId=sid, ChangedBlocksCount=2)
        got = download(ebs, sid, 5)
        assert got[3 * BLOCK :] == one + two
    finally:
        stop_server(srv.proc)
