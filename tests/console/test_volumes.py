"""The volumes pages over HTTP: table, create (empty or from a snapshot), attach, detach,
snapshot, delete — and other accounts' volumes.

A server of its own with the fake hypervisor (attaching needs instances, not VMs).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
from console_helpers import ConsoleClient, Images, make_snapshot, new_account

from harness import Creds, Server

pytestmark = pytest.mark.integration


@pytest.fixture
def owner(fake_server: Server) -> Iterator[Creds]:
    creds = new_account(fake_server)
    yield creds
    ec2 = fake_server.client(creds)
    running = [
        i["InstanceId"] for r in ec2.describe_instances()["Reservations"] for i in r["Instances"]
    ]
    if running:  # the host's vCPU capacity is shared by every test
        ec2.terminate_instances(InstanceIds=running)


def ok(response: Any) -> dict[str, Any]:
    assert response.status_code == 200, response.text
    return dict(response.json())


def error_code(response: Any) -> str:
    assert response.status_code >= 400, response.text
    return str(response.json()["Error"]["Code"])


def volume(me: ConsoleClient, volume_id: str) -> dict[str, Any]:
    return dict(ok(me.get_json(f"/console/volumes/{volume_id}"))["Volume"])


def wait_volume(me: ConsoleClient, volume_id: str, state: str) -> dict[str, Any]:
    deadline = time.monotonic() + 30
    while (found := volume(me, volume_id))["State"] != state:
        assert time.monotonic() < deadline, found
        time.sleep(0.2)
    return found


def running_instance(server: Server, creds: Creds) -> str:
    ec2 = server.client(creds)
    image = Images(server, creds).register("volume-host", VirtualizationType="hvm")
    iid = str(
        ec2.run_instances(ImageId=image, MinCount=1, MaxCount=1)["Instances"][0]["InstanceId"]
    )
    ec2.get_waiter("instance_running").wait(
        InstanceIds=[iid], WaiterConfig={"Delay": 1, "MaxAttempts": 30}
    )
    return iid


def test_create_empty_and_from_a_snapshot_then_delete(
    fake_server: Server, owner: Creds, make_console: Any
) -> None:
    snap = make_snapshot(fake_server, owner)
    me = make_console(owner)
    page = ok(me.get_json("/console/volumes"))
    assert page["Volumes"] == []
    form = me.http.get("/console/volumes", params={"snapshot": snap}).text
    assert f'name="snapshot_id" value="{snap}"' in form
    assert "us-east-1a" in form
    empty = ok(
        me.post(
            "/console/volumes/create",
            {"size": "3", "zone": "us-east-1b", "volume_type": "gp2", "name": "scratch"},
        )
    )["VolumeId"]
    restored = ok(me.post("/console/volumes/create", {"snapshot_id": snap, "size": ""}))["VolumeId"]
    table = {v["VolumeId"]: v for v in ok(me.get_json("/console/volumes"))["Volumes"]}
    assert set(table) == {empty, restored}
    assert (table[empty]["Size"], table[empty]["VolumeType"]) == (3, "gp2")
    assert table[empty]["AvailabilityZone"] == "us-east-1b"
    assert table[empty]["Name"] == "scratch"
    assert (table[restored]["SnapshotId"], table[restored]["Size"]) == (snap, 1)
    assert error_code(me.post("/console/volumes/create", {})) == "MissingParameter"
    too_small = me.post("/console/volumes/create", {"snapshot_id": snap, "size": "0"})
    assert error_code(too_small) == "InvalidParameterValue"
    ok(me.post(f"/console/volumes/{empty}/delete", {}))
    assert [v["VolumeId"] for v in ok(me.get_json("/console/volumes"))["Volumes"]] == [restored]


def test_attach_snapshot_detach(fake_server: Server, owner: Creds, make_console: Any) -> None:
    iid = running_instance(fake_server, owner)
    me = make_console(owner)
    vol = ok(me.post("/console/volumes/create", {"size": "1"}))["VolumeId"]
    wait_volume(me, vol, "available")
    page = me.http.get(f"/console/volumes/{vol}").text
    assert f'<option value="{iid}">' in page
    ok(me.post(f"/console/volumes/{vol}/attach", {"instance_id": iid, "device": "/dev/sdf"}))
    attached = wait_volume(me, vol, "in-use")
    assert attached["Attachment"]["InstanceId"] == iid
    assert attached["Attachment"]["Device"] == "/dev/sdf"
    html = me.http.get(f"/console/volumes/{vol}")
    assert html.status_code == 200
    assert "Detach volume" in html.text
    table = me.http.get("/console/volumes")
    assert table.status_code == 200
    assert iid in table.text
    # In use: it cannot be deleted; the API's own error says so.
    assert error_code(me.post(f"/console/volumes/{vol}/delete", {})) == "VolumeInUse"
    storage = ok(me.get_json(f"/console/instances/{iid}", tab="storage"))["Volumes"]
    assert vol in [v["VolumeId"] for v in storage]
    snap = ok(me.post("/console/snapshots/create", {"volume_id": vol}))["SnapshotId"]
    assert snap.startswith("snap-")
    ok(me.post(f"/console/volumes/{vol}/detach", {}))
    assert wait_volume(me, vol, "available")["Attachment"] is None
    missing = me.post(f"/console/volumes/{vol}/attach", {"instance_id": iid})
    assert error_code(missing) == "MissingParameter"


def test_another_accounts_volumes_are_neither_shown_nor_actionable(
    fake_server: Server, owner: Creds, make_console: Any
) -> None:
    iid = running_instance(fake_server, owner)
    me = make_console(owner)
    vol = ok(me.post("/console/volumes/create", {"size": "1"}))["VolumeId"]
    stranger = new_account(fake_server)
    them = make_console(stranger)
    assert ok(them.get_json("/console/volumes"))["Volumes"] == []
    assert error_code(them.get_json(f"/console/volumes/{vol}")) == "InvalidVolume.NotFound"
    for verb, form in {
        "delete": {},
        "attach": {"instance_id": iid, "device": "/dev/sdf"},
        "detach": {},
    }.items():
        response = them.post(f"/console/volumes/{vol}/{verb}", form)
        assert error_code(response) == "InvalidVolume.NotFound", verb
    refused = them.post("/console/snapshots/create", {"volume_id": vol})
    assert error_code(refused) == "InvalidVolume.NotFound"
    # Nor may they attach their own volume to the owner's instance.
    theirs = ok(them.post("/console/volumes/create", {"size": "1"}))["VolumeId"]
    wait_volume(them, theirs, "available")
    crafted = them.post(
        f"/console/volumes/{theirs}/attach", {"instance_id": iid, "device": "/dev/sdg"}
    )
    assert error_code(crafted) == "InvalidInstanceID.NotFound"
    assert volume(me, vol)["State"] == "available"
    assert fake_server.client(stranger).describe_snapshots(OwnerIds=["self"])["Snapshots"] == []


@pytest.mark.parametrize(
    ("verb", "form"),
    [
        ("create", {"size": "1"}),
        ("delete", {}),
        ("attach", {"instance_id": "INSTANCE", "device": "/dev/sdf"}),
        ("detach", {}),
    ],
)
@pytest.mark.parametrize("token", [None, "wrong-token"])
def test_every_volume_action_checks_the_csrf_token(
    fake_server: Server,
    owner: Creds,
    make_console: Any,
    verb: str,
    form: dict[str, str],
    token: str | None,
) -> None:
    ec2 = fake_server.client(owner)
    vol = ec2.create_volume(AvailabilityZone="us-east-1a", Size=1)["VolumeId"]
    me = make_console(owner)
    path = "/console/volumes/create" if verb == "create" else f"/console/volumes/{vol}/{verb}"
    filled = {k: v.replace("INSTANCE", "i-0123456789abcdef0") for k, v in form.items()}
    if token is not None:
        filled["csrf_token"] = token
    assert me.post(path, filled, csrf=False).status_code == 403
    volumes = ec2.describe_volumes()["Volumes"]
    assert [(v["VolumeId"], v["Attachments"]) for v in volumes] == [(vol, [])]
