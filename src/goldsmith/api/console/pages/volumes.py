"""Volumes: the table, one volume, create (empty or from a snapshot), delete, attach, detach.

``/console/volumes`` lists the account's volumes in the region (DescribeVolumes, every
page) and carries the create form (``?snapshot=snap-…`` preselects the snapshot, as the
snapshot page's "Create volume" link does). ``/console/volumes/<id>`` shows one volume with
its attachment and the attach form (the account's instances that are not terminated).
Every action is one EC2 call — CreateVolume, DeleteVolume, AttachVolume, DetachVolume —
so ``VolumeInUse``, ``IncorrectState`` and other accounts' ids answer exactly as the API.
"""

from __future__ import annotations

from typing import Any

from goldsmith.api.console.framework import Console, Done, Spec, View, action, page
from goldsmith.api.console.pages.resources import (
    TRANSITIONAL,
    describe_instances,
    gib,
    name_tag,
    state_name,
    tag_rows,
)
from goldsmith.service.errors import missing_parameter

VOLUME_TYPES = ("gp3", "gp2", "io1", "io2", "st1", "sc1", "standard")


def _all_volumes(c: Console, params: dict[str, Any]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    token: str | None = None
    while True:
        page = c.call("DescribeVolumes", {**params, **({"NextToken": token} if token else {})})
        out += [dict(v) for v in page.get("Volumes") or []]
        token = page.get("NextToken")
        if not token or params.get("VolumeIds"):
            return out


def _zones(c: Console) -> list[str]:
    zones = c.call("DescribeAvailabilityZones", {}).get("AvailabilityZones") or []
    return [str(z["ZoneName"]) for z in zones]


def _decorate(volume: dict[str, Any]) -> dict[str, Any]:
    attachments = volume.get("Attachments") or []
    return {
        **volume,
        "Name": name_tag(volume.get("Tags")),
        "Attachment": attachments[0] if attachments else None,
    }


def list_volumes(c: Console) -> View:
    volumes = [_decorate(v) for v in _all_volumes(c, {})]
    volumes.sort(key=lambda v: (str(v.get("CreateTime", "")), v["VolumeId"]), reverse=True)
    data = {"Volumes": volumes, "Region": c.ctx.region}
    extra = {"zones": _zones(c), "volume_types": VOLUME_TYPES, "snapshot": c.arg("snapshot")}
    live = any(v.get("State") in TRANSITIONAL for v in volumes)
    return View("volumes.html", "Volumes", data, nav="volumes", live=live, extra=extra)


def _attachable(c: Console) -> list[dict[str, Any]]:
    """The account's instances a volume may be attached to (not terminated or going)."""
    found = describe_instances(c, {})
    gone = ("shutting-down", "terminated")
    return [
        {
            "InstanceId": i["InstanceId"],
            "Name": name_tag(i.get("Tags")),
            "State": state_name(i.get("State")),
        }
        for i in found
        if state_name(i.get("State")) not in gone
    ]


def show_volume(c: Console) -> View:
    volume_id = c.path["volume_id"]
    volume = _decorate(_all_volumes(c, {"VolumeIds": [volume_id]})[0])
    data = {"Volume": volume, "Region": c.ctx.region}
    extra = {"instances": [] if volume["Attachment"] else _attachable(c)}
    live = volume.get("State") in TRANSITIONAL or (
        volume["Attachment"] is not None and volume["Attachment"].get("State") in TRANSITIONAL
    )
    title = volume["Name"] or volume_id
    return View("volume.html", title, data, nav="volumes", live=live, extra=extra)


# -- actions -------------------------------------------------------------------------------


def _detail(volume_id: str) -> str:
    return f"/console/volumes/{volume_id}"


def create(c: Console) -> Done:
    params: dict[str, Any] = {
        "AvailabilityZone": c.field("zone") or (_zones(c) or [""])[0],
        "VolumeType": c.field("volume_type") or "gp3",
    }
    if c.field("size"):
        params["Size"] = gib(c.field("size"), "Size")
    if c.field("snapshot_id"):
        params["SnapshotId"] = c.field("snapshot_id")
    if "Size" not in params and "SnapshotId" not in params:
        raise missing_parameter("Size")
    tags = tag_rows(c)
    if c.field("name"):
        tags = [{"Key": "Name", "Value": c.field("name")}, *tags]
    if tags:
        params["TagSpecifications"] = [{"ResourceType": "volume", "Tags": tags}]
    volume_id = c.call("CreateVolume", params)["VolumeId"]
    return Done(_detail(volume_id), f"Created volume {volume_id}.", {"VolumeId": volume_id})


def delete(c: Console) -> Done:
    volume_id = c.path["volume_id"]
    c.call("DeleteVolume", {"VolumeId": volume_id})
    return Done("/console/volumes", f"Volume {volume_id} deleted.")


def attach(c: Console) -> Done:
    volume_id = c.path["volume_id"]
    instance_id = c.field("instance_id")
    device = c.field("device")
    if not instance_id:
        raise missing_parameter("InstanceId")
    if not device:
        raise missing_parameter("Device")
    params = {"VolumeId": volume_id, "InstanceId": instance_id, "Device": device}
    c.call("AttachVolume", params)
    return Done(_detail(volume_id), f"Attaching {volume_id} to {instance_id} as {device}.")


def detach(c: Console) -> Done:
    volume_id = c.path["volume_id"]
    params: dict[str, Any] = {"VolumeId": volume_id}
    if c.field("force") == "1":
        params["Force"] = True
    c.call("DetachVolume", params)
    return Done(_detail(volume_id), f"Detaching {volume_id}.")


PAGES: list[Spec] = [
    page("/volumes", list_volumes),
    action("/volumes/create", create),
    page("/volumes/{volume_id}", show_volume),
    action("/volumes/{volume_id}/delete", delete),
    action("/volumes/{volume_id}/attach", attach),
    action("/volumes/{volume_id}/detach", detach),
]
