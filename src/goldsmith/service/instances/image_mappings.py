"""CreateImage's BlockDeviceMappings: how the request reshapes the new image's mappings.

The new image maps every EBS volume attached to the instance (each captured into a new
snapshot) unless the request excludes it, plus whatever the request adds. One entry per
device, and a device may be named once (``/dev/sdf`` and ``sdf`` are the same device):

- ``NoDevice`` on an attached volume leaves it out of the image (never the root volume);
  on another device it records a NoDevice mapping, as in EC2.
- ``Ebs`` on an attached volume's device overrides that volume's mapping. EC2 lets only
  DeleteOnTermination change there; Goldsmith also lets ``VolumeSize`` grow (launches of the
  image then get the larger volume; the guest grows its filesystem) and refuses a smaller
  size with EC2's InvalidBlockDeviceMapping "smaller than snapshot" error. A different
  SnapshotId, VolumeType or encryption is InvalidBlockDeviceMapping.
- ``Ebs`` on a new device adds a volume to the image: with ``SnapshotId`` the mapping
  references that snapshot (the caller must be able to use it: InvalidSnapshot.NotFound
  otherwise; VolumeSize ≥ the snapshot's size); with only ``VolumeSize`` it is an empty
  volume — the mapping has no snapshot, as EC2 records it, and every launch of the image
  creates an empty volume of that size.
- ``VirtualName`` (``ephemeralN``) on a new device is recorded as an instance-store mapping
  (launches skip it: Goldsmith has no instance store).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import sqlalchemy as sa

from goldsmith.catalog import volumes as volume_rows
from goldsmith.catalog.images import BlockDeviceRow
from goldsmith.service.context import RequestContext
from goldsmith.service.errors import ClientError
from goldsmith.service.ids import check_id
from goldsmith.service.images.common import snapshot_size
from goldsmith.service.images.validation import (
    bdm_error,
    check_device_name,
    parse_mapping,
)
from goldsmith.service.instances.common import check_bool
from goldsmith.service.snapshots import SnapshotService


@dataclass(frozen=True)
class VolumeOverride:
    """What the request changes in an attached volume's mapping (None: keep)."""

    delete_on_termination: bool | None = None
    volume_size: int | None = None


@dataclass
class MappingPlan:
    """The request's mappings, sorted by what they do to the new image."""

    excluded: set[str] = field(default_factory=set)
    overrides: dict[str, VolumeOverride] = field(default_factory=dict)
    added: list[BlockDeviceRow] = field(default_factory=list)

    def mapping_for(self, volume: volume_rows.VolumeRow, snapshot_id: str) -> BlockDeviceRow:
        """The image's mapping of an attached volume captured as ``snapshot_id``."""
        override = self.overrides.get(bare(str(volume.device)), VolumeOverride())
        dot = override.delete_on_termination
        return BlockDeviceRow(
            device_name=str(volume.device),
            snapshot_id=snapshot_id,
            volume_size=override.volume_size or volume.size_gib,
            volume_type=volume.volume_type,
            delete_on_termination=bool(volume.delete_on_termination) if dot is None else dot,
            encrypted=False,
        )


def bare(device: str) -> str:
    """``/dev/sdf`` and ``sdf`` name one device."""
    return device.removeprefix("/dev/")


def plan_mappings(
    conn: sa.Connection,
    ctx: RequestContext,
    snapshots: SnapshotService,
    specs: Sequence[Mapping[str, Any]],
    attached: Sequence[volume_rows.VolumeRow],
    root_device: str | None,
) -> MappingPlan:
    """Check the request's mappings against the instance's volumes (see the module doc)."""
    by_device = {bare(str(v.device)): v for v in attached if v.device}
    plan = MappingPlan()
    seen: set[str] = set()
    for spec in specs:
        device = check_device_name(spec.get("DeviceName"))
        key = bare(device)
        if key in seen:
            raise bdm_error(f"{device} is being assigned to multiple times.")
        seen.add(key)
        volume = by_device.get(key)
        if spec.get("NoDevice") is not None:
            if root_device is not None and key == bare(root_device):
                raise bdm_error("The root device cannot be excluded (NoDevice).")
            if volume is not None:
                plan.excluded.add(key)
            else:
                plan.added.append(BlockDeviceRow(device_name=device, no_device=True))
        elif volume is not None:
            plan.overrides[key] = _override(volume, spec)
        else:
            plan.added.append(_new_mapping(conn, ctx, snapshots, spec))
    return plan


def _override(volume: volume_rows.VolumeRow, spec: Mapping[str, Any]) -> VolumeOverride:
    device = str(volume.device)
    if spec.get("VirtualName") is not None:
        raise bdm_error(f"The device {device} is an EBS volume of the instance, not {spec}.")
    ebs: Mapping[str, Any] = spec.get("Ebs") or {}
    snapshot_id = ebs.get("SnapshotId")
    if snapshot_id is not None and snapshot_id != volume.snapshot_id:
        raise bdm_error(
            f"The snapshot of {device} cannot be changed: CreateImage captures the attached "
            f"volume {volume.volume_id}."
        )
    volume_type = ebs.get("VolumeType")
    if volume_type is not None and volume_type != volume.volume_type:
        raise bdm_error(
            f"The volume type of {device} cannot be changed ({volume.volume_type}); "
            "only DeleteOnTermination and a larger VolumeSize can."
        )
    if ebs.get("Encrypted") or ebs.get("KmsKeyId") is not None:
        raise ClientError(
            "InvalidParameterCombination",
            "CreateImage cannot change the encryption of existing volumes; use CopyImage.",
        )
    size = _size(ebs.get("VolumeSize"))
    if size is not None and size < volume.size_gib:
        raise bdm_error(
            f"Volume of size {size}GB is smaller than snapshot of '{volume.volume_id}', "
            f"expect size >= {volume.size_gib}GB"
        )
    dot = ebs.get("DeleteOnTermination")
    return VolumeOverride(
        delete_on_termination=None if dot is None else check_bool(dot, "DeleteOnTermination"),
        volume_size=size,
    )


def _size(value: Any) -> int | None:
    if value is None:
        return None
    try:
        size = int(value)
    except (TypeError, ValueError):
        size = 0
    if not 1 <= size <= 16384:
        raise ClientError(
            "InvalidParameterValue", f"Value ({value}) for parameter volumeSize is invalid."
        )
    return size


def _new_mapping(
    conn: sa.Connection,
    ctx: RequestContext,
    snapshots: SnapshotService,
    spec: Mapping[str, Any],
) -> BlockDeviceRow:
    """A mapping the image adds: a volume from a snapshot, an empty volume or ephemeral."""
    row = parse_mapping(spec)
    ebs: Mapping[str, Any] = spec.get("Ebs") or {}
    if row.snapshot_id is None:
        dot = ebs.get("DeleteOnTermination")
        return replace(
            row,
            delete_on_termination=True if dot is None else check_bool(dot, "DeleteOnTermination"),
        )
    check_id(row.snapshot_id, "snap")
    info = snapshots.usable(conn, ctx, row.snapshot_id)
    size = snapshot_size(info)
    if row.volume_size is not None and row.volume_size < size:
        raise bdm_error(
            f"Volume of size {row.volume_size}GB is smaller than snapshot "
            f"'{row.snapshot_id}', expect size >= {size}GB"
        )
    dot = ebs.get("DeleteOnTermination")
    return replace(
        row,
        volume_size=row.volume_size or size,
        delete_on_termination=True if dot is None else check_bool(dot, "DeleteOnTermination"),
    )
