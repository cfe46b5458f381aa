"""CopyImage and CopySnapshot across regions against the real server, with boto3 and the CLIs.

Disks are stored with ``goldsmith platform snapshot`` (admin CLI) in us-east-1, registered,
and copied into eu-west-1 (called in the destination region, as in EC2). The stores are
read offline (``Repository.open``) to compare bytes and count what moved.
"""

from __future__ import annotations

import json
import random
import re
import time
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from goldsmith.store import Repository
from goldsmith.store.transfer import stored_sizes
from harness import Creds, Server

pytestmark = pytest.mark.integration
MiB = 1 << 20
CHUNK = 512 * 1024
SRC, DST = "us-east-1", "eu-west-1"
MOVED = re.compile(r"(\d+) of (\d+) bytes moved; (\d+) bytes already present")


def code_of(call: Any, **kwargs: Any) -> str:
    with pytest.raises(ClientError) as info:
        call(**kwargs)
    return str(info.value.response["Error"]["Code"])


def write_disk(path: Path, seed: int, changed: dict[int, int] | None = None) -> Path:
    """A 32 MiB sparse disk: 12 MiB of data from ``seed``; ``changed`` rewrites chunks."""
    rnd = random.Random(seed)
    with path.open("wb") as f:
        f.truncate(32 * MiB)
        f.seek(2 * MiB)
        f.write(rnd.randbytes(12 * MiB))
        for index, value in (changed or {}).items():
            f.seek(index * CHUNK)
            f.write(random.Random(value).randbytes(CHUNK))
    return path


def snapshot_of(server: Server, creds: Creds, path: Path) -> str:
    out = server.cli("platform", "snapshot", str(path), "--account", creds.account_id)
    return out.stdout.strip()


def register(ec2: Any, snap: str, name: str, **extra: Any) -> str:
    return str(
        ec2.register_image(
            Name=name,
            Architecture="x86_64",
            VirtualizationType="hvm",
            BootMode="uefi",
            RootDeviceName="/dev/xvda",
            BlockDeviceMappings=[{"DeviceName": "/dev/xvda", "Ebs": {"SnapshotId": snap}}],
            **extra,
        )["ImageId"]
    )


def wait_image(ec2: Any, image_id: str, timeout: float = 60) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        image: dict[str, Any] = ec2.describe_images(ImageIds=[image_id])["Images"][0]
        if image["State"] != "pending" or time.monotonic() > deadline:
            return image
        time.sleep(0.2)


def store(server: Server, region: str) -> Repository:
    return Repository.open(server.data_dir / "regions" / region / "store", create=False)


def pack_bytes(server: Server, region: str) -> int:
    packs = server.data_dir / "regions" / region / "store" / "packs"
    return sum(p.stat().st_size for p in packs.iterdir()) if packs.is_dir() else 0


def copied_bytes(ec2: Any, snapshot_id: str) -> tuple[int, int, int]:
    (snap,) = ec2.describe_snapshots(SnapshotIds=[snapshot_id])["Snapshots"]
    assert snap["State"] == "completed" and snap["Progress"] == "100%"
    found = MOVED.search(snap["StateMessage"])
    assert found is not None, snap["StateMessage"]
    return int(found.group(1)), int(found.group(2)), int(found.group(3))


def root_snapshot(image: dict[str, Any]) -> str:
    return str(image["BlockDeviceMappings"][0]["Ebs"]["SnapshotId"])


def test_copy_image_to_another_region(server: Server, tmp_path: Path) -> None:
    owner = server.new_account()
    ec2, eu = server.client(owner), server.client(owner, region=DST)
    snap = snapshot_of(server, owner, write_disk(tmp_path / "a.raw", seed=1))
    source = register(
        ec2,
        snap,
        "copy-src-1",
        TagSpecifications=[{"ResourceType": "image", "Tags": [{"Key": "team", "Value": "a"}]}],
    )
    ec2.enable_image_deprecation(ImageId=source, DeprecateAt="2031-01-01T00:00:00Z")

    copy = eu.copy_image(
        SourceRegion=SRC,
        SourceImageId=source,
        Name="copy-dst-1",
        Description="copied",
        CopyImageTags=True,
        TagSpecifications=[
            {"ResourceType": "image", "Tags": [{"Key": "where", "Value": "eu"}]},
            {"ResourceType": "snapshot", "Tags": [{"Key": "kind", "Value": "copy"}]},
        ],
    )["ImageId"]
    image = wait_image(eu, copy)

    assert image["State"] == "available", image.get("StateReason")
    assert image["OwnerId"] == owner.account_id and image["Name"] == "copy-dst-1"
    assert image["SourceImageId"] == source and image["SourceImageRegion"] == SRC
    assert (image["Architecture"], image["VirtualizationType"], image["BootMode"]) == (
        "x86_64",
        "hvm",
        "uefi",
    )
    assert image["DeprecationTime"].startswith("2031-01-01T00:00:00")
    assert {t["Key"]: t["Value"] for t in image["Tags"]} == {"team": "a", "where": "eu"}
    assert copy not in {i["ImageId"] for i in ec2.describe_images(Owners=["self"])["Images"]}
    dest_snap = root_snapshot(image)
    (described,) = eu.describe_snapshots(SnapshotIds=[dest_snap])["Snapshots"]
    assert described["Tags"] == [{"Key": "kind", "Value": "copy"}]
    moved, needed, present = copied_bytes(eu, dest_snap)
    assert moved == needed > 12 * MiB and present == 0  # random data: stored as is
    src_repo, dst_repo = store(server, SRC), store(server, DST)
    assert dst_repo.read(dest_snap, 0, 32 * MiB) == src_repo.read(snap, 0, 32 * MiB)
    ancestry = eu.get_image_ancestry(ImageId=copy)["ImageAncestryEntries"]
    assert [a["ImageId"] for a in ancestry] == [copy, source]


