"""Snapshots: the table (owned by me / shared with me / public), one snapshot, actions.

``/console/snapshots?scope=owned|shared|public`` pages through DescribeSnapshots
(``OwnerIds=self``; ``RestorableByUserIds=self`` without my own and public ones;
``RestorableByUserIds=all``) with its own NextToken (``?token=``); ``?id=snap-…`` shows that
one snapshot (the image page's storage tab links there).

``/console/snapshots/<id>`` shows a snapshot, its createVolumePermission grants (owner only,
as DescribeSnapshotAttribute is) and its actions, each one EC2 call: DeleteSnapshot,
ModifySnapshotAttribute (accounts, public/private), CopySnapshot — called in the
destination region with ``SourceRegion``, as the API is; a copy to another region answers
``pending`` and reports its percentage in ``Progress``, which the copy's page (opened with
``?region=<destination>``) follows live. CreateSnapshot (from a volume) is
``POST /console/snapshots/create``.
"""

from __future__ import annotations

from typing import Any

from goldsmith.api.console.framework import Console, Done, Spec, View, action, page
from goldsmith.api.console.pages.resources import TRANSITIONAL, account_ids, name_tag, region_arg
from goldsmith.service.errors import invalid_parameter, missing_parameter

SCOPES = {"owned": "Owned by me", "shared": "Shared with me", "public": "Public snapshots"}
PER_PAGE = 50


def _scope_params(scope: str) -> dict[str, Any]:
    if scope == "owned":
        return {"OwnerIds": ["self"]}
    if scope == "shared":
        return {"RestorableByUserIds": ["self"]}
    return {"RestorableByUserIds": ["all"]}


def _public_ids(c: Console, ids: list[str]) -> set[str]:
    if not ids:
        return set()
    params = {"RestorableByUserIds": ["all"], "Filters": [{"Name": "snapshot-id", "Values": ids}]}
    return {s["SnapshotId"] for s in c.call("DescribeSnapshots", params)["Snapshots"]}


def list_snapshots(c: Console) -> View:
    scope = c.arg("scope", "owned")
    if scope not in SCOPES:
        raise invalid_parameter(f"Unknown scope {scope!r}.")
    token = c.arg("token")
    params: dict[str, Any] = _scope_params(scope)
    if c.arg("id"):
        params = {"SnapshotIds": [c.arg("id")]}
    else:
        params["MaxResults"] = PER_PAGE
        if token:
            params["NextToken"] = token
    out = c.call("DescribeSnapshots", params)
    found = [dict(s) for s in out.get("Snapshots") or []]
    if scope == "shared" and not c.arg("id"):
        # Shared with me: others' snapshots granted to me, not my own and not public ones.
        others = [s for s in found if s.get("OwnerId") != c.ctx.account_id]
        public = _public_ids(c, [s["SnapshotId"] for s in others])
        found = [s for s in others if s["SnapshotId"] not in public]
    for snap in found:
        snap["Name"] = name_tag(snap.get("Tags"))
    data = {
        "Snapshots": found,
        "Scope": scope,
        "NextToken": out.get("NextToken"),
        "Region": c.ctx.region,
    }
    volumes = (c.call("DescribeVolumes", {}).get("Volumes") or []) if scope == "owned" else []
    extra = {"scopes": SCOPES, "volumes": volumes, "account": c.ctx.account_id}
    live = any(s.get("State") in TRANSITIONAL for s in found)
    return View("snapshots.html", "Snapshots", data, nav="snapshots", live=live, extra=extra)


def _snapshot(c: Console, snapshot_id: str, region: str | None) -> dict[str, Any]:
    out = c.call("DescribeSnapshots", {"SnapshotIds": [snapshot_id]}, region=region)
    return dict(out["Snapshots"][0])


