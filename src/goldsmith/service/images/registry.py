"""RegisterImage, and the admin paths that register kernels, ramdisks and platform images.

An EBS-backed image is its block device mappings: the root mapping must name a snapshot the
caller may use (its own, or one shared with it), volume sizes must hold their snapshots,
and the kernel/ramdisk (``aki-``/``ari-``) must be images the caller can see. Registered
from completed snapshots, an image is ``available`` at once (EC2 may show ``pending``
briefly; nothing here needs copying).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from goldsmith.catalog import accounts as account_rows
from goldsmith.catalog import images as rows
from goldsmith.service.context import RequestContext
from goldsmith.service.errors import ClientError, invalid_parameter, unauthorized
from goldsmith.service.ids import check_id, new_id
from goldsmith.service.images.common import (
    PREFIX_BY_TYPE,
    ImageDeps,
    check_image_id,
    get_visible,
    now,
    snapshot_size,
)
from goldsmith.service.images.validation import (
    ARCHITECTURES,
    BOOT_MODES,
    MAX_UEFI_DATA,
    VIRTUALIZATION_TYPES,
    bdm_error,
    check_choice,
    check_description,
    check_name,
    parse_mappings,
)
from goldsmith.service.tags import specified_tags

DEFAULT_ROOT_DEVICE = "/dev/sda1"


class Registry:
    """RegisterImage and admin registration (kernels, ramdisks, platform images)."""

    def __init__(self, deps: ImageDeps) -> None:
        self._deps = deps

    def register_image(self, ctx: RequestContext, params: Mapping[str, Any]) -> dict[str, Any]:
        if params.get("ImageLocation"):
            raise invalid_parameter(
                "Instance-store images (ImageLocation) are not supported; register an "
                "EBS-backed image from BlockDeviceMappings."
            )
        tags = specified_tags(params.get("TagSpecifications"), "image")
        with self._deps.catalog.begin() as conn:
            image = self._build(conn, ctx, params, image_type="machine")
            self._insert(conn, ctx, image, tags)
        return {"ImageId": image.image_id}

    def _build(
        self,
        conn: sa.Connection,
        ctx: RequestContext,
        params: Mapping[str, Any],
        *,
        image_type: str,
    ) -> rows.ImageRow:
        name = check_name(params.get("Name"))
        description = check_description(params.get("Description"))
        specs = list(params.get("BlockDeviceMappings") or [])
        if not specs:
            raise ClientError(
                "MissingParameter",
                "The request must contain the parameter BlockDeviceMapping (or ImageLocation)",
            )
        devices = self._devices(conn, ctx, parse_mappings(specs))
        root = params.get("RootDeviceName") or DEFAULT_ROOT_DEVICE
        root_device = next((d for d in devices if d.device_name == root), None)
        if root_device is None:
            raise bdm_error(f"The root device name {root} is not in the block device mapping")
        if root_device.snapshot_id is None:
            raise bdm_error(f"The root device {root} must be an EBS volume with a snapshot")
        boot_mode = check_choice(params.get("BootMode"), BOOT_MODES, "BootMode")
        tpm = check_choice(params.get("TpmSupport"), ("v2.0",), "TpmSupport")
        uefi_data = params.get("UefiData")
        if tpm is not None and boot_mode not in ("uefi", "uefi-preferred"):
            raise ClientError("InvalidParameterCombination", "TpmSupport requires BootMode uefi")
        if uefi_data is not None and len(str(uefi_data)) > MAX_UEFI_DATA:
            raise invalid_parameter("Value for parameter UefiData is too long.")
        billing = [str(b) for b in params.get("BillingProducts") or []]
        if billing and not rows.billing_allowed(conn, ctx.account_id):
            raise unauthorized("RegisterImage with BillingProducts")
        return rows.ImageRow(
            image_id=new_id(PREFIX_BY_TYPE[image_type]),
            region=ctx.region,
            account_id=ctx.account_id,
            name=name,
            description=description,
            state="available",
            image_type=image_type,
            architecture=check_choice(params.get("Architecture"), ARCHITECTURES, "architecture")
            or "x86_64",
            virtualization_type=check_choice(
                params.get("VirtualizationType"), VIRTUALIZATION_TYPES, "virtualizationType"
            )
            or "paravirtual",
            root_device_name=root,
            root_device_type="ebs",
            image_location=None,
            kernel_id=self._boot_image(conn, ctx, params.get("KernelId"), "kernel"),
            ramdisk_id=self._boot_image(conn, ctx, params.get("RamdiskId"), "ramdisk"),
            boot_mode=boot_mode,
            tpm_support=tpm,
            uefi_data=str(uefi_data) if uefi_data is not None else None,
            imds_support=check_choice(params.get("ImdsSupport"), ("v2.0",), "ImdsSupport"),
            ena_support=bool(params["EnaSupport"])
            if params.get("EnaSupport") is not None
            else None,
            sriov_net_support=check_choice(
                params.get("SriovNetSupport"), ("simple",), "sriovNetSupport"
            ),
            platform=None,
            hypervisor="xen",
            is_public=False,
            billing_products=tuple(billing),
            created_at=now(),
            block_devices=tuple(devices),
        )

    def _devices(
        self, conn: sa.Connection, ctx: RequestContext, devices: Sequence[rows.BlockDeviceRow]
    ) -> list[rows.BlockDeviceRow]:
        """Mappings with snapshots checked (usable by the caller) and sizes filled in."""
        out: list[rows.BlockDeviceRow] = []
        for device in devices:
            if device.snapshot_id is None:
                out.append(device)
                continue
            check_id(device.snapshot_id, "snap")
            info = self._deps.snapshots.usable(conn, ctx, device.snapshot_id)
            size = snapshot_size(info)
            if device.volume_size is not None and device.volume_size < size:
                raise bdm_error(
                    f"Volume of size {device.volume_size}GB is smaller than snapshot "
                    f"'{device.snapshot_id}', expect size >= {size}GB"
                )
            out.append(replace(device, volume_size=device.volume_size or size))
        return out

    @staticmethod
    def _boot_image(
        conn: sa.Connection, ctx: RequestContext, image_id: Any, image_type: str
    ) -> str | None:
        """A visible kernel (``aki-``) or ramdisk (``ari-``) image id, or None."""
        if image_id is None:
            return None
        found, _ = get_visible(conn, ctx, check_image_id(str(image_id)))
        if found.image_type != image_type:
            raise invalid_parameter(f"The image {image_id} is not a {image_type} image")
        return found.image_id

    def _insert(
        self, conn: sa.Connection, ctx: RequestContext, image: rows.ImageRow, tags: dict[str, str]
    ) -> None:
        taken = rows.name_taken(conn, ctx.region, ctx.account_id, image.name)
        if taken is not None:
            raise ClientError(
                "InvalidAMIName.Duplicate",
                f"AMI name {image.name} is already in use by AMI {taken}",
            )
        rows.insert_image(conn, image)
        self._deps.tags.set_tags(conn, ctx, "image", image.image_id, tags)

    # Admin paths -------------------------------------------------------------------------

    def register_file(
        self,
        ctx: RequestContext,
        path: Path,
        *,
        image_type: str,
        name: str,
        description: str | None = None,
        architecture: str = "x86_64",
    ) -> rows.ImageRow:
        """A kernel or ramdisk image from a file: snapshot the file, register an aki/ari."""
        if image_type not in ("kernel", "ramdisk"):
            raise invalid_parameter(f"image type must be kernel or ramdisk, not {image_type}")
        snapshot = self._deps.snapshots.create_from_file(
            ctx, path, description=f"{image_type} {path.name}"
        )
        params = {
            "Name": name,
            "Description": description,
            "Architecture": architecture,
            "RootDeviceName": DEFAULT_ROOT_DEVICE,
            "BlockDeviceMappings": [
                {"DeviceName": DEFAULT_ROOT_DEVICE, "Ebs": {"SnapshotId": snapshot.snapshot_id}}
            ],
        }
        with self._deps.catalog.begin() as conn:
            image = self._build(conn, ctx, params, image_type=image_type)
            self._insert(conn, ctx, image, {})
        return image

    def publish(
        self, ctx: RequestContext, params: Mapping[str, Any], *, public: bool = True
    ) -> rows.ImageRow:
        """Register an image for the platform account (``ctx``) and make it public."""
        with self._deps.catalog.begin() as conn:
            if account_rows.get_account(conn, ctx.account_id) is None:
                raise invalid_parameter(f"no account {ctx.account_id}")
            image = self._build(conn, ctx, params, image_type="machine")
            image = replace(image, is_public=public)
            tags = specified_tags(params.get("TagSpecifications"), "image")
            self._insert(conn, ctx, image, tags)
        return image

    def set_billing_allowed(self, account_id: str, allowed: bool) -> None:
        """Admin: allow (or stop allowing) an account to register BillingProducts."""
        with self._deps.catalog.begin() as conn:
            rows.set_billing_allowed(conn, account_id, allowed)
