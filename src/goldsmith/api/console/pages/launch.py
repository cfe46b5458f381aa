"""The launch wizard: image, instance type, key pair, user data, volumes, tags, count.

``GET /console/instances/launch?image=ami-…`` (the image page's Launch action links here
with the image chosen) shows one form in sections, as EC2's "Launch an instance" page does;
without an image it offers the available images the caller may launch (owned, shared,
public; ``q`` searches names). The instance types are DescribeInstanceTypes' table.

``POST /console/instances/launch`` is one RunInstances. The key pair section either picks
an existing pair, or creates one / imports a public key first — through the key pairs
page's own actions (:mod:`.keypairs`), so there is one implementation of each. A created
key's private half is shown once, on the answer page, with the launched instances — also
when the launch itself then failed (the key exists either way, and is never shown again).
"""

from __future__ import annotations

import base64
import dataclasses
from typing import Any

from goldsmith.api.console.framework import Console, Done, Spec, View, action, page
from goldsmith.api.console.pages import keypairs
from goldsmith.api.console.pages.images import describe_in_order
from goldsmith.api.console.pages.resources import FORM_ROWS, gib, tag_rows, volume_rows
from goldsmith.service.console_views import ImageQuery, Scope, find_images
from goldsmith.service.errors import Ec2Error, invalid_parameter, missing_parameter

DEFAULT_TYPE = "t2.micro"
KEY_MODES = {
    "existing": "Use an existing key pair",
    "create": "Create a new key pair",
    "import": "Import a public key",
    "none": "Proceed without a key pair",
}
MAX_COUNT = 20
PICK_PER_SCOPE = 20


def _candidates(c: Console) -> list[dict[str, Any]]:
    """Available images the caller may launch, by scope, for the wizard's picker."""
    search = c.arg("q")
    filters: list[dict[str, Any]] = [{"Name": "state", "Values": ["available"]}]
    if search:
        wild = "*" in search or "?" in search
        filters.append({"Name": "name", "Values": [search if wild else f"*{search}*"]})
    out: list[dict[str, Any]] = []
    scopes: tuple[Scope, ...] = ("owned", "shared", "public")
    for scope in scopes:
        query = ImageQuery(scope=scope, filters=filters, per_page=PICK_PER_SCOPE)
        ids = find_images(c.services.images, c.ctx, query).ids
        out += [{**image, "Scope": scope} for image in describe_in_order(c, ids)]
    return out


def _chosen_image(c: Console, image_id: str) -> dict[str, Any]:
    out = c.call("DescribeImages", {"ImageIds": [image_id], "IncludeDeprecated": True})
    return dict(out["Images"][0])


def _instance_types(c: Console) -> list[dict[str, Any]]:
    out = c.call("DescribeInstanceTypes", {}).get("InstanceTypes") or []
    return sorted(out, key=lambda t: str(t.get("InstanceType")))


def wizard(c: Console) -> View:
    image_id = c.arg("image")
    data: dict[str, Any] = {
        "Image": _chosen_image(c, image_id) if image_id else None,
        "Images": [] if image_id else _candidates(c),
        "InstanceTypes": _instance_types(c),
        "KeyPairs": sorted(
            (k["KeyName"] for k in c.call("DescribeKeyPairs", {}).get("KeyPairs") or []),
        ),
        "Region": c.ctx.region,
    }
    extra = {
        "key_modes": KEY_MODES,
        "default_type": DEFAULT_TYPE,
        "form_rows": range(FORM_ROWS),
        "max_count": MAX_COUNT,
    }
    return View("launch.html", "Launch an instance", data, nav="instances", extra=extra)


# -- the launch ----------------------------------------------------------------------------


def _count(c: Console) -> int:
    text = c.field("count") or "1"
    try:
        count = int(text)
    except ValueError:
        message = f"Number of instances must be a whole number, not {text!r}."
        raise invalid_parameter(message) from None
    if not 1 <= count <= MAX_COUNT:
        raise invalid_parameter(f"Number of instances must be between 1 and {MAX_COUNT}.")
    return count