def _grants(c: Console, snapshot_id: str, region: str | None) -> dict[str, Any]:
    params = {"SnapshotId": snapshot_id, "Attribute": "createVolumePermission"}
    grants = c.call("DescribeSnapshotAttribute", params, region=region)
    items = grants.get("CreateVolumePermissions") or []
    return {
        "Accounts": [g["UserId"] for g in items if g.get("UserId")],
        "Public": any(g.get("Group") == "all" for g in items),
    }


def show_snapshot(c: Console) -> View:
    region = region_arg(c)
    snapshot_id = c.path["snapshot_id"]
    snap = _snapshot(c, snapshot_id, region)
    snap["Name"] = name_tag(snap.get("Tags"))
    owner = snap.get("OwnerId") == c.ctx.account_id
    data: dict[str, Any] = {"Snapshot": snap, "IsOwner": owner, "Region": region or c.ctx.region}
    if owner:
        data["Permissions"] = _grants(c, snapshot_id, region)
    extra = {"regions_all": c.regions}
    live = snap.get("State") in TRANSITIONAL
    title = snap["Name"] or snapshot_id
    return View("snapshot.html", title, data, nav="snapshots", live=live, extra=extra)


# -- actions -------------------------------------------------------------------------------


def _detail(snapshot_id: str, region: str | None) -> str:
    return f"/console/snapshots/{snapshot_id}" + (f"?region={region}" if region else "")


def create(c: Console) -> Done:
    volume_id = c.field("volume_id")
    if not volume_id:
        raise missing_parameter("VolumeId")
    params: dict[str, Any] = {"VolumeId": volume_id}
    if c.field("description"):
        params["Description"] = c.field("description")
    snapshot_id = c.call("CreateSnapshot", params)["SnapshotId"]
    message = f"Creating snapshot {snapshot_id} of {volume_id}."
    return Done(_detail(snapshot_id, None), message, {"SnapshotId": snapshot_id})


def delete(c: Console) -> Done:
    region = region_arg(c)
    snapshot_id = c.path["snapshot_id"]
    c.call("DeleteSnapshot", {"SnapshotId": snapshot_id}, region=region)
    return Done("/console/snapshots", f"Snapshot {snapshot_id} deleted.")


def copy(c: Console) -> Done:
    source_region = region_arg(c) or c.ctx.region
    destination = c.field("destination") or c.ctx.region
    snapshot_id = c.path["snapshot_id"]
    params: dict[str, Any] = {"SourceSnapshotId": snapshot_id, "SourceRegion": source_region}
    if c.field("description"):
        params["Description"] = c.field("description")
    new_id = c.call("CopySnapshot", params, region=destination)["SnapshotId"]
    shown = destination if destination != c.ctx.region else None
    message = f"Copying {snapshot_id} ({source_region}) to {destination} as {new_id}."
    return Done(_detail(new_id, shown), message, {"SnapshotId": new_id, "Region": destination})


def change_permissions(c: Console) -> Done:
    region = region_arg(c)
    snapshot_id = c.path["snapshot_id"]
    op = c.field("op")
    if op in ("add", "remove"):
        who = [{"UserId": a} for a in account_ids(c.field("accounts"))]
        said = ", ".join(w["UserId"] for w in who)
        message = f"Shared {snapshot_id} with {said}." if op == "add" else f"Removed {said}."
    elif op in ("public", "private"):
        who = [{"Group": "all"}]
        message = f"{snapshot_id} is now {op}."
    else:
        raise invalid_parameter(f"Unknown permission change {op!r}.")
    key = "Add" if op in ("add", "public") else "Remove"
    params = {"SnapshotId": snapshot_id, "CreateVolumePermission": {key: who}}
    c.call("ModifySnapshotAttribute", params, region=region)
    return Done(_detail(snapshot_id, region), message)


PAGES: list[Spec] = [
    page("/snapshots", list_snapshots),
    action("/snapshots/create", create),
    page("/snapshots/{snapshot_id}", show_snapshot),
    action("/snapshots/{snapshot_id}/delete", delete),
    action("/snapshots/{snapshot_id}/copy", copy),
    action("/snapshots/{snapshot_id}/permissions", change_permissions),
]
