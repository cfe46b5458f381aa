"""A server killed (SIGKILL) in the middle of a cross-region CopyImage resumes the copy.

The copy is caught while its data moves (packs already in the destination store, no
manifest yet), the server is killed with -9 and started again on the same data directory:
the durable task resumes, skips the chunks that arrived before the kill, and the image
becomes available. Both regions' stores then pass ``goldsmith store check``, and GC leaves
no unreferenced chunk behind.
"""

from __future__ import annotations

import json
import os
import re
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness import Server, start_server, stop_server

pytestmark = pytest.mark.integration
MiB = 1 << 20
SRC, DST = "us-east-1", "eu-west-1"


@pytest.fixture
def own_server(tmp_path: Path) -> Iterator[list[Server]]:
    """A server of this test alone (it gets killed); the list holds the current one."""
    servers = [start_server(tmp_path / "data")]
    try:
        yield servers
    finally:
        stop_server(servers[-1].proc)


def wait_until_copying(store: Path, snapshot_id: str, timeout: float = 60) -> int:
    """Wait until the destination has packs but not yet the manifest; return the pack count."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        listed = os.listdir(store / "packs") if (store / "packs").is_dir() else []
        packs = [n for n in listed if not n.startswith(".")]  # not puts in progress
        if (store / "snapshots" / snapshot_id).exists():
            pytest.fail("the copy finished before it could be interrupted")
        if len(packs) >= 3:
            return len(packs)
        time.sleep(0.005)
    pytest.fail("the copy never started moving data")


def test_kill_during_copy_then_resume(own_server: list[Server], tmp_path: Path) -> None:
    server = own_server[0]
    disk = tmp_path / "big.raw"
    with disk.open("wb") as f:  # incompressible: ~32 packs to move
        f.truncate(384 * MiB)
        for _ in range(256 // 16):
            f.write(os.urandom(16 * MiB))
    snap = server.cli(
        "platform", "snapshot", str(disk), "--account", server.admin.account_id
    ).stdout.strip()
    disk.unlink()
    ec2 = server.client()
    source = ec2.register_image(
        Name="resume-src",
        RootDeviceName="/dev/xvda",
        VirtualizationType="hvm",
        BlockDeviceMappings=[{"DeviceName": "/dev/xvda", "Ebs": {"SnapshotId": snap}}],
    )["ImageId"]
    eu = server.client(region=DST)
    copy = eu.copy_image(SourceRegion=SRC, SourceImageId=source, Name="resume-copy")["ImageId"]
    (mapping,) = eu.describe_images(ImageIds=[copy])["Images"][0]["BlockDeviceMappings"]
    dest_snap = mapping["Ebs"]["SnapshotId"]
    dest_store = server.data_dir / "regions" / DST / "store"

    wait_until_copying(dest_store, dest_snap)
    os.killpg(server.proc.pid, signal.SIGKILL)
    server.proc.wait(timeout=15)
    assert not (dest_store / "snapshots" / dest_snap).exists()

    server = start_server(server.data_dir)
    own_server.append(server)
    eu = server.client(region=DST)
    deadline = time.monotonic() + 120
    while (image := eu.describe_images(ImageIds=[copy])["Images"][0])["State"] == "pending":
        assert time.monotonic() < deadline, "the resumed copy did not finish"
        time.sleep(0.2)

    assert image["State"] == "available", image.get("StateReason")
    (snapshot,) = eu.describe_snapshots(SnapshotIds=[dest_snap])["Snapshots"]
    found = re.search(
        r"(\d+) of (\d+) bytes moved; (\d+) bytes already present", snapshot["StateMessage"]
    )
    assert found is not None, snapshot["StateMessage"]
    moved, present = int(found.group(1)), int(found.group(3))
    assert present > 0 and moved > 0  # the resumed run skipped what arrived before the kill
    assert moved + present >= 256 * MiB
    for region in (SRC, DST):
        checked = server.cli("store", "check", "--region", region, "--json", check=False)
        assert checked.returncode == 0 and json.loads(checked.stdout)["ok"], checked.stdout
    server.cli("store", "gc", "--region", DST, "--grace", "0")
    after = json.loads(server.cli("store", "check", "--region", DST, "--json").stdout)
    assert after["ok"] and after["unreferenced_chunks"] == 0 and after["snapshots"] == 1
    assert list(dest_store.rglob(".tmp-*")) == []  # GC removed the killed put's temp file
