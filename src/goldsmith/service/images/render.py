"""Image rows → the dicts of botocore's ``Image`` and ``BlockDeviceMapping`` shapes.

One implementation, fed plain tuples: DescribeImages renders straight from database rows
(columns :data:`FIELDS` of ``images``, :data:`DEVICE_FIELDS` of ``image_block_devices``)
without building an :class:`ImageRow` per image; :func:`image_dict` adapts an ImageRow to
the same function, so both paths answer alike.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from goldsmith.catalog.images import BlockDeviceRow, ImageRow

#: The ``images`` columns :func:`render_row` reads, in the order it unpacks them
#: (``billing_products`` as a sequence of product codes, not its JSON text).
FIELDS = (
    "image_id",
    "account_id",
    "name",
    "description",
    "state",
    "image_type",
    "architecture",
    "virtualization_type",
    "root_device_name",
    "root_device_type",
    "image_location",
    "kernel_id",
    "ramdisk_id",
    "boot_mode",
    "tpm_support",
    "imds_support",
    "ena_support",
    "sriov_net_support",
    "platform",
    "hypervisor",
    "is_public",
    "billing_products",
    "created_at",
    "deprecation_time",
    "protection",
    "protection_cooldown_until",
    "source_image_id",
    "source_image_region",
    "source_instance_id",
    "last_launched_time",
    "state_reason_code",
    "state_reason_message",
)

#: The ``image_block_devices`` columns :func:`mapping_of` reads (BlockDeviceRow's order).
DEVICE_FIELDS = (
    "device_name",
    "virtual_name",
    "no_device",
    "snapshot_id",
    "volume_size",
    "volume_type",
    "delete_on_termination",
    "encrypted",
    "iops",
    "throughput",
)


def iso(value: datetime | None) -> str | None:
    """EC2's string timestamps (CreationDate, DeprecationTime): ISO 8601 UTC, milliseconds."""
    if value is None:
        return None
    if value.tzinfo is not UTC:
        value = value.astimezone(UTC)
    return (
        f"{value.year:04d}-{value.month:02d}-{value.day:02d}T"
        f"{value.hour:02d}:{value.minute:02d}:{value.second:02d}."
        f"{value.microsecond // 1000:03d}Z"
    )


def mapping_of(device: Sequence[Any]) -> dict[str, Any]:
    """One ``BlockDeviceMapping`` from a tuple of :data:`DEVICE_FIELDS`."""
    (name, virtual, no_device, snapshot, size, volume_type, delete, encrypted, iops, tput) = device
    if no_device:
        return {"DeviceName": name, "NoDevice": ""}
    if virtual is not None:
        return {"DeviceName": name, "VirtualName": virtual}
    return {
        "DeviceName": name,
        "Ebs": {
            "DeleteOnTermination": delete,
            "SnapshotId": snapshot,
            "VolumeSize": size,
            "VolumeType": volume_type,
            "Encrypted": encrypted,
            "Iops": iops,
            "Throughput": tput,
        },
    }


def mapping(device: BlockDeviceRow) -> dict[str, Any]:
    return mapping_of([getattr(device, f) for f in DEVICE_FIELDS])


def mappings(devices: Sequence[BlockDeviceRow]) -> list[dict[str, Any]]:
    return [mapping(d) for d in devices]


def product_codes(image: ImageRow) -> list[dict[str, str]] | None:
    codes = [{"ProductCodeId": p, "ProductCodeType": "marketplace"} for p in image.billing_products]
    return codes or None


def _protection(protection: str, cooldown: datetime | None) -> str:
    if protection == "enabled-with-cooldown":
        return "enabled-with-cooldown"
    if cooldown is not None:
        # Disabled with cooldown: EC2 reports when protection actually ends.
        return f"disabled-until-{iso(cooldown)}"
    return protection


def deregistration_protection(image: ImageRow) -> str:
    return _protection(image.protection, image.protection_cooldown_until)


def render_row(
    row: Sequence[Any],
    devices: Sequence[Sequence[Any]],
    tags: Mapping[str, str] | None,
    owner_alias: str | None,
) -> dict[str, Any]:
    """The ``Image`` structure for one row of :data:`FIELDS` and its mapping tuples.

    Called once per image of a page (a thousand per DescribeImages call), so members that
    are usually absent (deprecation, launch time, cooldown, product codes) cost one test.
    """
    (
        image_id,
        account_id,
        name,
        description,
        state,
        image_type,
        architecture,
        virtualization_type,
        root_device_name,
        root_device_type,
        image_location,
        kernel_id,
        ramdisk_id,
        boot_mode,
        tpm_support,
        imds_support,
        ena_support,
        sriov_net_support,
        platform,
        hypervisor,
        is_public,
        billing_products,
        created_at,
        deprecation_time,
        protection,
        cooldown,
        source_image_id,
        source_image_region,
        source_instance_id,
        last_launched_time,
        reason_code,
        reason_message,
    ) = row
    return {
        "ImageId": image_id,
        "ImageLocation": image_location or f"{owner_alias or account_id}/{name}",
        "State": state,
        "OwnerId": account_id,
        "CreationDate": iso(created_at),
        "Public": is_public,
        "ProductCodes": [
            {"ProductCodeId": p, "ProductCodeType": "marketplace"} for p in billing_products
        ]
        if billing_products
        else None,
        "Architecture": architecture,
        "ImageType": image_type,
        "KernelId": kernel_id,
        "RamdiskId": ramdisk_id,
        "Platform": platform,
        "PlatformDetails": "Linux/UNIX",
        "UsageOperation": "RunInstances",
        "BlockDeviceMappings": [mapping_of(d) for d in devices],
        "Description": description,
        "EnaSupport": ena_support,
        "Hypervisor": hypervisor,
        "ImageOwnerAlias": owner_alias,
        "Name": name,
        "RootDeviceName": root_device_name,
        "RootDeviceType": root_device_type,
        "SriovNetSupport": sriov_net_support,
        "StateReason": {"Code": reason_code, "Message": reason_message} if reason_code else None,
        # Keys are unique: sorting the items compares keys only.
        "Tags": [{"Key": k, "Value": v} for k, v in sorted(tags.items())] if tags else None,
        "VirtualizationType": virtualization_type,
        "BootMode": boot_mode,
        "TpmSupport": tpm_support,
        "DeprecationTime": None if deprecation_time is None else iso(deprecation_time),
        "ImdsSupport": imds_support,
        "SourceInstanceId": source_instance_id,
        "DeregistrationProtection": protection
        if cooldown is None
        else _protection(protection, cooldown),
        "LastLaunchedTime": None if last_launched_time is None else iso(last_launched_time),
        "SourceImageId": source_image_id,
        "SourceImageRegion": source_image_region,
        "FreeTierEligible": False,
    }


def image_dict(image: ImageRow, tags: Mapping[str, str], owner_alias: str | None) -> dict[str, Any]:
    """The ``Image`` structure DescribeImages returns for one :class:`ImageRow`."""
    devices = [[getattr(d, f) for f in DEVICE_FIELDS] for d in image.block_devices]
    return render_row([getattr(image, f) for f in FIELDS], devices, tags, owner_alias)