def test_copy_of_a_derived_image_moves_only_the_changed_chunks(
    server: Server, tmp_path: Path
) -> None:
    owner = server.new_account()
    ec2, eu = server.client(owner), server.client(owner, region=DST)
    base_snap = snapshot_of(server, owner, write_disk(tmp_path / "b.raw", seed=2))
    changed = {8: 80, 9: 90, 40: 400}  # two chunks rewritten, one added beyond the data
    derived_snap = snapshot_of(server, owner, write_disk(tmp_path / "d.raw", 2, changed))
    base = register(ec2, base_snap, "derived-base")
    derived = register(ec2, derived_snap, "derived-child")
    base_copy = wait_image(
        eu, eu.copy_image(SourceRegion=SRC, SourceImageId=base, Name="derived-base")["ImageId"]
    )
    assert base_copy["State"] == "available"
    before = pack_bytes(server, DST)

    child = wait_image(
        eu,
        eu.copy_image(SourceRegion=SRC, SourceImageId=derived, Name="derived-child")["ImageId"],
    )

    assert child["State"] == "available"
    moved, needed, present = copied_bytes(eu, root_snapshot(child))
    src_repo = store(server, SRC)
    base_chunks = set(src_repo.manifest(base_snap).entries.values())
    unique = [d for d in src_repo.manifest(derived_snap).entries.values() if d not in base_chunks]
    assert len(unique) == 3
    unique_bytes = sum(stored_sizes(src_repo, unique).values())
    assert moved == needed == unique_bytes  # the API's reported bytes
    assert present > 10 * MiB
    grown = pack_bytes(server, DST) - before  # the destination store's own count
    assert unique_bytes <= grown <= unique_bytes + 64 * 1024


def test_copy_snapshot_across_regions(server: Server, tmp_path: Path) -> None:
    owner = server.new_account()
    eu = server.client(owner, region=DST)
    snap = snapshot_of(server, owner, write_disk(tmp_path / "s.raw", seed=3))
    copy = eu.copy_snapshot(SourceRegion=SRC, SourceSnapshotId=snap, Description="eu copy")
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        (row,) = eu.describe_snapshots(SnapshotIds=[copy["SnapshotId"]])["Snapshots"]
        if row["State"] != "pending":
            break
        time.sleep(0.2)
    assert row["State"] == "completed" and row["Description"] == "eu copy"
    moved, needed, _present = copied_bytes(eu, copy["SnapshotId"])
    assert moved == needed > 0
    assert code_of(eu.copy_snapshot, SourceRegion="xx-nowhere-1", SourceSnapshotId=snap) == (
        "InvalidRegion"
    )


