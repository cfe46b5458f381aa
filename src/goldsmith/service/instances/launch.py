"""RunInstances: validate the request, reserve host resources, write the rows.

Order of checks, as EC2 answers them: the image (visible → launchable, a machine image,
available), the instance type, the counts against the host's capacity, the key pair, the
user data, the block device mappings (overrides of the image's mappings by device name;
``NoDevice`` removes one; volume sizes hold their snapshots), the tags. Everything is then
written in one transaction — the instances (``pending``), their volumes (attached), tags,
the image's LastLaunchedTime — and the manager boots the VMs after commit.

ClientToken: a repeated request with the same token and the same parameters answers the
first reservation; different parameters give IdempotentParameterMismatch.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import socket
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import sqlalchemy as sa

from goldsmith.catalog import images as image_rows
from goldsmith.catalog import instances as rows
from goldsmith.catalog import volumes as volume_rows
from goldsmith.compute import CapacityError, NetworkError, UnknownInstanceTypeError
from goldsmith.compute.instance_types import Host, check_capacity, resolve_instance_type
from goldsmith.compute.network import loopback_address, next_free_index
from goldsmith.service.context import RequestContext
from goldsmith.service.errors import ClientError, error, invalid_parameter
from goldsmith.service.ids import check_id, new_id
from goldsmith.service.images.common import get_visible, image_id_param
from goldsmith.service.instances.common import (
    DEFAULT_INSTANCE_TYPE,
    MAX_USER_DATA,
    SHUTDOWN_BEHAVIORS,
    check_bool,
)
from goldsmith.service.instances.manager import now
from goldsmith.service.snapshots import SnapshotService
from goldsmith.service.tags import specified_tags, validate_tags

MAX_COUNT = 20
VOLUME_TYPES = ("standard", "gp2", "gp3", "io1", "io2", "st1", "sc1")


@dataclass(frozen=True)
class PlannedVolume:
    """One EBS volume the launch creates: device, snapshot, size, DeleteOnTermination."""

    device: str
    snapshot_id: str | None
    size_gib: int
    delete_on_termination: bool
    volume_type: str


def request_hash(params: Mapping[str, Any]) -> str:
    scoped = {k: v for k, v in params.items() if k not in {"ClientToken", "DryRun"}}
    return hashlib.sha256(json.dumps(scoped, sort_keys=True, default=str).encode()).hexdigest()


def decode_user_data(value: Any) -> bytes | None:
    """UserData arrives base64-encoded (boto3 encodes it); the guest gets the bytes."""
    if value is None or value == "":
        return None
    text = value.decode() if isinstance(value, bytes) else str(value)
    try:
        data = base64.b64decode("".join(text.split()), validate=True)
    except (binascii.Error, ValueError):
        raise invalid_parameter("Invalid BASE64 encoding of user data.") from None
    if len(data) > MAX_USER_DATA:
        raise invalid_parameter(f"User data is limited to {MAX_USER_DATA} bytes (got {len(data)}).")
    return data


def counts(params: Mapping[str, Any]) -> tuple[int, int]:
    try:
        low, high = int(params.get("MinCount") or 0), int(params.get("MaxCount") or 0)
    except (TypeError, ValueError):
        raise invalid_parameter("MinCount and MaxCount must be integers") from None
    if low < 1 or high < 1:
        raise invalid_parameter(
            "Value for parameter MinCount/MaxCount is invalid: both must be at least 1."
        )
    if low > high:
        raise invalid_parameter(
            f"Value ({low}) for parameter MinCount is invalid. "
            f"MinCount must be less than or equal to MaxCount ({high})."
        )
    if low > MAX_COUNT:
        raise ClientError(
            "InstanceLimitExceeded",
            f"You have requested more instances ({low}) than your current instance limit of "
            f"{MAX_COUNT} allows for the specified instance type.",
        )
    return low, min(high, MAX_COUNT)


def _listening(host: str, port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.2)
        return sock.connect_ex((host, port)) == 0


def bdm_error(message: str) -> ClientError:
    return ClientError("InvalidBlockDeviceMapping", message)


class Launcher:
    """Builds and inserts the rows of one RunInstances call."""

    def __init__(
        self,
        snapshots: SnapshotService,
        zones: Any,
        keys: Any,
        tags: Any,
        host: Host | None,
    ) -> None:
        self._snapshots = snapshots
        self._zones = zones
        self._keys = keys
        self._tags = tags
        self.host = host

    # -- checks ---------------------------------------------------------------------------

    def launchable_image(
        self, conn: sa.Connection, ctx: RequestContext, params: Mapping[str, Any]
    ) -> image_rows.ImageRow:
        image_id = image_id_param(params)
        image, _ = get_visible(conn, ctx, image_id)
        if image.image_type != "machine":
            raise invalid_parameter(f"The image {image_id} is a {image.image_type} image")
        if image.state != "available":
            raise ClientError(
                "InvalidAMIID.Unavailable",
                f"The image id '[{image_id}]' is not available (state {image.state})",
            )
        return image

    @staticmethod
    def instance_type(params: Mapping[str, Any]) -> tuple[str, int, int]:
        name = str(params.get("InstanceType") or DEFAULT_INSTANCE_TYPE)
        try:
            vcpus, memory = resolve_instance_type(name)
        except UnknownInstanceTypeError:
            raise invalid_parameter(f"Invalid value '{name}' for InstanceType.") from None
        return name, vcpus, memory

    def how_many(self, conn: sa.Connection, vcpus: int, memory: int, low: int, high: int) -> int:
        """How many instances to launch (≤ high), or InsufficientInstanceCapacity."""
        running = [(r.vcpus, r.memory_mib) for r in rows.active_instances(conn)]
        try:
            check_capacity(vcpus, memory, low, running, self.host)
        except CapacityError as exc:
            raise error(
                "InsufficientInstanceCapacity",
                f"We currently do not have sufficient capacity in the Availability Zone you "
                f"requested. {exc}",
            ) from None
        count = low
        while count < high:
            try:
                check_capacity(vcpus, memory, count + 1, running, self.host)
            except CapacityError:
                break
            count += 1
        return count

    def zone(self, ctx: RequestContext, params: Mapping[str, Any]) -> str:
        zones = self._zones(ctx.region)
        wanted = (params.get("Placement") or {}).get("AvailabilityZone")
        if wanted is None:
            return str(zones[0])
        if wanted not in zones:
            raise invalid_parameter(f"Invalid availability zone: [{wanted}]")
        return str(wanted)

    def volumes(
        self,
        conn: sa.Connection,
        ctx: RequestContext,
        image: image_rows.ImageRow,
        overrides: Sequence[Mapping[str, Any]],
    ) -> list[PlannedVolume]:
        by_device: dict[str, image_rows.BlockDeviceRow] = {
            d.device_name: d for d in image.block_devices
        }
        for spec in overrides:
            device = spec.get("DeviceName")
            if not device:
                raise bdm_error("Missing device name in the block device mapping")
            by_device[str(device)] = self._override(conn, ctx, by_device.get(device), spec)
        out: list[PlannedVolume] = []
        for device, bdm in by_device.items():
            if bdm.no_device or bdm.virtual_name:
                if device == image.root_device_name:
                    raise bdm_error("The root device cannot be removed (NoDevice).")
                continue
            if bdm.snapshot_id is None and bdm.volume_size is None:
                continue
            size = bdm.volume_size or 1
            out.append(
                PlannedVolume(
                    device=device,
                    snapshot_id=bdm.snapshot_id,
                    size_gib=size,
                    delete_on_termination=True
                    if bdm.delete_on_termination is None
                    else bdm.delete_on_termination,
                    volume_type=bdm.volume_type or "gp3",
                )
            )
        if not any(v.device == image.root_device_name for v in out):
            raise bdm_error(f"The image has no root volume at {image.root_device_name}")
        return out

    def _override(
        self,
        conn: sa.Connection,
        ctx: RequestContext,
        base: image_rows.BlockDeviceRow | None,
        spec: Mapping[str, Any],
    ) -> image_rows.BlockDeviceRow:
        device = str(spec["DeviceName"])
        if "NoDevice" in spec and spec.get("NoDevice") is not None:
            return image_rows.BlockDeviceRow(device_name=device, no_device=True)
        if spec.get("VirtualName"):
            return image_rows.BlockDeviceRow(device_name=device, virtual_name=spec["VirtualName"])
        ebs = spec.get("Ebs") or {}
        current = base or image_rows.BlockDeviceRow(device_name=device)
        snapshot_id = ebs.get("SnapshotId") or current.snapshot_id
        snap_size = 0
        if snapshot_id is not None:
            check_id(str(snapshot_id), "snap")
            if snapshot_id != current.snapshot_id:
                snap_size = int(self._snapshots.usable(conn, ctx, str(snapshot_id)).volume_size)
            else:
                snap_size = current.volume_size or 0
        size = ebs.get("VolumeSize")
        if size is not None:
            size = int(size)
            if size < 1 or size > 16384:
                raise invalid_parameter(f"Invalid value '{size}' for VolumeSize")
            if size < snap_size:
                raise bdm_error(
                    f"Volume of size {size}GB is smaller than snapshot '{snapshot_id}', "
                    f"expect size >= {snap_size}GB"
                )
        elif snapshot_id is None:
            raise ClientError(
                "MissingParameter", "The request must contain the parameter size or snapshotId"
            )
        volume_type = ebs.get("VolumeType") or current.volume_type
        if volume_type is not None and volume_type not in VOLUME_TYPES:
            raise invalid_parameter(f"Invalid value '{volume_type}' for VolumeType")
        dot = ebs.get("DeleteOnTermination")
        return replace(
            current,
            no_device=False,
            virtual_name=None,
            snapshot_id=str(snapshot_id) if snapshot_id else None,
            volume_size=size or current.volume_size or snap_size or None,
            volume_type=volume_type,
            delete_on_termination=check_bool(dot, "DeleteOnTermination")
            if dot is not None
            else current.delete_on_termination,
        )

    @staticmethod
    def tags_for(params: Mapping[str, Any]) -> tuple[dict[str, str], dict[str, str]]:
        """Tags for (instances, volumes) from TagSpecifications."""
        instance: dict[str, str] = {}
        volume: dict[str, str] = {}
        for spec in params.get("TagSpecifications") or ():
            kind = spec.get("ResourceType")
            if kind == "instance":
                instance.update(validate_tags(spec.get("Tags") or []))
            elif kind == "volume":
                volume.update(validate_tags(spec.get("Tags") or []))
            else:
                specified_tags([spec], "instance")  # raises the EC2 error for this type
        return instance, volume

    @staticmethod
    def metadata_options(
        params: Mapping[str, Any], image: image_rows.ImageRow
    ) -> tuple[str, str, int]:
        options = params.get("MetadataOptions") or {}
        default_tokens = "required" if image.imds_support == "v2.0" else "optional"
        tokens = options.get("HttpTokens") or default_tokens
        endpoint = options.get("HttpEndpoint") or "enabled"
        hops = int(options.get("HttpPutResponseHopLimit") or (2 if tokens == "required" else 1))
        if tokens not in ("optional", "required"):
            raise invalid_parameter(f"Invalid value '{tokens}' for HttpTokens")
        if endpoint not in ("enabled", "disabled"):
            raise invalid_parameter(f"Invalid value '{endpoint}' for HttpEndpoint")
        if not 1 <= hops <= 64:
            raise invalid_parameter(f"Invalid value '{hops}' for HttpPutResponseHopLimit")
        return tokens, endpoint, hops

    @staticmethod
    def address(conn: sa.Connection, taken: set[int]) -> int:
        """A free instance address slot whose port 22 nobody else listens on."""
        used = rows.used_address_indexes(conn) | taken
        for _ in range(64):
            try:
                index = next_free_index(used)
            except NetworkError:
                break
            if not _listening(loopback_address(index), 22):
                return index
            used.add(index)  # another process (another Goldsmith?) serves this address
        raise error("InsufficientInstanceCapacity", "No free instance address on this host.")

    # -- the rows -----------------------------------------------------------------------------

    def kernel_ramdisk(
        self,
        conn: sa.Connection,
        ctx: RequestContext,
        image: image_rows.ImageRow,
        params: Mapping[str, Any],
    ) -> tuple[str | None, str | None]:
        out: list[str | None] = []
        for name, wanted_type, default in (
            ("KernelId", "kernel", image.kernel_id),
            ("RamdiskId", "ramdisk", image.ramdisk_id),
        ):
            value = params.get(name) or default
            if value is not None:
                found, _ = get_visible(conn, ctx, str(value))
                if found.image_type != wanted_type:
                    raise invalid_parameter(f"The image {value} is not a {wanted_type} image")
            out.append(str(value) if value is not None else None)
        # A paravirtual image without a kernel image boots PV-GRUB style: the manager reads
        # the kernel from the root volume's /boot (compute.bootfiles).
        return out[0], out[1]

    def shutdown_behavior(self, params: Mapping[str, Any]) -> str:
        value = params.get("InstanceInitiatedShutdownBehavior") or "stop"
        if value not in SHUTDOWN_BEHAVIORS:
            raise invalid_parameter(
                f"Invalid value '{value}' for InstanceInitiatedShutdownBehavior"
            )
        return str(value)

    def key(self, ctx: RequestContext, params: Mapping[str, Any]) -> tuple[str | None, str | None]:
        name = params.get("KeyName")
        if not name:
            return None, None
        return str(name), str(self._keys.public_key(ctx, str(name)).public_key)

    def new_volume(
        self,
        ctx: RequestContext,
        planned: PlannedVolume,
        zone: str,
        instance_id: str,
    ) -> volume_rows.VolumeRow:
        at = now()
        return volume_rows.VolumeRow(
            volume_id=new_id("vol"),
            region=ctx.region,
            account_id=ctx.account_id,
            availability_zone=zone,
            size_gib=planned.size_gib,
            snapshot_id=planned.snapshot_id,
            volume_type=planned.volume_type,
            iops=3000 if planned.volume_type == "gp3" else None,
            encrypted=False,
            state="in-use",
            created_at=at,
            instance_id=instance_id,
            device=planned.device,
            attach_time=at,
            attachment_state="attaching",
            delete_on_termination=planned.delete_on_termination,
            client_token=None,
        )
