"""How instances look on the wire (DescribeInstances, RunInstances) and how they filter."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from goldsmith.catalog import instances as rows
from goldsmith.catalog import volumes as volume_rows
from goldsmith.service.filters import FilterSpec
from goldsmith.service.instances.common import (
    STATE_CODES,
    private_dns,
    private_ip,
    public_ip,
    state_dict,
)
from goldsmith.service.instances.manager import root_first
from goldsmith.service.tags import tag_list


@dataclass(frozen=True)
class View:
    """An instance with what its rendering needs: tags and attached volumes."""

    row: rows.InstanceRow
    tags: Mapping[str, str]
    volumes: Sequence[volume_rows.VolumeRow]


FILTERS: FilterSpec[View] = FilterSpec(
    {
        "instance-id": lambda v: v.row.instance_id,
        "instance-state-name": lambda v: v.row.state,
        "instance-state-code": lambda v: STATE_CODES[v.row.state],
        "image-id": lambda v: v.row.image_id,
        "instance-type": lambda v: v.row.instance_type,
        "key-name": lambda v: v.row.key_name,
        "ip-address": lambda v: public_ip(v.row.address_index),
        "private-ip-address": lambda v: private_ip(v.row.address_index),
        "private-dns-name": lambda v: private_dns(v.row.address_index, v.row.region),
        "availability-zone": lambda v: v.row.availability_zone,
        "reservation-id": lambda v: v.row.reservation_id,
        "owner-id": lambda v: v.row.account_id,
        "architecture": lambda v: v.row.architecture,
        "virtualization-type": lambda v: v.row.virtualization_type,
        "root-device-type": lambda v: "ebs",
        "root-device-name": lambda v: v.row.root_device_name,
        "launch-time": lambda v: v.row.launch_time,
        "client-token": lambda v: v.row.client_token,
        "kernel-id": lambda v: v.row.kernel_id,
        "ramdisk-id": lambda v: v.row.ramdisk_id,
        "ami-launch-index": lambda v: v.row.ami_launch_index,
        "state-reason-code": lambda v: v.row.state_reason_code,
        "block-device-mapping.volume-id": lambda v: [x.volume_id for x in v.volumes],
        "block-device-mapping.device-name": lambda v: [x.device for x in v.volumes],
        "metadata-options.http-tokens": lambda v: v.row.http_tokens,
        "boot-mode": lambda v: v.row.boot_mode,
    },
    tags=lambda v: v.tags,
)

STATUS_FILTERS: FilterSpec[View] = FilterSpec(
    {
        "availability-zone": lambda v: v.row.availability_zone,
        "instance-state-name": lambda v: v.row.state,
        "instance-state-code": lambda v: STATE_CODES[v.row.state],
        "instance-status.status": lambda v: instance_status(v.row),
        "system-status.status": lambda v: instance_status(v.row),
        "instance-status.reachability": lambda v: reachability(v.row),
        "system-status.reachability": lambda v: reachability(v.row),
    }
)


def instance_status(row: rows.InstanceRow) -> str:
    return {"running": "ok", "pending": "initializing"}.get(row.state, "not-applicable")


def reachability(row: rows.InstanceRow) -> str:
    return {"running": "passed", "pending": "initializing"}.get(row.state, "not-applicable")


def block_devices(view: View) -> list[dict[str, Any]]:
    return [
        {
            "DeviceName": v.device,
            "Ebs": {
                "AttachTime": v.attach_time,
                "DeleteOnTermination": bool(v.delete_on_termination),
                "Status": v.attachment_state or "attached",
                "VolumeId": v.volume_id,
            },
        }
        for v in root_first(list(view.volumes), view.row.root_device_name)
    ]


def instance_dict(view: View) -> dict[str, Any]:
    row = view.row
    reason = (
        {"Code": row.state_reason_code, "Message": row.state_reason_message}
        if row.state_reason_code
        else None
    )
    return {
        "InstanceId": row.instance_id,
        "ImageId": row.image_id,
        "State": state_dict(row.state),
        "PrivateDnsName": private_dns(row.address_index, row.region),
        "PublicDnsName": "",
        "StateTransitionReason": row.state_transition_reason,
        "KeyName": row.key_name,
        "AmiLaunchIndex": row.ami_launch_index,
        "ProductCodes": [],
        "InstanceType": row.instance_type,
        "LaunchTime": row.launch_time,
        "Placement": {
            "AvailabilityZone": row.availability_zone,
            "GroupName": "",
            "Tenancy": "default",
        },
        "KernelId": row.kernel_id,
        "RamdiskId": row.ramdisk_id,
        "Monitoring": {"State": "disabled"},
        "PrivateIpAddress": private_ip(row.address_index),
        "PublicIpAddress": public_ip(row.address_index),
        "StateReason": reason,
        "Architecture": row.architecture,
        "RootDeviceType": "ebs",
        "RootDeviceName": row.root_device_name,
        "BlockDeviceMappings": block_devices(view),
        "VirtualizationType": row.virtualization_type,
        "ClientToken": row.client_token or "",
        "Tags": tag_list(view.tags) or None,
        "SecurityGroups": [],
        "Hypervisor": "xen",
        "EbsOptimized": False,
        "EnaSupport": True,
        "BootMode": row.boot_mode,
        "CpuOptions": {"CoreCount": row.vcpus, "ThreadsPerCore": 1},
        "MetadataOptions": {
            "State": "applied",
            "HttpTokens": row.http_tokens,
            "HttpPutResponseHopLimit": row.hop_limit,
            "HttpEndpoint": row.http_endpoint,
            "HttpProtocolIpv6": "disabled",
            "InstanceMetadataTags": "disabled",
        },
        "PlatformDetails": "Linux/UNIX",
        "UsageOperation": "RunInstances",
    }


def reservations(views: Sequence[View]) -> list[dict[str, Any]]:
    """Instances grouped by reservation, in the order their first instance appears."""
    groups: dict[str, dict[str, Any]] = {}
    for view in views:
        group = groups.setdefault(
            view.row.reservation_id,
            {
                "ReservationId": view.row.reservation_id,
                "OwnerId": view.row.account_id,
                "Groups": [],
                "Instances": [],
            },
        )
        group["Instances"].append(instance_dict(view))
    return list(groups.values())


def status_dict(view: View) -> dict[str, Any]:
    row = view.row
    status = instance_status(row)
    details = [{"Name": "reachability", "Status": reachability(row)}]
    return {
        "InstanceId": row.instance_id,
        "AvailabilityZone": row.availability_zone,
        "InstanceState": state_dict(row.state),
        "InstanceStatus": {"Status": status, "Details": details},
        "SystemStatus": {"Status": status, "Details": details},
    }
