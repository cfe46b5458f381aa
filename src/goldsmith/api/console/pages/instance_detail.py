"""One instance: details and actions, its storage, its console output.

``/console/instances/<id>?tab=details|storage|console``. The console tab shows
GetConsoleOutput decoded as text (the last 64 KiB of the serial console); its JSON twin is
``{"Instance", "Output", "Timestamp"}``, and the page's "Refresh" link simply reloads it.

``POST /console/instances/<id>/create-image`` is CreateImage: name, description, the
no-reboot option, and extra volumes as BlockDeviceMappings rows (device, size in GiB,
optionally a snapshot); the answer goes to the new image's page, which follows it from
``pending`` to ``available`` live.
"""

from __future__ import annotations

import base64
from typing import Any

from goldsmith.api.console.framework import Console, Done, Spec, View, action, page
from goldsmith.api.console.pages.resources import (
    FORM_ROWS,
    TRANSITIONAL,
    describe_instances,
    images_by_id,
    login_user,
    name_tag,
    ssh_command,
    state_name,
    tag_rows,
    volume_rows,
)
from goldsmith.service.errors import invalid_parameter, missing_parameter

TABS = {"details": "Details", "storage": "Storage", "console": "Console output"}


def _instance(c: Console, instance_id: str) -> dict[str, Any]:
    return describe_instances(c, {"InstanceIds": [instance_id]})[0]


def _console_output(c: Console, instance_id: str) -> dict[str, Any]:
    out = c.call("GetConsoleOutput", {"InstanceId": instance_id})
    raw = out.get("Output") or ""
    text = base64.b64decode(raw).decode("utf-8", "replace") if raw else ""
    return {"Output": text, "Timestamp": out.get("Timestamp")}


def _volumes(c: Console, instance_id: str) -> list[dict[str, Any]]:
    filters = [{"Name": "attachment.instance-id", "Values": [instance_id]}]
    return list(c.call("DescribeVolumes", {"Filters": filters}).get("Volumes") or [])


def show_instance(c: Console) -> View:
    instance_id = c.path["instance_id"]
    tab = c.arg("tab", "details")
    if tab not in TABS:
        raise invalid_parameter(f"Unknown tab {tab!r}.")
    instance = _instance(c, instance_id)
    image = images_by_id(c, [str(instance.get("ImageId", ""))]).get(str(instance.get("ImageId")))
    user = login_user(image)
    instance.update(
        Name=name_tag(instance.get("Tags")),
        ImageName=(image or {}).get("Name", ""),
        LoginUser=user,
        SshCommand=ssh_command(instance, user),
    )
    data: dict[str, Any] = {"Instance": instance, "Tab": tab}
    if tab == "storage":
        data["Volumes"] = _volumes(c, instance_id)
    if tab == "console":
        data.update(_console_output(c, instance_id))
    state = state_name(instance.get("State"))
    extra = {"tabs": TABS, "form_rows": range(FORM_ROWS), "state": state}
    title = instance["Name"] or instance_id
    live = state in TRANSITIONAL
    return View("instance.html", title, data, nav="instances", live=live, extra=extra)


def create_image(c: Console) -> Done:
    instance_id = c.path["instance_id"]
    name = c.field("name")
    if not name:
        raise missing_parameter("Name")
    params: dict[str, Any] = {
        "InstanceId": instance_id,
        "Name": name,
        "NoReboot": c.field("no_reboot") == "1",
    }
    if c.field("description"):
        params["Description"] = c.field("description")
    extra_volumes = volume_rows(c)
    if extra_volumes:
        params["BlockDeviceMappings"] = extra_volumes
    tags = tag_rows(c)
    if tags:
        params["TagSpecifications"] = [{"ResourceType": "image", "Tags": tags}]
    image_id = c.call("CreateImage", params)["ImageId"]
    message = f"Creating image {image_id} from {instance_id}."
    return Done(f"/console/images/{image_id}", message, {"ImageId": image_id})


PAGES: list[Spec] = [
    page("/instances/{instance_id}", show_instance),
    action("/instances/{instance_id}/create-image", create_image),
]
