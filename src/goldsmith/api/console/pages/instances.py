"""Instances: the table (EC2's "Instances" page) and the state actions.

``/console/instances?state=running`` lists the signed-in account's instances in the
selected region (DescribeInstances, every page of it) with their state, type, image,
addresses, the ``ssh`` command that connects and the launch time. The page polls its JSON
twin while an instance is in a transitional state (pending → running, stopping → stopped,
shutting-down → terminated), so states change in place without a manual reload.

``POST /console/instances/state`` with ``op`` (start, stop, reboot, terminate) and one or
more ``instance_id`` fields makes the one EC2 call for that ``op`` on all of them; another
account's id answers as the API does (InvalidInstanceID.NotFound) and nothing happens.
The instance page, its actions and the launch wizard are in :mod:`.instance_detail` and
:mod:`.launch`.
"""

from __future__ import annotations

from typing import Any

from goldsmith.api.console.framework import Console, Done, Spec, View, action, page, safe_next
from goldsmith.api.console.pages.instance_detail import PAGES as DETAIL_PAGES
from goldsmith.api.console.pages.launch import PAGES as LAUNCH_PAGES
from goldsmith.api.console.pages.resources import (
    TRANSITIONAL,
    describe_instances,
    images_by_id,
    login_user,
    name_tag,
    ssh_command,
    state_name,
)
from goldsmith.service.errors import invalid_parameter, missing_parameter

STATES = ("pending", "running", "stopping", "stopped", "shutting-down", "terminated")

#: ``op`` → (EC2 operation, past tense for the message).
OPS: dict[str, tuple[str, str]] = {
    "start": ("StartInstances", "Starting"),
    "stop": ("StopInstances", "Stopping"),
    "reboot": ("RebootInstances", "Rebooting"),
    "terminate": ("TerminateInstances", "Terminating"),
}


def decorate(instance: dict[str, Any], image: dict[str, Any] | None) -> dict[str, Any]:
    """An instance as DescribeInstances gave it, plus what the table shows beside it."""
    user = login_user(image)
    return {
        **instance,
        "Name": name_tag(instance.get("Tags")),
        "ImageName": (image or {}).get("Name", ""),
        "LoginUser": user,
        "SshCommand": ssh_command(instance, user),
    }


def list_instances(c: Console) -> View:
    state = c.arg("state")
    params: dict[str, Any] = {}
    if state:
        if state not in STATES:
            raise invalid_parameter(f"Unknown instance state {state!r}.")
        params["Filters"] = [{"Name": "instance-state-name", "Values": [state]}]
    found = describe_instances(c, params)
    images = images_by_id(c, [str(i.get("ImageId", "")) for i in found])
    instances = [decorate(i, images.get(str(i.get("ImageId")))) for i in found]
    data = {"Instances": instances, "Region": c.ctx.region, "State": state}
    live = any(state_name(i.get("State")) in TRANSITIONAL for i in instances)
    extra = {"states": STATES}
    return View("instances.html", "Instances", data, nav="instances", live=live, extra=extra)


def change_state(c: Console) -> Done:
    op = c.field("op")
    if op not in OPS:
        raise invalid_parameter(f"Unknown instance action {op!r}.")
    ids = c.fields("instance_id")
    if not ids:
        raise missing_parameter("InstanceId")
    operation, doing = OPS[op]
    params: dict[str, Any] = {"InstanceIds": ids}
    if op == "stop" and c.field("force") == "1":
        params["Force"] = True
    c.call(operation, params)
    back = safe_next(c.field("next")) or "/console/instances"
    return Done(back, f"{doing} {', '.join(ids)}.", {"InstanceIds": ids, "Op": op})


# The launch wizard's and the detail page's paths come first: "launch" is not an id.
PAGES: list[Spec] = [
    *LAUNCH_PAGES,
    page("/instances", list_instances),
    action("/instances/state", change_state),
    *DETAIL_PAGES,
]
