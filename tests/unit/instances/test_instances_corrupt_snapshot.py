"""An image whose snapshot is damaged in the store: its launches fail, nothing else does.

The chunk files of the snapshot are damaged on disk (as a bad disk would); RunInstances
still answers (the image is fine in the catalog), and the launch ends ``terminated`` with a
Server.InternalError StateReason naming the snapshot. Other instances, other images and the
store check are unaffected — the check reports the damage and names the snapshot.
"""

from __future__ import annotations

from pathlib import Path

from instance_helpers import World

from goldsmith.store import Repository
from goldsmith.store.chunks import PackedChunks
from goldsmith.store.formats import chunk_name

REGION = "us-east-1"


def damage_chunks(repo: Repository, root: Path, snapshot_id: str) -> int:
    """Flip a byte in the middle of every stored chunk record of ``snapshot_id``."""
    damaged = 0
    repo.chunks.refresh()  # packs written since the index was read
    for digest in set(repo.manifest(snapshot_id).entries.values()):
        if isinstance(repo.chunks, PackedChunks):
            where = repo.chunks.locate(digest)
            assert where is not None
            name, offset, length = where
        else:
            name, offset, length = chunk_name(digest), 0, (root / chunk_name(digest)).stat().st_size
        with (root / name).open("r+b") as f:
            f.seek(offset + length // 2)
            byte = f.read(1)
            f.seek(offset + length // 2)
            f.write(bytes([byte[0] ^ 0xFF]))
        damaged += 1
    return damaged


def test_a_corrupt_snapshot_fails_the_launch_with_a_reason_and_nothing_else(
    world: World,
) -> None:
    ctx = world.account()
    healthy = world.image(ctx)
    running = world.launch(ctx, healthy)
    broken = world.image(ctx)
    root_snap = world.call(ctx, "DescribeImages", ImageIds=[broken])["Images"][0][
        "BlockDeviceMappings"
    ][0]["Ebs"]["SnapshotId"]
    repo = world.services.snapshots.repository(REGION)
    store_dir = world.services.settings.region_dir(REGION) / "store"
    assert damage_chunks(repo, store_dir, root_snap) > 0

    reply = world.run(ctx, broken)  # the API call itself succeeds, as on EC2
    iid = reply["Instances"][0]["InstanceId"]
    assert reply["Instances"][0]["State"]["Name"] == "pending"
    world.settle()
    failed = world.instance(ctx, iid)
    assert failed["State"]["Name"] == "terminated"
    reason = failed["StateReason"]
    assert reason["Code"] == "Server.InternalError"
    assert reason["Message"].startswith("Server.InternalError: Internal error on launch")
    assert root_snap in reason["Message"]
    # The failed launch cleaned up after itself: no volume, no VM, no cached base.
    assert (
        world.call(
            ctx, "DescribeVolumes", Filters=[{"Name": "attachment.instance-id", "Values": [iid]}]
        )["Volumes"]
        == []
    )
    assert world.handle(iid) is None
    bases = world.services.settings.region_dir(REGION) / "bases"
    assert not (bases / f"{root_snap}.raw").exists()
    assert [p.name for p in bases.iterdir() if p.name.endswith(".tmp")] == []

    # Nothing else broke: the running instance runs, the healthy image still launches.
    assert world.state(ctx, running) == "running"
    assert world.state(ctx, world.launch(ctx, healthy)) == "running"
    # A retry fails the same way (nothing half-restored was cached).
    again = world.launch(ctx, broken)
    assert world.state(ctx, again) == "terminated"
    # A volume from the damaged snapshot ends in EC2's ``error`` state (not stuck creating).
    volume = world.call(ctx, "CreateVolume", SnapshotId=root_snap, AvailabilityZone="us-east-1a")
    world.settle()
    described = world.call(ctx, "DescribeVolumes", VolumeIds=[volume["VolumeId"]])["Volumes"]
    assert described[0]["State"] == "error"
    # The store's check names the damaged snapshot.
    report = repo.check(read_data=True)
    assert not report.ok
    assert any(root_snap in issue.message for issue in report.issues)
