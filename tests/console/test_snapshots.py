"""The snapshots pages over HTTP: scopes, detail, permissions, create, copy, delete.

They run on the session's shared server (no VM is started: CreateVolume and CreateSnapshot
work on volume files alone). Each test makes fresh accounts.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest
from console_helpers import ConsoleClient, make_snapshot, new_account

from harness import Creds, Server

pytestmark = pytest.mark.integration

MakeConsole = Callable[[Creds], ConsoleClient]


def ok(response: Any) -> dict[str, Any]:
    assert response.status_code == 200, response.text
    return dict(response.json())


def ids(response: Any) -> list[str]:
    return [s["SnapshotId"] for s in ok(response)["Snapshots"]]


def error_code(response: Any) -> str:
    assert response.status_code >= 400, response.text
    return str(response.json()["Error"]["Code"])


def wait_completed(me: ConsoleClient, snapshot_id: str, region: str = "") -> dict[str, Any]:
    deadline = time.monotonic() + 60
    params = {"region": region} if region else {}
    while True:
        snap = ok(me.get_json(f"/console/snapshots/{snapshot_id}", **params))["Snapshot"]
        if snap["State"] != "pending":
            return dict(snap)
        assert time.monotonic() < deadline, snap
        time.sleep(0.2)


def test_scopes_owned_shared_with_me_and_public(
    server: Server, console_factory: MakeConsole
) -> None:
    owner, friend = new_account(server), new_account(server)
    shared, public, private = (make_snapshot(server, owner) for _ in range(3))
    me, them = console_factory(owner), console_factory(friend)
    assert sorted(ids(me.get_json("/console/snapshots"))) == sorted([shared, public, private])
    assert ids(them.get_json("/console/snapshots", scope="shared")) == []
    ok(
        me.post(
            f"/console/snapshots/{shared}/permissions", {"op": "add", "accounts": friend.account_id}
        )
    )
    ok(me.post(f"/console/snapshots/{public}/permissions", {"op": "public"}))
    assert ids(them.get_json("/console/snapshots", scope="shared")) == [shared]
    assert public in ids(them.get_json("/console/snapshots", scope="public"))
    assert shared not in ids(them.get_json("/console/snapshots", scope="public"))
    assert ids(them.get_json("/console/snapshots", scope="owned")) == []
    assert ids(me.get_json("/console/snapshots", id=private)) == [private]
    html = them.http.get("/console/snapshots", params={"scope": "shared"}).text
    assert shared in html and private not in html
    bad = me.get_json("/console/snapshots", scope="everything")
    assert error_code(bad) == "InvalidParameterValue"


def test_detail_and_permissions_add_remove_public_private(
    server: Server, console_factory: MakeConsole
) -> None:
    owner, friend = new_account(server), new_account(server)
    snap = make_snapshot(server, owner)
    me = console_factory(owner)
    html = me.http.get(f"/console/snapshots/{snap}")
    assert html.status_code == 200
    assert "Make public" in html.text and "Delete snapshot" in html.text
    page = ok(me.get_json(f"/console/snapshots/{snap}"))
    assert page["IsOwner"] is True
    assert page["Snapshot"]["State"] == "completed"
    assert page["Permissions"] == {"Accounts": [], "Public": False}
    path = f"/console/snapshots/{snap}/permissions"
    ok(me.post(path, {"op": "add", "accounts": f"{friend.account_id}, 111122223333"}))
    ok(me.post(path, {"op": "public"}))
    perms = ok(me.get_json(f"/console/snapshots/{snap}"))["Permissions"]
    assert perms == {"Accounts": sorted([friend.account_id, "111122223333"]), "Public": True}
    attribute = server.client(owner).describe_snapshot_attribute(
        SnapshotId=snap, Attribute="createVolumePermission"
    )["CreateVolumePermissions"]
    assert {"Group": "all"} in attribute
    ok(me.post(path, {"op": "remove", "accounts": "111122223333"}))
    ok(me.post(path, {"op": "private"}))
    perms = ok(me.get_json(f"/console/snapshots/{snap}"))["Permissions"]
    assert perms == {"Accounts": [friend.account_id], "Public": False}
    assert error_code(me.post(path, {"op": "add", "accounts": "12345"})) == "InvalidParameterValue"
    assert error_code(me.post(path, {"op": "chmod"})) == "InvalidParameterValue"
    # The friend sees the snapshot, not its permissions, and cannot change or delete it.
    them = console_factory(friend)
    seen = ok(them.get_json(f"/console/snapshots/{snap}"))
    assert seen["IsOwner"] is False and "Permissions" not in seen
    assert error_code(them.post(path, {"op": "public"})) == "AuthFailure"
    assert error_code(them.post(f"/console/snapshots/{snap}/delete", {})) == "AuthFailure"
    html = them.http.get(f"/console/snapshots/{snap}").text
    assert "Make public" not in html and "Delete snapshot" not in html


def test_create_from_a_volume_copy_in_and_across_regions_and_delete(
    server: Server, console_factory: MakeConsole
) -> None:
    owner = new_account(server)
    ec2 = server.client(owner)
    source = make_snapshot(server, owner)
    volume = ec2.create_volume(AvailabilityZone="us-east-1a", SnapshotId=source)["VolumeId"]
    ec2.get_waiter("volume_available").wait(
        VolumeIds=[volume], WaiterConfig={"Delay": 1, "MaxAttempts": 30}
    )
    me = console_factory(owner)
    listed = me.http.get("/console/snapshots").text
    assert f'<option value="{volume}">' in listed
    made = ok(me.post("/console/snapshots/create", {"volume_id": volume, "description": "nightly"}))
    snap = made["SnapshotId"]
    done = wait_completed(me, snap)
    assert done["State"] == "completed", done
    assert done["VolumeId"] == volume and done["Description"] == "nightly"
    # Within the region: complete at once.
    local = ok(me.post(f"/console/snapshots/{snap}/copy", {"destination": "us-east-1"}))
    assert local["Region"] == "us-east-1"
    assert wait_completed(me, local["SnapshotId"])["State"] == "completed"
    # To another region: pending with a percentage, followed on the copy's own page.
    far = ok(
        me.post(
            f"/console/snapshots/{snap}/copy", {"destination": "eu-west-1", "description": "dr"}
        )
    )
    assert far["Region"] == "eu-west-1"
    copy = ok(me.get_json(f"/console/snapshots/{far['SnapshotId']}", region="eu-west-1"))
    assert copy["Region"] == "eu-west-1"
    assert copy["Snapshot"]["Progress"].endswith("%")
    assert wait_completed(me, far["SnapshotId"], "eu-west-1")["Progress"] == "100%"
    west = server.client(owner, region="eu-west-1")
    assert (
        west.describe_snapshots(SnapshotIds=[far["SnapshotId"]])["Snapshots"][0]["Description"]
        == "dr"
    )
    html = me.http.get(f"/console/snapshots/{far['SnapshotId']}", params={"region": "eu-west-1"})
    assert 'name="region" value="eu-west-1"' in html.text
    # Delete in the other region through the same page's form.
    ok(me.post(f"/console/snapshots/{far['SnapshotId']}/delete", {"region": "eu-west-1"}))
    assert west.describe_snapshots(OwnerIds=["self"])["Snapshots"] == []
    ok(me.post(f"/console/snapshots/{local['SnapshotId']}/delete", {}))
    assert local["SnapshotId"] not in ids(me.get_json("/console/snapshots"))
    assert error_code(me.post("/console/snapshots/create", {})) == "MissingParameter"


def test_another_accounts_snapshots_are_neither_shown_nor_actionable(
    server: Server, console_factory: MakeConsole
) -> None:
    owner, stranger = new_account(server), new_account(server)
    snap = make_snapshot(server, owner)
    them = console_factory(stranger)
    for scope in ("owned", "shared", "public"):
        assert snap not in ids(them.get_json("/console/snapshots", scope=scope))
    assert error_code(them.get_json("/console/snapshots", id=snap)) == "InvalidSnapshot.NotFound"
    assert error_code(them.get_json(f"/console/snapshots/{snap}")) == "InvalidSnapshot.NotFound"
    crafted = {
        "delete": {},
        "permissions": {"op": "public"},
        "copy": {"destination": "us-east-1"},
    }
    for verb, form in crafted.items():
        response = them.post(f"/console/snapshots/{snap}/{verb}", form)
        assert error_code(response) == "InvalidSnapshot.NotFound", verb
    ec2 = server.client(owner)
    assert ec2.describe_snapshots(SnapshotIds=[snap])["Snapshots"][0]["State"] == "completed"
    grants = ec2.describe_snapshot_attribute(SnapshotId=snap, Attribute="createVolumePermission")
    assert grants["CreateVolumePermissions"] == []
    assert server.client(stranger).describe_snapshots(OwnerIds=["self"])["Snapshots"] == []


@pytest.mark.parametrize(
    ("verb", "form"),
    [
        ("delete", {}),
        ("permissions", {"op": "public"}),
        ("copy", {"destination": "us-east-1"}),
        ("create", {"volume_id": "VOLUME"}),
    ],
)
@pytest.mark.parametrize("token", [None, "wrong-token"])
def test_every_snapshot_action_checks_the_csrf_token(
    server: Server, verb: str, form: dict[str, str], token: str | None
) -> None:
    owner = new_account(server)
    snap = make_snapshot(server, owner)
    ec2 = server.client(owner)
    volume = ec2.create_volume(AvailabilityZone="us-east-1a", Size=1)["VolumeId"]
    me = ConsoleClient(server).sign_in_as(owner)
    try:
        path = (
            "/console/snapshots/create" if verb == "create" else f"/console/snapshots/{snap}/{verb}"
        )
        filled = {k: v.replace("VOLUME", volume) for k, v in form.items()}
        if token is not None:
            filled["csrf_token"] = token
        response = me.post(path, filled, csrf=False)
        assert response.status_code == 403
    finally:
        me.close()
    # Nothing happened: the one snapshot, private, no copy, no new snapshot.
    assert [s["SnapshotId"] for s in ec2.describe_snapshots(OwnerIds=["self"])["Snapshots"]] == [
        snap
    ]
    grants = ec2.describe_snapshot_attribute(SnapshotId=snap, Attribute="createVolumePermission")
    assert grants["CreateVolumePermissions"] == []
