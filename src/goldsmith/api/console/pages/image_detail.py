"""One image: tabs (details, permissions, storage, tags, lineage) and its actions.

``/console/images/<id>?tab=<tab>``; every action is a POST under ``/console/images/<id>/``
that makes the same EC2 call a client would (ModifyImageAttribute, CreateTags,
EnableImageDeprecation, DeregisterImage, CopyImage in the destination region, …), so the
owner checks, block public access and validation are the API's. Only the owner sees the
permissions tab's controls (DescribeImageAttribute launchPermission is owner-only in EC2).
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

from goldsmith.api.console.framework import Console, Done, Spec, View, action, page
from goldsmith.api.console.pages import progress
from goldsmith.service.console_views import regions_in_use
from goldsmith.service.errors import Ec2Error, invalid_parameter, missing_parameter

TABS = {
    "details": "Details",
    "permissions": "Permissions",
    "storage": "Storage",
    "tags": "Tags",
    "lineage": "Lineage",
}
ACCOUNT_RE = re.compile(r"^\d{12}$")
#: Offered when the server has no DescribeInstanceTypes (the first is the default).
INSTANCE_TYPES = ("t2.micro",)


def _instance_types(c: Console) -> list[str]:
    """The instance types the server offers (smallest memory first), for the launch form."""
    if not c.supports("DescribeInstanceTypes"):
        return list(INSTANCE_TYPES)
    found = c.call("DescribeInstanceTypes", {}).get("InstanceTypes") or []
    ordered = sorted(
        found,
        key=lambda t: ((t.get("MemoryInfo") or {}).get("SizeInMiB", 0), t["InstanceType"]),
    )
    return [str(t["InstanceType"]) for t in ordered] or list(INSTANCE_TYPES)


def _image(c: Console, image_id: str) -> dict[str, Any]:
    out = c.call(
        "DescribeImages",
        {"ImageIds": [image_id], "IncludeDeprecated": True, "IncludeDisabled": True},
    )
    return dict(out["Images"][0])


def _permissions(c: Console, image_id: str) -> dict[str, Any]:
    grants = c.call(
        "DescribeImageAttribute", {"ImageId": image_id, "Attribute": "launchPermission"}
    )["LaunchPermissions"]
    blocked = c.call("GetImageBlockPublicAccessState", {})
    return {
        "Accounts": [g["UserId"] for g in grants if g.get("UserId")],
        "Other": [g for g in grants if not g.get("UserId") and g.get("Group") != "all"],
        "BlockPublicAccess": blocked.get("ImageBlockPublicAccessState") == "block-new-sharing",
    }


def _copies(c: Console, image_id: str) -> list[dict[str, Any]]:
    """Images (visible to the caller, in any region) copied from ``image_id``."""
    out: list[dict[str, Any]] = []
    filters = [
        {"Name": "source-image-id", "Values": [image_id]},
        {"Name": "source-image-region", "Values": [c.ctx.region]},
    ]
    for region in regions_in_use(c.services.catalog, c.services.regions.enabled):
        found = c.call(
            "DescribeImages", {"Filters": filters, "IncludeDeprecated": True}, region=region
        )
        copies = [{**image, "Region": region} for image in found["Images"]]
        progress.annotate(c, copies, region)
        out += copies
    return out


def _lineage(c: Console, image_id: str) -> dict[str, Any]:
    ancestry: list[dict[str, Any]] = []
    if c.supports("GetImageAncestry"):
        try:
            ancestry = c.call("GetImageAncestry", {"ImageId": image_id})["ImageAncestryEntries"]
        except Ec2Error:
            ancestry = []  # a source the caller may no longer see ends the chain
    return {"Ancestry": ancestry, "Copies": _copies(c, image_id)}


def show_image(c: Console) -> View:
    image_id = c.path["image_id"]
    tab = c.arg("tab", "details")
    if tab not in TABS:
        raise invalid_parameter(f"Unknown tab {tab!r}.")
    image = _image(c, image_id)
    progress.annotate(c, [image])
    owner = image.get("OwnerId") == c.ctx.account_id
    data: dict[str, Any] = {"Image": image, "IsOwner": owner, "Tab": tab}
    if owner and tab == "permissions":
        data["Permissions"] = _permissions(c, image_id)
    if tab == "lineage":
        data.update(_lineage(c, image_id))
    extra = {
        "tabs": TABS,
        "copy_supported": c.supports("CopyImage"),
        "launch_supported": c.supports("RunInstances"),
        "instance_types": INSTANCE_TYPES,
        "other_regions": [r for r in c.regions if r != c.ctx.region] or c.regions,
    }
    if tab == "details" and extra["launch_supported"]:
        extra["key_names"] = sorted(
            k["KeyName"] for k in c.call("DescribeKeyPairs", {})["KeyPairs"]
        )
        extra["instance_types"] = _instance_types(c)
    title = f"{image.get('Name') or image_id}"
    pending = [image, *data.get("Copies", [])]
    live = any(i.get("State") == "pending" for i in pending)
    return View("image.html", title, data, nav="images", live=live, extra=extra)


# -- actions -------------------------------------------------------------------------------


def _back(c: Console, tab: str = "details") -> str:
    return f"/console/images/{c.path['image_id']}?tab={tab}"


def _accounts(text: str) -> list[str]:
    ids = [part for part in re.split(r"[\s,]+", text) if part]
    for account in ids:
        if not ACCOUNT_RE.match(account):
            raise invalid_parameter(f"{account!r} is not a 12-digit account id.")
    if not ids:
        raise missing_parameter("account")
    return ids


def change_permissions(c: Console) -> Done:
    image_id = c.path["image_id"]
    op = c.field("op")
    if op in ("add", "remove"):
        who = [{"UserId": a} for a in _accounts(c.field("accounts"))]
        said = ", ".join(w["UserId"] for w in who)
        message = f"Shared {image_id} with {said}." if op == "add" else f"Removed {said}."
    elif op in ("public", "private"):
        who = [{"Group": "all"}]
        message = f"{image_id} is now {op}."
    else:
        raise invalid_parameter(f"Unknown permission change {op!r}.")
    key = "Add" if op in ("add", "public") else "Remove"
    c.call("ModifyImageAttribute", {"ImageId": image_id, "LaunchPermission": {key: who}})
    return Done(_back(c, "permissions"), message)


def change_tags(c: Console) -> Done:
    image_id = c.path["image_id"]
    key = c.field("key")
    if not key:
        raise missing_parameter("key")
    if c.field("op") == "delete":
        c.call("DeleteTags", {"Resources": [image_id], "Tags": [{"Key": key}]})
        return Done(_back(c, "tags"), f"Tag {key} removed.")
    tag = {"Key": key, "Value": c.field("value")}
    c.call("CreateTags", {"Resources": [image_id], "Tags": [tag]})
    return Done(_back(c, "tags"), f"Tag {key} saved.")


def _when(text: str) -> datetime:
    """A ``datetime-local`` or ``date`` form value, taken as UTC."""
    for layout in ("%Y-%m-%dT%H:%M", "%Y-%m-%d"):
        try:
            return datetime.strptime(text, layout).replace(tzinfo=UTC)
        except ValueError:
            continue
    raise invalid_parameter(f"{text!r} is not a date and time (YYYY-MM-DDTHH:MM, UTC).")


def deprecate(c: Console) -> Done:
    image_id = c.path["image_id"]
    if c.field("op") == "cancel":
        c.call("DisableImageDeprecation", {"ImageId": image_id})
        return Done(_back(c), f"Deprecation of {image_id} cancelled.")
    at = c.field("at")
    when = _when(at) if at else datetime.now(UTC)
    c.call("EnableImageDeprecation", {"ImageId": image_id, "DeprecateAt": when})
    return Done(_back(c), f"{image_id} deprecates at {when:%Y-%m-%d %H:%M} UTC.")


def disable(c: Console) -> Done:
    c.call("DisableImage", {"ImageId": c.path["image_id"]})
    return Done(_back(c), f"{c.path['image_id']} disabled.")


def enable(c: Console) -> Done:
    c.call("EnableImage", {"ImageId": c.path["image_id"]})
    return Done(_back(c), f"{c.path['image_id']} enabled.")


def deregister(c: Console) -> Done:
    image_id = c.path["image_id"]
    params = {"ImageId": image_id, "DeleteAssociatedSnapshots": c.field("delete_snapshots") == "1"}
    c.call("DeregisterImage", params)
    return Done("/console/images", f"{image_id} deregistered.")


def copy(c: Console) -> Done:
    image_id = c.path["image_id"]
    region = c.field("region")
    if not region:
        raise missing_parameter("region")
    params: dict[str, Any] = {
        "SourceImageId": image_id,
        "SourceRegion": c.ctx.region,
        "Name": c.field("name") or _image(c, image_id).get("Name", image_id),
    }
    if c.field("description"):
        params["Description"] = c.field("description")
    new_id = c.call("CopyImage", params, region=region)["ImageId"]
    message = f"Copying {image_id} to {region} as {new_id} (switch region to follow it)."
    return Done(_back(c, "lineage"), message, {"ImageId": new_id, "Region": region})


def launch(c: Console) -> Done:
    image_id = c.path["image_id"]
    params: dict[str, Any] = {
        "ImageId": image_id,
        "InstanceType": c.field("instance_type") or INSTANCE_TYPES[0],
        "MinCount": 1,
        "MaxCount": 1,
    }
    if c.field("key_name"):
        params["KeyName"] = c.field("key_name")
    out = c.call("RunInstances", params)
    ids = [i["InstanceId"] for i in out.get("Instances", [])]
    return Done("/console/instances", f"Launched {', '.join(ids)} from {image_id}.", {"Ids": ids})


_ACTIONS = {
    "permissions": change_permissions,
    "tags": change_tags,
    "deprecate": deprecate,
    "disable": disable,
    "enable": enable,
    "deregister": deregister,
    "copy": copy,
    "launch": launch,
}

PAGES: list[Spec] = [
    page("/images/{image_id}", show_image),
    *[action(f"/images/{{image_id}}/{verb}", fn) for verb, fn in _ACTIONS.items()],
]
