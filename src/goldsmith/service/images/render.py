"""Image rows → the dicts of botocore's ``Image`` and ``BlockDeviceMapping`` shapes."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from goldsmith.catalog.images import BlockDeviceRow, ImageRow
from goldsmith.service.filters import format_value
from goldsmith.service.tags import tag_list


def iso(value: datetime | None) -> str | None:
    """EC2's string timestamps (CreationDate, DeprecationTime): ISO 8601 with milliseconds."""
    return format_value(value) if value is not None else None


def mapping(device: BlockDeviceRow) -> dict[str, Any]:
    if device.no_device:
        return {"DeviceName": device.device_name, "NoDevice": ""}
    if device.virtual_name is not None:
        return {"DeviceName": device.device_name, "VirtualName": device.virtual_name}
    return {
        "DeviceName": device.device_name,
        "Ebs": {
            "DeleteOnTermination": device.delete_on_termination,
            "SnapshotId": device.snapshot_id,
            "VolumeSize": device.volume_size,
            "VolumeType": device.volume_type,
            "Encrypted": device.encrypted,
            "Iops": device.iops,
            "Throughput": device.throughput,
        },
    }


def mappings(devices: Sequence[BlockDeviceRow]) -> list[dict[str, Any]]:
    return [mapping(d) for d in devices]


def product_codes(image: ImageRow) -> list[dict[str, str]] | None:
    codes = [{"ProductCodeId": p, "ProductCodeType": "marketplace"} for p in image.billing_products]
    return codes or None


def deregistration_protection(image: ImageRow) -> str:
    if image.protection == "enabled-with-cooldown":
        return "enabled-with-cooldown"
    if image.protection_cooldown_until is not None:
        # Disabled with cooldown: EC2 reports when protection actually ends.
        return f"disabled-until-{iso(image.protection_cooldown_until)}"
    return image.protection


def image_dict(image: ImageRow, tags: Mapping[str, str], owner_alias: str | None) -> dict[str, Any]:
    """The ``Image`` structure DescribeImages returns for one row."""
    return {
        "ImageId": image.image_id,
        "ImageLocation": image.image_location or f"{owner_alias or image.account_id}/{image.name}",
        "State": image.state,
        "OwnerId": image.account_id,
        "CreationDate": iso(image.created_at),
        "Public": image.is_public,
        "ProductCodes": product_codes(image),
        "Architecture": image.architecture,
        "ImageType": image.image_type,
        "KernelId": image.kernel_id,
        "RamdiskId": image.ramdisk_id,
        "Platform": image.platform,
        "PlatformDetails": "Linux/UNIX",
        "UsageOperation": "RunInstances",
        "BlockDeviceMappings": mappings(image.block_devices),
        "Description": image.description,
        "EnaSupport": image.ena_support,
        "Hypervisor": image.hypervisor,
        "ImageOwnerAlias": owner_alias,
        "Name": image.name,
        "RootDeviceName": image.root_device_name,
        "RootDeviceType": image.root_device_type,
        "SriovNetSupport": image.sriov_net_support,
        "StateReason": (
            {"Code": image.state_reason_code, "Message": image.state_reason_message}
            if image.state_reason_code
            else None
        ),
        "Tags": tag_list(tags) or None,
        "VirtualizationType": image.virtualization_type,
        "BootMode": image.boot_mode,
        "TpmSupport": image.tpm_support,
        "DeprecationTime": iso(image.deprecation_time),
        "ImdsSupport": image.imds_support,
        "SourceInstanceId": image.source_instance_id,
        "DeregistrationProtection": deregistration_protection(image),
        "LastLaunchedTime": iso(image.last_launched_time),
        "SourceImageId": image.source_image_id,
        "SourceImageRegion": image.source_image_region,
        "FreeTierEligible": False,
    }