def _mappings(c: Console, image_id: str) -> list[dict[str, Any]]:
    """The root volume's size (when given) and the extra volumes, as BlockDeviceMappings."""
    out: list[dict[str, Any]] = []
    root_size = c.field("root_size")
    if root_size:
        root = _chosen_image(c, image_id).get("RootDeviceName") or "/dev/xvda"
        out.append({"DeviceName": root, "Ebs": {"VolumeSize": gib(root_size, "Root size")}})
    return out + volume_rows(c)


def run_params(c: Console, key_name: str | None) -> dict[str, Any]:
    """RunInstances' parameters from the wizard's form (validation is the service's)."""
    image_id = c.field("image_id")
    if not image_id:
        raise missing_parameter("ImageId")
    count = _count(c)
    params: dict[str, Any] = {
        "ImageId": image_id,
        "InstanceType": c.field("instance_type") or DEFAULT_TYPE,
        "MinCount": count,
        "MaxCount": count,
    }
    if key_name:
        params["KeyName"] = key_name
    user_data = c.form.get("user_data", [""])[0]
    if user_data.strip():
        # The API carries UserData base64-encoded, as boto3 sends it.
        params["UserData"] = base64.b64encode(user_data.replace("\r\n", "\n").encode()).decode()
    mappings = _mappings(c, image_id)
    if mappings:
        params["BlockDeviceMappings"] = mappings
    tags = tag_rows(c)
    name = c.field("name")
    if name:
        tags = [{"Key": "Name", "Value": name}, *[t for t in tags if t["Key"] != "Name"]]
    if tags:
        params["TagSpecifications"] = [
            {"ResourceType": "instance", "Tags": tags},
            {"ResourceType": "volume", "Tags": tags},
        ]
    return params


def _with_form(c: Console, form: dict[str, str]) -> Console:
    """``c`` with another form: how the wizard calls the key pairs page's actions."""
    return dataclasses.replace(c, form={k: [v] for k, v in form.items()})


def _key_pair(c: Console) -> tuple[str | None, dict[str, Any] | None]:
    """The key pair to launch with, creating or importing it first when asked to.

    Returns its name and, for a created pair, CreateKeyPair's answer (the private key)."""
    mode = c.field("key_mode") or "none"
    if mode == "existing":
        name = c.field("key_name")
        if not name:
            raise missing_parameter("KeyName")
        return name, None
    if mode == "create":
        name = c.field("new_key_name")
        form = {"name": name, "key_type": c.field("new_key_type") or "ed25519", "key_format": "pem"}
        created = keypairs.create(_with_form(c, form))
        return name, created.data
    if mode == "import":
        name = c.field("import_key_name")
        keypairs.import_key(_with_form(c, {"name": name, "public_key": c.field("public_key")}))
        return name, None
    if mode == "none":
        return None, None
    raise invalid_parameter(f"Unknown key pair choice {mode!r}.")


def launch(c: Console) -> Done | View:
    # Every form error that does not depend on the key is found before a key is created.
    run_params(c, None)
    key_name, created = _key_pair(c)
    if created is None:
        out = c.call("RunInstances", run_params(c, key_name))
        ids = [i["InstanceId"] for i in out.get("Instances") or []]
        return Done("/console/instances", f"Launched {', '.join(ids)}.", {"InstanceIds": ids})
    data: dict[str, Any] = {**created, "InstanceIds": []}
    try:
        out = c.call("RunInstances", run_params(c, key_name))
        data["InstanceIds"] = [i["InstanceId"] for i in out.get("Instances") or []]
    except Ec2Error as exc:
        data["LaunchError"] = {"Code": exc.code, "Message": exc.message}
    extra = {"filename": f"{key_name}.pem"}
    return View("launch_key.html", "Instance launched", data, nav="instances", extra=extra)


PAGES: list[Spec] = [
    page("/instances/launch", wizard),
    action("/instances/launch", launch),
]
