"""Checks of RegisterImage's members, with EC2's error codes and messages.

Device names follow EC2's Linux rules: ``/dev/sd[a-z]``, ``/dev/sd[a-z][1-15]``,
``/dev/xvd[a-z]``, ``/dev/xvd[a-z][a-z]``, ``/dev/hd[a-z][1-15]`` and the bare
``xvd[a-z]``/``sd[a-z]`` forms Windows images use. A bad name is ``InvalidBlockDeviceMapping``
("Invalid device name …"), as EC2 says it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from goldsmith.catalog.images import BlockDeviceRow
from goldsmith.service.errors import ClientError, invalid_parameter

NAME_RE = re.compile(r"^[A-Za-z0-9()\[\] ./\-'@_]{3,128}$")
DEVICE_RE = re.compile(
    r"^(/dev/(sd|xvd|hd)[a-z]{1,2}([1-9]|1[0-5])?|(sd|xvd)[a-z]{1,2}|/dev/nvme[0-9]{1,2}n1)$"
)
EPHEMERAL_RE = re.compile(r"^ephemeral([0-9]|1[0-9]|2[0-3])$")
ARCHITECTURES = ("i386", "x86_64", "arm64", "x86_64_mac", "arm64_mac")
VIRTUALIZATION_TYPES = ("hvm", "paravirtual")
BOOT_MODES = ("legacy-bios", "uefi", "uefi-preferred")
VOLUME_TYPES = ("standard", "io1", "io2", "gp2", "sc1", "st1", "gp3")
MAX_DESCRIPTION = 255
MAX_VOLUME_GIB = 16384
MAX_UEFI_DATA = 64 * 1024


def bdm_error(message: str) -> ClientError:
    return ClientError("InvalidBlockDeviceMapping", message)


def check_name(name: Any) -> str:
    if name is None or name == "":
        raise ClientError("MissingParameter", "The request must contain the parameter name")
    if not isinstance(name, str) or not NAME_RE.match(name):
        raise ClientError(
            "InvalidAMIName.Malformed",
            "AMI names must be between 3 and 128 characters long, and may contain letters, "
            "numbers, '(', ')', '.', '-', '/', '[', ']', ' ', \"'\", '@' and '_'",
        )
    return name


def check_description(description: Any) -> str | None:
    if description is None:
        return None
    if not isinstance(description, str) or len(description) > MAX_DESCRIPTION:
        raise invalid_parameter(
            f"Value for parameter description is invalid. Length exceeds maximum of "
            f"{MAX_DESCRIPTION} characters."
        )
    return description


def check_choice(value: Any, choices: Sequence[str], member: str) -> str | None:
    if value is None:
        return None
    if value not in choices:
        raise invalid_parameter(f"Value ({value}) for parameter {member} is invalid.")
    return str(value)


def check_device_name(name: Any) -> str:
    if not isinstance(name, str) or not name:
        raise bdm_error("Missing device name")
    if not DEVICE_RE.match(name):
        raise bdm_error(f"Invalid device name {name}")
    return name


def _int(value: Any, member: str, low: int, high: int) -> int | None:
    if value is None:
        return None
    number = int(value)
    if not low <= number <= high:
        raise invalid_parameter(f"Value ({value}) for parameter {member} is invalid.")
    return number


def parse_mapping(spec: Mapping[str, Any]) -> BlockDeviceRow:
    """One BlockDeviceMapping entry → a row (snapshot sizes are checked by the caller)."""
    device = check_device_name(spec.get("DeviceName"))
    virtual, ebs, no_device = spec.get("VirtualName"), spec.get("Ebs"), spec.get("NoDevice")
    if sum(x is not None for x in (virtual, ebs, no_device)) != 1:
        raise bdm_error(
            f"The device {device} must have exactly one of VirtualName, Ebs or NoDevice"
        )
    if no_device is not None:
        return BlockDeviceRow(device_name=device, no_device=True)
    if virtual is not None:
        if not isinstance(virtual, str) or not EPHEMERAL_RE.match(virtual):
            raise bdm_error(f"Invalid virtual name {virtual} for {device}")
        return BlockDeviceRow(device_name=device, virtual_name=virtual)
    return _parse_ebs(device, ebs or {})


def _parse_ebs(device: str, ebs: Mapping[str, Any]) -> BlockDeviceRow:
    snapshot_id = ebs.get("SnapshotId")
    size = _int(ebs.get("VolumeSize"), "volumeSize", 1, MAX_VOLUME_GIB)
    if snapshot_id is None and size is None:
        raise bdm_error(f"Either snapshot ID or volume size must be provided for: {device}")
    volume_type = check_choice(ebs.get("VolumeType"), VOLUME_TYPES, "volumeType") or "gp2"
    iops = _int(ebs.get("Iops"), "iops", 100, 256000)
    if iops is not None and volume_type not in ("io1", "io2", "gp3"):
        raise ClientError(
            "InvalidParameterCombination", f"Iops are not supported for volume type {volume_type}"
        )
    throughput = _int(ebs.get("Throughput"), "throughput", 125, 2000)
    if throughput is not None and volume_type != "gp3":
        raise ClientError(
            "InvalidParameterCombination", "Throughput is only supported for gp3 volumes"
        )
    if ebs.get("KmsKeyId") is not None:
        raise invalid_parameter("KmsKeyId is not supported: Goldsmith volumes are not encrypted")
    dot = ebs.get("DeleteOnTermination")
    return BlockDeviceRow(
        device_name=device,
        snapshot_id=str(snapshot_id) if snapshot_id is not None else None,
        volume_size=size,
        volume_type=volume_type,
        delete_on_termination=True if dot is None else bool(dot),
        encrypted=bool(ebs.get("Encrypted") or False),
        iops=iops,
        throughput=throughput,
    )


def parse_mappings(specs: Sequence[Mapping[str, Any]]) -> list[BlockDeviceRow]:
    """Every mapping, checked; a device named twice is an error, as in EC2."""
    out: list[BlockDeviceRow] = []
    seen: set[str] = set()
    for spec in specs:
        row = parse_mapping(spec)
        bare = row.device_name.removeprefix("/dev/")
        if bare in seen:
            raise bdm_error(f"{row.device_name} is being assigned to multiple times.")
        seen.add(bare)
        out.append(row)
    return out
