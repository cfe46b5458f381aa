"""Image attributes and launch permissions; image block public access.

Who may do what (see docs/images.md):

* DescribeImageAttribute: anyone who can see the image, except ``launchPermission``, which
  only the owner reads (others: AuthFailure, as EC2), and the deprecated
  ``blockDeviceMapping``, which EC2 refuses to everyone with AuthFailure;
* ModifyImageAttribute / ResetImageAttribute: the owner only (AuthFailure for a visible
  image of someone else, NotFound for an invisible one);
* CancelImageLaunchPermission: an account removes its own direct grant;
* making an image public while the owner's block public access is on →
  ``OperationNotPermitted``; a disabled image cannot be shared.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

import sqlalchemy as sa

from goldsmith.catalog import images as rows
from goldsmith.service.context import RequestContext
from goldsmith.service.errors import (
    ClientError,
    invalid_parameter,
    missing_parameter,
    not_authorized_for,
)
from goldsmith.service.images.common import (
    ImageDeps,
    get_owned,
    get_visible,
    image_id_param,
)
from goldsmith.service.images.render import deregistration_protection, iso, mappings, product_codes

ATTRIBUTES = (
    "description",
    "kernel",
    "ramdisk",
    "launchPermission",
    "productCodes",
    "blockDeviceMapping",
    "sriovNetSupport",
    "bootMode",
    "tpmSupport",
    "uefiData",
    "lastLaunchedTime",
    "imdsSupport",
    "deregistrationProtection",
)
ACCOUNT_RE = re.compile(r"^\d{12}$")
ORG_ARN_RE = re.compile(r"^arn:aws[a-z-]*:organizations::\d{12}:organization/o-[a-z0-9]{10,32}$")
OU_ARN_RE = re.compile(
    r"^arn:aws[a-z-]*:organizations::\d{12}:ou/o-[a-z0-9]{10,32}/ou-[a-z0-9]{4,32}-[a-z0-9]{8,32}$"
)
BLOCK_STATE = "block-new-sharing"

Grant = tuple[str, str]


def _value(value: Any) -> dict[str, Any] | None:
    return {"Value": value} if value is not None else None


def launch_permissions(image: rows.ImageRow, grants: Sequence[Grant]) -> list[dict[str, str]]:
    out: list[dict[str, str]] = [{"Group": "all"}] if image.is_public else []
    member = {"user": "UserId", "org": "OrganizationArn", "ou": "OrganizationalUnitArn"}
    out += [{member[kind]: value} for kind, value in grants]
    return out


def _grant(spec: Mapping[str, Any]) -> Grant:
    """One LaunchPermission → ``(kind, value)``; ``("group", "all")`` means public."""
    given = [(k, v) for k, v in spec.items() if v is not None]
    if len(given) != 1:
        raise invalid_parameter(
            "A launch permission must name exactly one of UserId, Group, OrganizationArn or "
            "OrganizationalUnitArn"
        )
    key, value = given[0]
    value = str(value)
    if key == "UserId":
        if not ACCOUNT_RE.match(value):
            raise ClientError("InvalidUserID.Malformed", f'User ID "{value}" is malformed')
        return ("user", value)
    if key == "Group":
        if value != "all":
            raise invalid_parameter(f"Value ({value}) for parameter Group is invalid.")
        return ("group", "all")
    if key == "OrganizationArn":
        if not ORG_ARN_RE.match(value):
            raise invalid_parameter(f"The organization ARN '{value}' is not valid.")
        return ("org", value)
    if key == "OrganizationalUnitArn":
        if not OU_ARN_RE.match(value):
            raise invalid_parameter(f"The organizational unit ARN '{value}' is not valid.")
        return ("ou", value)
    raise invalid_parameter(f"Unknown launch permission member {key}")


def _legacy_grants(params: Mapping[str, Any]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = [{"UserId": u} for u in params.get("UserIds") or []]
    out += [{"Group": g} for g in params.get("UserGroups") or []]
    out += [{"OrganizationArn": a} for a in params.get("OrganizationArns") or []]
    out += [{"OrganizationalUnitArn": a} for a in params.get("OrganizationalUnitArns") or []]
    return out


def _changes(params: Mapping[str, Any]) -> tuple[list[Grant], list[Grant]]:
    """(added, removed) launch permissions, from the structured or the legacy form."""
    structured = params.get("LaunchPermission") or {}
    add = [_grant(s) for s in structured.get("Add") or []]
    remove = [_grant(s) for s in structured.get("Remove") or []]
    legacy = _legacy_grants(params)
    if legacy:
        operation = params.get("OperationType")
        if operation not in ("add", "remove"):
            raise missing_parameter("OperationType")
        (add if operation == "add" else remove).extend(_grant(s) for s in legacy)
    return add, remove


class Attributes:
    """Describe/Modify/Reset image attributes, CancelImageLaunchPermission, block public access."""

    def __init__(self, deps: ImageDeps) -> None:
        self._deps = deps

    def describe_image_attribute(
        self, ctx: RequestContext, params: Mapping[str, Any]
    ) -> dict[str, Any]:
        attribute = params.get("Attribute")
        if attribute is None:
            raise missing_parameter("Attribute")
        if attribute not in ATTRIBUTES:
            raise invalid_parameter(
                f"Value ({attribute}) for parameter attribute is invalid. Unknown attribute."
            )
        image_id = image_id_param(params)
        with self._deps.catalog.begin() as conn:
            image, _ = get_visible(conn, ctx, image_id)
            if attribute == "launchPermission" and image.account_id != ctx.account_id:
                raise not_authorized_for(f"image:{image_id}")
            if attribute == "blockDeviceMapping":
                # Deprecated on EC2: it answers Client.AuthFailure to everyone, owner included
                # (DescribeImages reports the mappings).
                raise not_authorized_for(
                    f"image:{image_id}", "Unauthorized attempt to access restricted resource"
                )
            grants = rows.permissions_of(conn, image_id)
        return {"ImageId": image_id, **self._attribute(image, grants, attribute)}

    @staticmethod
    def _attribute(image: rows.ImageRow, grants: Sequence[Grant], attribute: str) -> dict[str, Any]:
        simple: dict[str, tuple[str, Any]] = {
            "description": ("Description", image.description),
            "kernel": ("KernelId", image.kernel_id),
            "ramdisk": ("RamdiskId", image.ramdisk_id),
            "sriovNetSupport": ("SriovNetSupport", image.sriov_net_support),
            "bootMode": ("BootMode", image.boot_mode),
            "tpmSupport": ("TpmSupport", image.tpm_support),
            "uefiData": ("UefiData", image.uefi_data),
            "lastLaunchedTime": ("LastLaunchedTime", iso(image.last_launched_time)),
            "imdsSupport": ("ImdsSupport", image.imds_support),
            "deregistrationProtection": (
                "DeregistrationProtection",
                deregistration_protection(image),
            ),
        }
        if attribute in simple:
            member, value = simple[attribute]
            # EC2 answers an empty structure for a description that was never set.
            return {member: _value(value) or ({} if attribute == "description" else None)}
        if attribute == "launchPermission":
            return {"LaunchPermissions": launch_permissions(image, grants)}
        if attribute == "productCodes":
            return {"ProductCodes": product_codes(image) or []}
        return {"BlockDeviceMappings": mappings(image.block_devices)}

    def modify_image_attribute(
        self, ctx: RequestContext, params: Mapping[str, Any]
    ) -> dict[str, Any]:
        image_id = image_id_param(params)
        attribute = params.get("Attribute")
        if attribute is not None and attribute not in (
            "description",
            "imdsSupport",
            "launchPermission",
        ):
            raise invalid_parameter(
                f"Value ({attribute}) for parameter attribute is invalid. "
                "Only description, imdsSupport and launchPermission can be modified."
            )
        if params.get("ProductCodes"):
            raise invalid_parameter("Product codes cannot be modified (not supported by EC2).")
        with self._deps.catalog.begin() as conn:
            image = get_owned(conn, ctx, image_id, "ModifyImageAttribute")
            changed = self._modify_description(conn, image, params)
            changed |= self._modify_imds(conn, image, params)
            changed |= self._modify_permissions(conn, ctx, image, params)
            if not changed:
                raise ClientError(
                    "MissingParameter",
                    "The request must contain the parameter description, imdsSupport or "
                    "launchPermission",
                )
        return {}

    @staticmethod
    def _modify_description(
        conn: sa.Connection, image: rows.ImageRow, params: Mapping[str, Any]
    ) -> bool:
        value: Any = None
        if params.get("Description") is not None:
            value = params["Description"].get("Value")
        elif params.get("Attribute") == "description":
            value = params.get("Value")
        else:
            return False
        value = "" if value is None else str(value)
        if len(value) > 255:
            raise invalid_parameter(
                "Value for parameter description is invalid. Length exceeds maximum of 255 "
                "characters."
            )
        rows.update_image(conn, image.image_id, description=value)
        return True

    @staticmethod
    def _modify_imds(conn: sa.Connection, image: rows.ImageRow, params: Mapping[str, Any]) -> bool:
        if params.get("ImdsSupport") is not None:
            value = params["ImdsSupport"].get("Value")
        elif params.get("Attribute") == "imdsSupport":
            value = params.get("Value")
        else:
            return False
        if value != "v2.0":
            raise invalid_parameter(f"Value ({value}) for parameter imdsSupport is invalid.")
        rows.update_image(conn, image.image_id, imds_support="v2.0")
        return True

    def _modify_permissions(
        self,
        conn: sa.Connection,
        ctx: RequestContext,
        image: rows.ImageRow,
        params: Mapping[str, Any],
    ) -> bool:
        add, remove = _changes(params)
        if not add and not remove:
            return params.get("Attribute") == "launchPermission" and bool(
                params.get("LaunchPermission")
            )
        if add and image.state == "disabled":
            raise ClientError(
                "InvalidParameterValue",
                f"The image {image.image_id} is disabled and can't be shared.",
            )
        public_add = ("group", "all") in add
        if public_add and rows.block_public_access(conn, ctx.region, ctx.account_id):
            raise ClientError(
                "OperationNotPermitted",
                "You can't publicly share this image because block public access for AMIs "
                "is enabled for this account.",
            )
        rows.add_permissions(conn, ctx.region, image.image_id, [g for g in add if g[0] != "group"])
        rows.remove_permissions(conn, image.image_id, [g for g in remove if g[0] != "group"])
        if public_add:
            rows.update_image(conn, image.image_id, is_public=True)
        elif ("group", "all") in remove:
            rows.update_image(conn, image.image_id, is_public=False)
        return True

    def reset_image_attribute(
        self, ctx: RequestContext, params: Mapping[str, Any]
    ) -> dict[str, Any]:
        image_id = image_id_param(params)
        attribute = params.get("Attribute")
        if attribute != "launchPermission":
            raise invalid_parameter(
                f"Value ({attribute}) for parameter attribute is invalid. "
                "Only launchPermission can be reset."
            )
        with self._deps.catalog.begin() as conn:
            image = get_owned(conn, ctx, image_id, "ResetImageAttribute")
            rows.clear_permissions(conn, image.image_id)
            rows.update_image(conn, image.image_id, is_public=False)
        return {}

    def cancel_image_launch_permission(
        self, ctx: RequestContext, params: Mapping[str, Any]
    ) -> dict[str, Any]:
        image_id = image_id_param(params)
        with self._deps.catalog.begin() as conn:
            image, _ = get_visible(conn, ctx, image_id)
            grant = ("user", ctx.account_id)
            if image.account_id == ctx.account_id or grant not in rows.permissions_of(
                conn, image_id
            ):
                raise invalid_parameter(
                    f"The image {image_id} is not shared with account {ctx.account_id}."
                )
            rows.remove_permissions(conn, image_id, [grant])
        return {"Return": True}

    # Block public access ------------------------------------------------------------------

    def enable_image_block_public_access(
        self, ctx: RequestContext, params: Mapping[str, Any]
    ) -> dict[str, Any]:
        state = params.get("ImageBlockPublicAccessState")
        if state is None:
            raise missing_parameter("ImageBlockPublicAccessState")
        if state != BLOCK_STATE:
            raise invalid_parameter(
                f"Value ({state}) for parameter ImageBlockPublicAccessState is invalid."
            )
        with self._deps.catalog.begin() as conn:
            rows.set_block_public_access(conn, ctx.region, ctx.account_id, BLOCK_STATE)
        return {"ImageBlockPublicAccessState": BLOCK_STATE}

    def disable_image_block_public_access(
        self, ctx: RequestContext, params: Mapping[str, Any]
    ) -> dict[str, Any]:
        with self._deps.catalog.begin() as conn:
            rows.set_block_public_access(conn, ctx.region, ctx.account_id, None)
        return {"ImageBlockPublicAccessState": "unblocked"}

    def get_image_block_public_access_state(
        self, ctx: RequestContext, params: Mapping[str, Any]
    ) -> dict[str, Any]:
        with self._deps.catalog.begin() as conn:
            state = rows.block_public_access(conn, ctx.region, ctx.account_id)
        return {"ImageBlockPublicAccessState": state or "unblocked", "ManagedBy": "account"}