def test_bad_inputs_and_idempotency(server: Server, tmp_path: Path) -> None:
    owner, stranger = server.new_account(), server.new_account()
    ec2, eu = server.client(owner), server.client(owner, region=DST)
    snap = snapshot_of(server, owner, write_disk(tmp_path / "x.raw", seed=4))
    source = register(ec2, snap, "bad-inputs-src")
    ok = {"SourceRegion": SRC, "SourceImageId": source, "Name": "bad-inputs-copy"}

    assert code_of(eu.copy_image, **{**ok, "SourceRegion": "xx-nowhere-1"}) == "InvalidRegion"
    assert code_of(eu.copy_image, **{**ok, "SourceImageId": "ami-0123456789abcdef0"}) == (
        "InvalidAMIID.NotFound"
    )
    assert code_of(eu.copy_image, **{**ok, "SourceImageId": "nope"}) == "InvalidAMIID.Malformed"
    assert code_of(server.client(stranger, region=DST).copy_image, **ok) == (
        "InvalidAMIID.NotFound"
    )
    assert code_of(eu.copy_image, **ok, Encrypted=True) == "InvalidParameterValue"
    assert code_of(eu.copy_image, **ok, KmsKeyId="alias/x") == "InvalidParameterValue"
    assert code_of(eu.copy_image, **ok, DryRun=True) == "DryRunOperation"
    assert code_of(eu.copy_image, **{**ok, "Name": "bad*name"}) == "InvalidAMIName.Malformed"

    first = eu.copy_image(**ok, ClientToken="token-1")["ImageId"]
    assert eu.copy_image(**ok, ClientToken="token-1")["ImageId"] == first
    assert code_of(eu.copy_image, **ok, ClientToken="token-1", Description="other") == (
        "IdempotentParameterMismatch"
    )
    assert wait_image(eu, first)["State"] == "available"
    assert code_of(eu.copy_image, **ok) == "InvalidAMIName.Duplicate"

    ec2.disable_image(ImageId=source)
    assert code_of(eu.copy_image, **{**ok, "Name": "from-disabled"}) == "InvalidAMIID.Unavailable"
    ec2.enable_image(ImageId=source)
    server.client(owner, service="rbin").create_rule(
        ResourceType="EC2_IMAGE",
        RetentionPeriod={"RetentionPeriodValue": 1, "RetentionPeriodUnit": "DAYS"},
    )
    ec2.deregister_image(ImageId=source)  # into the recycle bin: deregistered, not gone
    assert code_of(eu.copy_image, **{**ok, "Name": "from-binned"}) == "InvalidAMIID.Unavailable"


def test_shared_image_is_copied_by_the_grantee(server: Server, tmp_path: Path) -> None:
    owner, friend = server.new_account(), server.new_account()
    ec2 = server.client(owner)
    snap = snapshot_of(server, owner, write_disk(tmp_path / "f.raw", seed=5))
    source = register(ec2, snap, "shared-src")
    ec2.modify_image_attribute(
        ImageId=source, LaunchPermission={"Add": [{"UserId": friend.account_id}]}
    )
    friend_eu = server.client(friend, region=DST)
    copy = friend_eu.copy_image(SourceRegion=SRC, SourceImageId=source, Name="friends-copy")
    image = wait_image(friend_eu, copy["ImageId"])
    assert image["State"] == "available" and image["OwnerId"] == friend.account_id
    (snapshot,) = friend_eu.describe_snapshots(SnapshotIds=[root_snapshot(image)])["Snapshots"]
    assert snapshot["OwnerId"] == friend.account_id
    # the copy is the friend's own: the owner of the source cannot see it
    owner_eu = server.client(owner, region=DST)
    assert code_of(owner_eu.describe_images, ImageIds=[copy["ImageId"]]) == (
        "InvalidAMIID.NotFound"
    )


def test_same_region_copy_shares_every_chunk(server: Server, tmp_path: Path) -> None:
    owner = server.new_account()
    ec2 = server.client(owner)
    snap = snapshot_of(server, owner, write_disk(tmp_path / "r.raw", seed=6))
    source = register(ec2, snap, "same-region-src")
    before = pack_bytes(server, SRC)
    copy = ec2.copy_image(SourceRegion=SRC, SourceImageId=source, Name="same-region-copy")
    image = wait_image(ec2, copy["ImageId"])
    assert image["State"] == "available" and image["SourceImageRegion"] == SRC
    moved, _needed, present = copied_bytes(ec2, root_snapshot(image))
    assert moved == 0 and present > 12 * MiB
    assert pack_bytes(server, SRC) == before


def test_aws_cli_and_goldsmith_cli_copy(server: Server, tmp_path: Path) -> None:
    admin = server.admin  # the goldsmith CLI signs with the admin credentials of the data dir
    ec2 = server.client(admin)
    snap = snapshot_of(server, admin, write_disk(tmp_path / "c.raw", seed=7))
    source = register(ec2, snap, "cli-src")
    out = server.aws(
        "ec2", "copy-image", "--source-region", SRC, "--source-image-id", source,
        "--name", "aws-cli-copy", creds=admin, region=DST, check=True,
    )  # fmt: skip
    image_id = json.loads(out.stdout)["ImageId"]
    assert wait_image(server.client(admin, region=DST), image_id)["State"] == "available"

    done = server.cli(
        "images", "copy", source, "--to", DST, "--name", "goldsmith-cli-copy", "--json",
        "--endpoint", server.endpoint, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["State"] == "available" and result["BytesMoved"] == 0  # aws copied it
    assert result["BytesAlreadyPresent"] > 12 * MiB

    done = server.cli(
        "snapshots", "copy", snap, "--to", "us-west-2", "--json", "--endpoint", server.endpoint,
        check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["State"] == "completed" and result["BytesMoved"] == result["BytesNeeded"] > 0
    text = server.cli(
        "snapshots", "copy", snap, "--to", "us-west-2", "--endpoint", server.endpoint,
    ).stdout  # fmt: skip
    assert "completed in us-west-2" in text and "already present" in text
