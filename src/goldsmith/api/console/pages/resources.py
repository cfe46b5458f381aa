"""Small pieces the instances, launch, snapshots and volumes pages share.

Everything here shapes what the service answered for display, or reads repeated form rows
(tags, extra volumes) into EC2 parameters; no rule of EC2 lives here — invalid values are
sent on and the service's own validation answers them.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from goldsmith.api.console.framework import Console
from goldsmith.service.errors import Ec2Error, invalid_parameter

#: States that change by themselves: a page showing one polls its JSON twin.
TRANSITIONAL = frozenset(
    {"pending", "stopping", "shutting-down", "creating", "deleting", "attaching", "detaching"}
)
ACCOUNT_RE = re.compile(r"^\d{12}$")
#: How many tag and extra-volume rows the forms offer (no script needed to add rows).
FORM_ROWS = 3


def name_tag(tags: Sequence[Mapping[str, Any]] | None) -> str:
    for tag in tags or ():
        if tag.get("Key") == "Name":
            return str(tag.get("Value", ""))
    return ""


def state_name(state: Any) -> str:
    """An instance's ``State`` is ``{"Name", "Code"}``; images', volumes' a string."""
    return str(state.get("Name", "")) if isinstance(state, Mapping) else str(state or "")


def login_user(image: Mapping[str, Any] | None) -> str:
    """The user the platform images log in as: ``admin`` on Debian, ``ec2-user`` otherwise.

    A hint for the connect command only (images built from a Debian instance keep "debian"
    in their name or description when their owner keeps it there)."""
    text = f"{(image or {}).get('Name', '')} {(image or {}).get('Description', '')}".lower()
    return "admin" if "debian" in text else "ec2-user"


def ssh_command(instance: Mapping[str, Any], user: str) -> str:
    """``ssh -i KEY.pem user@ADDRESS`` for a running instance ('' without an address)."""
    address = instance.get("PublicIpAddress")
    if not address or state_name(instance.get("State")) != "running":
        return ""
    key = instance.get("KeyName")
    return f"ssh -i {key}.pem {user}@{address}" if key else f"ssh {user}@{address}"


def describe_instances(c: Console, params: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Every instance DescribeInstances answers (all pages), newest launch first."""
    out: list[dict[str, Any]] = []
    token: str | None = None
    while True:
        page = c.call("DescribeInstances", {**params, **({"NextToken": token} if token else {})})
        for reservation in page.get("Reservations") or []:
            out += [dict(i) for i in reservation.get("Instances") or []]
        token = page.get("NextToken")
        if not token or params.get("InstanceIds"):
            break
    out.sort(key=lambda i: (str(i.get("LaunchTime", "")), i["InstanceId"]), reverse=True)
    return out


def images_by_id(c: Console, ids: Sequence[str]) -> dict[str, dict[str, Any]]:
    """The images among ``ids`` the caller still sees (one DescribeImages call per id, so an
    image deregistered since a launch hides only itself)."""
    found: dict[str, dict[str, Any]] = {}
    for image_id in dict.fromkeys(i for i in ids if i):
        try:
            out = c.call(
                "DescribeImages",
                {"ImageIds": [image_id], "IncludeDeprecated": True, "IncludeDisabled": True},
            )
        except Ec2Error:  # a vanished image is shown by its id only
            continue
        found.update({i["ImageId"]: dict(i) for i in out.get("Images") or []})
    return found


def tag_rows(c: Console, prefix: str = "tag") -> list[dict[str, str]]:
    """``tag_key``/``tag_value`` form rows → EC2 ``Tags`` (rows without a key are skipped)."""
    keys = c.form.get(f"{prefix}_key", ())
    values = c.form.get(f"{prefix}_value", ())
    tags = []
    for i, key in enumerate(keys):
        if key.strip():
            value = values[i] if i < len(values) else ""
            tags.append({"Key": key.strip(), "Value": value.strip()})
    return tags


def gib(text: str, what: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise invalid_parameter(f"{what} must be a whole number of GiB, not {text!r}.") from None
    return value


def volume_rows(c: Console) -> list[dict[str, Any]]:
    """``vol_device``/``vol_size``/``vol_snapshot`` rows → BlockDeviceMappings entries.

    A row with no device and no size is unused; a new volume is deleted with its instance.
    """
    devices = c.form.get("vol_device", ())
    sizes = c.form.get("vol_size", ())
    snapshots = c.form.get("vol_snapshot", ())
    out: list[dict[str, Any]] = []
    for i, device in enumerate(devices):
        size = sizes[i].strip() if i < len(sizes) else ""
        snapshot = snapshots[i].strip() if i < len(snapshots) else ""
        if not device.strip() and not size and not snapshot:
            continue
        ebs: dict[str, Any] = {"DeleteOnTermination": True, "VolumeType": "gp3"}
        if size:
            ebs["VolumeSize"] = gib(size, f"Volume size of {device.strip() or 'a volume'}")
        if snapshot:
            ebs["SnapshotId"] = snapshot
        out.append({"DeviceName": device.strip(), "Ebs": ebs})
    return out


def account_ids(text: str) -> list[str]:
    """12-digit account ids separated by spaces or commas (at least one)."""
    ids = [part for part in re.split(r"[\s,]+", text) if part]
    for account in ids:
        if not ACCOUNT_RE.match(account):
            raise invalid_parameter(f"{account!r} is not a 12-digit account id.")
    if not ids:
        raise invalid_parameter("Give at least one 12-digit account id.")
    return ids


def region_arg(c: Console, name: str = "region") -> str | None:
    """The region a page or action names (another of the caller's regions), else None."""
    region = c.arg(name) or c.field(name)
    return region if region and region != c.ctx.region else None
