"""EBS volumes: CreateVolume, DeleteVolume, DescribeVolumes, Attach/DetachVolume, CreateSnapshot(s).

A volume is a catalog row plus a qcow2 file (:mod:`goldsmith.service.volume_files`): an
overlay over its snapshot's cached base, or an empty qcow2. Attach/Detach on a running
instance hot-plug the disk through the hypervisor; on a stopped one they only change the
rows (the next start boots with the volumes attached then). CreateSnapshot of a volume is
incremental against the volume's source snapshot and completes in a durable task.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any

import sqlalchemy as sa

from goldsmith.catalog import instances as instance_rows
from goldsmith.catalog import snapshots as snapshot_rows
from goldsmith.catalog import volumes as rows
from goldsmith.catalog.db import Catalog
from goldsmith.compute import ComputeError, DiskSpec, OperationTimeout
from goldsmith.service.context import RequestContext
from goldsmith.service.errors import ClientError, invalid_parameter, missing_parameter
from goldsmith.service.filters import FilterSpec
from goldsmith.service.ids import check_id, new_id
from goldsmith.service.instances.manager import InstanceManager, now
from goldsmith.service.operations import Operation
from goldsmith.service.pagination import Paginator
from goldsmith.service.snapshots import SnapshotService, after_commit, check_description
from goldsmith.service.tags import ResourceKind, TagService, specified_tags, tag_list
from goldsmith.service.tasks import TaskRunner

KIND = "create-snapshot"
VOLUME_TYPES = ("standard", "gp2", "gp3", "io1", "io2", "st1", "sc1")
GIB = 1024**3

FILTERS: FilterSpec[tuple[rows.VolumeRow, Mapping[str, str]]] = FilterSpec(
    {
        "volume-id": lambda v: v[0].volume_id,
        "status": lambda v: v[0].state,
        "size": lambda v: v[0].size_gib,
        "snapshot-id": lambda v: v[0].snapshot_id,
        "availability-zone": lambda v: v[0].availability_zone,
        "volume-type": lambda v: v[0].volume_type,
        "create-time": lambda v: v[0].created_at,
        "encrypted": lambda v: v[0].encrypted,
        "attachment.instance-id": lambda v: v[0].instance_id,
        "attachment.device": lambda v: v[0].device,
        "attachment.status": lambda v: v[0].attachment_state,
        "attachment.attach-time": lambda v: v[0].attach_time,
        "attachment.delete-on-termination": lambda v: v[0].delete_on_termination,
    },
    tags=lambda v: v[1],
)


def volume_not_found(volume_id: str) -> ClientError:
    return ClientError("InvalidVolume.NotFound", f"The volume '{volume_id}' does not exist.")


def volume_dict(row: rows.VolumeRow, tags: Mapping[str, str]) -> dict[str, Any]:
    attachments = []
    if row.instance_id is not None:
        attachments.append(
            {
                "AttachTime": row.attach_time,
                "Device": row.device,
                "InstanceId": row.instance_id,
                "State": row.attachment_state or "attached",
                "VolumeId": row.volume_id,
                "DeleteOnTermination": bool(row.delete_on_termination),
            }
        )
    return {
        "Attachments": attachments,
        "AvailabilityZone": row.availability_zone,
        "CreateTime": row.created_at,
        "Encrypted": row.encrypted,
        "Size": row.size_gib,
        "SnapshotId": row.snapshot_id or "",
        "State": row.state,
        "VolumeId": row.volume_id,
        "Iops": row.iops,
        "VolumeType": row.volume_type,
        "MultiAttachEnabled": False,
        "Tags": tag_list(tags) or None,
    }


class VolumeService:
    """The volume operations and CreateSnapshot(s) of volumes."""

    def __init__(
        self,
        catalog: Catalog,
        tags: TagService,
        snapshots: SnapshotService,
        manager: InstanceManager,
        tasks: TaskRunner,
        paginator: Paginator,
        zones: Any,
    ) -> None:
        self._catalog = catalog
        self._tags = tags
        self._snapshots = snapshots
        self._manager = manager
        self._tasks = tasks
        self._paginator = paginator
        self._zones = zones
        tags.register(ResourceKind("vol", "volume", self._owner_of))
        tasks.register(KIND, self._run_snapshot)

    @staticmethod
    def _owner_of(conn: sa.Connection, region: str, volume_id: str) -> str | None:
        row = rows.get_volume(conn, region, volume_id)
        return row.account_id if row is not None else None

    def owned(self, conn: sa.Connection, ctx: RequestContext, volume_id: Any) -> rows.VolumeRow:
        if not volume_id:
            raise missing_parameter("VolumeId")
        row = rows.get_volume(conn, ctx.region, check_id(str(volume_id), "vol"))
        if row is None or row.account_id != ctx.account_id:
            raise volume_not_found(str(volume_id))
        return row

    # -- create / delete / describe ------------------------------------------------------------

    def create_volume(self, ctx: RequestContext, params: Mapping[str, Any]) -> dict[str, Any]:
        zone = params.get("AvailabilityZone")
        if not zone:
            raise missing_parameter("AvailabilityZone")
        if zone not in self._zones(ctx.region):
            raise invalid_parameter(f"Invalid availability zone: [{zone}]")
        volume_type = params.get("VolumeType") or "gp2"
        if volume_type not in VOLUME_TYPES:
            raise invalid_parameter(f"Invalid value '{volume_type}' for VolumeType")
        tags = specified_tags(params.get("TagSpecifications"), "volume")
        snapshot_id = params.get("SnapshotId")
        size = params.get("Size")
        with self._catalog.begin() as conn:
            snap_size = 0
            if snapshot_id:
                snap_size = self._snapshots.usable(conn, ctx, str(snapshot_id)).volume_size
            elif size is None:
                raise missing_parameter("Size")
            size_gib = int(size) if size is not None else snap_size
            if not 1 <= size_gib <= 16384:
                raise invalid_parameter(f"Invalid value '{size_gib}' for Size")
            if size_gib < snap_size:
                raise invalid_parameter(
                    f"Volume of {size_gib}GiB is too small; minimum is {snap_size}GiB."
                )
            row = rows.VolumeRow(
                volume_id=new_id("vol"),
                region=ctx.region,
                account_id=ctx.account_id,
                availability_zone=str(zone),
                size_gib=size_gib,
                snapshot_id=str(snapshot_id) if snapshot_id else None,
                volume_type=str(volume_type),
                iops=int(params["Iops"]) if params.get("Iops") else None,
                encrypted=False,
                state="creating",
                created_at=now(),
                instance_id=None,
                device=None,
                attach_time=None,
                attachment_state=None,
                delete_on_termination=None,
                client_token=params.get("ClientToken"),
            )
            rows.insert_volume(conn, row)
            self._tags.set_tags(conn, ctx, "volume", row.volume_id, tags)
        answer = volume_dict(row, tags)
        self._manager.submit(self._make_file, row)
        return answer

    def _make_file(self, row: rows.VolumeRow) -> None:
        try:
            self._manager.files.create(row.region, row.volume_id, row.snapshot_id, row.size_gib)
        except Exception:
            with self._catalog.begin() as conn:
                rows.update_volume(conn, row.volume_id, state="error")
            raise
        with self._catalog.begin() as conn:
            rows.update_volume(conn, row.volume_id, state="available")

    def delete_volume(self, ctx: RequestContext, params: Mapping[str, Any]) -> dict[str, Any]:
        with self._catalog.begin() as conn:
            row = self.owned(conn, ctx, params.get("VolumeId"))
            if row.instance_id is not None or row.state == "in-use":
                raise ClientError(
                    "VolumeInUse",
                    f"Volume {row.volume_id} is currently attached to {row.instance_id}",
                )
            rows.delete_volume(conn, row.volume_id)
            self._tags.forget(conn, ctx.region, row.volume_id)
            after_commit(conn, lambda: self._manager.files.delete(row.region, row.volume_id))
        return {}

    def describe_volumes(self, ctx: RequestContext, params: Mapping[str, Any]) -> dict[str, Any]:
        ids = [check_id(str(i), "vol") for i in params.get("VolumeIds") or []]
        predicate = FILTERS.compile(params.get("Filters"))
        with self._catalog.begin() as conn:
            found = rows.list_volumes(conn, ctx.region, ctx.account_id, ids=ids)
            missing = [i for i in ids if i not in {r.volume_id for r in found}]
            if missing:
                raise volume_not_found(missing[0])
            tags = self._tags.tags_of(conn, ctx.region, [r.volume_id for r in found])
        items = [(r, tags.get(r.volume_id, {})) for r in found]
        items = [i for i in items if predicate(i)]
        page, token = self._paginator.page(
            items, key=lambda i: (i[0].volume_id,), operation="DescribeVolumes", params=params
        )
        return {"Volumes": [volume_dict(r, t) for r, t in page], "NextToken": token}

    # -- attach / detach -----------------------------------------------------------------------

    def attach_volume(self, ctx: RequestContext, params: Mapping[str, Any]) -> dict[str, Any]:
        device = params.get("Device")
        if not device:
            raise missing_parameter("Device")
        instance_id = check_id(str(params.get("InstanceId") or ""), "i")
        with self._catalog.begin() as conn:
            vol = self.owned(conn, ctx, params.get("VolumeId"))
            inst = instance_rows.get_instance(conn, ctx.region, instance_id)
            if inst is None or inst.account_id != ctx.account_id or inst.state == "terminated":
                raise ClientError(
                    "InvalidInstanceID.NotFound", f"The instance ID '{instance_id}' does not exist"
                )
            if vol.state != "available":
                raise ClientError(
                    "IncorrectState",
                    f"vol '{vol.volume_id}' is not 'available'."
                    if vol.state != "in-use"
                    else f"{vol.volume_id} is already attached to an instance",
                )
            if vol.availability_zone != inst.availability_zone:
                raise invalid_parameter(
                    f"Volume {vol.volume_id} and instance {instance_id} are not in the same "
                    "availability zone"
                )
            if inst.state not in ("running", "stopped"):
                raise ClientError(
                    "IncorrectInstanceState",
                    f"The instance '{instance_id}' is not 'running' or 'stopped'.",
                )
            attached = rows.volumes_of(conn, [instance_id])[instance_id]
            if any(v.device == device for v in attached):
                raise invalid_parameter(
                    f"Invalid value '{device}' for unixDevice. Attachment point {device} is "
                    "already in use"
                )
            try:
                DiskSpec(
                    path=self._manager.files.path(ctx.region, vol.volume_id), device=str(device)
                )
            except ValueError:
                raise invalid_parameter(
                    f"Value ({device}) for parameter device is invalid."
                ) from None
        with self._manager.lock(instance_id):
            handle = self._manager.handle(instance_id)
            if inst.state == "running" and handle is not None:
                disk = DiskSpec(
                    path=self._manager.files.path(ctx.region, vol.volume_id).absolute(),
                    device=str(device),
                    serial=vol.volume_id.replace("-", ""),
                )
                try:
                    self._manager.hypervisor.attach_disk(handle, disk)
                except ComputeError as exc:
                    raise ClientError("IncorrectState", f"Cannot attach: {exc}") from exc
            at = now()
            with self._catalog.begin() as conn:
                rows.update_volume(
                    conn,
                    vol.volume_id,
                    state="in-use",
                    instance_id=instance_id,
                    device=str(device),
                    attach_time=at,
                    attachment_state="attached",
                    delete_on_termination=False,
                )
        return {
            "AttachTime": at,
            "Device": device,
            "InstanceId": instance_id,
            "State": "attaching",
            "VolumeId": vol.volume_id,
        }

    def detach_volume(self, ctx: RequestContext, params: Mapping[str, Any]) -> dict[str, Any]:
        with self._catalog.begin() as conn:
            vol = self.owned(conn, ctx, params.get("VolumeId"))
            if vol.instance_id is None:
                raise ClientError(
                    "IncorrectState", f"Volume '{vol.volume_id}' is in the 'available' state."
                )
            inst = instance_rows.get_instance(conn, ctx.region, vol.instance_id)
        if inst is not None and vol.device == inst.root_device_name and inst.state != "stopped":
            raise ClientError(
                "OperationNotPermitted",
                f"The volume '{vol.volume_id}' is the root device of a running instance.",
            )
        with self._manager.lock(str(vol.instance_id)):
            handle = self._manager.handle(str(vol.instance_id))
            if inst is not None and inst.state == "running" and handle is not None:
                try:
                    self._manager.hypervisor.detach_disk(
                        handle, str(vol.device), timeout=5.0 if params.get("Force") else 30.0
                    )
                except OperationTimeout as exc:
                    raise ClientError(
                        "IncorrectState", f"The guest did not release the volume: {exc}"
                    ) from exc
                except ComputeError as exc:
                    raise ClientError("IncorrectState", str(exc)) from exc
            with self._catalog.begin() as conn:
                rows.update_volume(
                    conn,
                    vol.volume_id,
                    state="available",
                    instance_id=None,
                    device=None,
                    attach_time=None,
                    attachment_state=None,
                    delete_on_termination=None,
                )
        return {
            "AttachTime": vol.attach_time,
            "Device": vol.device,
            "InstanceId": vol.instance_id,
            "State": "detaching",
            "VolumeId": vol.volume_id,
        }

    # -- snapshots of volumes ------------------------------------------------------------------

    def _snapshot_of(
        self,
        conn: sa.Connection,
        ctx: RequestContext,
        vol: rows.VolumeRow,
        description: str,
        tags: Mapping[str, str],
    ) -> snapshot_rows.SnapshotRow:
        snap = self._snapshots.new_row(
            ctx, size_bytes=vol.size_gib * GIB, description=description, parent=vol.snapshot_id
        )
        snap = replace(snap, volume_id=vol.volume_id, volume_size=vol.size_gib)
        snapshot_rows.insert_snapshot(conn, snap)
        self._tags.set_tags(conn, ctx, "snapshot", snap.snapshot_id, tags)
        self._tasks.submit(
            conn,
            KIND,
            region=ctx.region,
            account_id=ctx.account_id,
            resource_id=snap.snapshot_id,
            payload={
                "snapshot_id": snap.snapshot_id,
                "volume_id": vol.volume_id,
                "source": vol.snapshot_id,
                "instance_id": vol.instance_id,
            },
        )
        return snap

    def create_snapshot(self, ctx: RequestContext, params: Mapping[str, Any]) -> dict[str, Any]:
        description = check_description(params.get("Description"))
        tags = specified_tags(params.get("TagSpecifications"), "snapshot")
        with self._catalog.begin() as conn:
            vol = self.owned(conn, ctx, params.get("VolumeId"))
            snap = self._snapshot_of(conn, ctx, vol, description, tags)
        return {
            "SnapshotId": snap.snapshot_id,
            "VolumeId": vol.volume_id,
            "State": "pending",
            "StartTime": snap.start_time,
            "Progress": "0%",
            "OwnerId": ctx.account_id,
            "Description": description,
            "VolumeSize": vol.size_gib,
            "Encrypted": False,
            "Tags": tag_list(tags) or None,
        }

    def create_snapshots(self, ctx: RequestContext, params: Mapping[str, Any]) -> dict[str, Any]:
        spec = params.get("InstanceSpecification") or {}
        instance_id = check_id(str(spec.get("InstanceId") or ""), "i")
        exclude_root = bool(spec.get("ExcludeBootVolume"))
        excluded = set(spec.get("ExcludeDataVolumeIds") or [])
        description = check_description(params.get("Description"))
        tags = specified_tags(params.get("TagSpecifications"), "snapshot")
        out: list[dict[str, Any]] = []
        with self._catalog.begin() as conn:
            inst = instance_rows.get_instance(conn, ctx.region, instance_id)
            if inst is None or inst.account_id != ctx.account_id:
                raise ClientError(
                    "InvalidInstanceID.NotFound", f"The instance ID '{instance_id}' does not exist"
                )
            for vol in rows.volumes_of(conn, [instance_id])[instance_id]:
                if vol.volume_id in excluded or (
                    exclude_root and vol.device == inst.root_device_name
                ):
                    continue
                snap = self._snapshot_of(conn, ctx, vol, description, tags)
                out.append(
                    {
                        "SnapshotId": snap.snapshot_id,
                        "VolumeId": vol.volume_id,
                        "State": "pending",
                        "StartTime": snap.start_time,
                        "Progress": "0%",
                        "OwnerId": ctx.account_id,
                        "Description": description,
                        "VolumeSize": vol.size_gib,
                        "Encrypted": False,
                        "Tags": tag_list(tags) or None,
                    }
                )
        return {"Snapshots": out}

    def _run_snapshot(self, task: instance_rows.TaskRow, payload: dict[str, Any]) -> None:
        region = task.region
        with self._catalog.begin() as conn:
            snap = snapshot_rows.get_snapshot(conn, region, payload["snapshot_id"])
        if snap is None or snap.state == "completed":
            return
        instance_id = payload.get("instance_id")
        try:
            repo = self._snapshots.repository(region)
            if not repo.exists(snap.snapshot_id):
                if instance_id:
                    with self._manager.lock(instance_id):
                        how = self._manager.quiesce(instance_id, reboot=False)
                        try:
                            self._manager.files.snapshot(
                                region,
                                payload["volume_id"],
                                payload["source"],
                                snap.snapshot_id,
                                force_share=how == "paused",
                            )
                        finally:
                            self._manager.unquiesce(region, instance_id, how)
                else:
                    self._manager.files.snapshot(
                        region, payload["volume_id"], payload["source"], snap.snapshot_id
                    )
            with self._catalog.begin() as conn:
                self._snapshots.mark_completed(conn, snap)
        except Exception as exc:
            with self._catalog.begin() as conn:
                self._snapshots.mark_error(conn, snap, str(exc))
            raise

    def operations(self) -> list[Operation]:
        return [
            Operation(
                "CreateVolume", self.create_volume, "Create a volume (empty or from a snapshot)"
            ),
            Operation("DeleteVolume", self.delete_volume, "Delete an unattached volume"),
            Operation(
                "DescribeVolumes", self.describe_volumes, "List volumes (filters, attachments)"
            ),
            Operation(
                "AttachVolume", self.attach_volume, "Attach a volume (hot-plug when running)"
            ),
            Operation(
                "DetachVolume", self.detach_volume, "Detach a volume (hot-unplug when running)"
            ),
            Operation(
                "CreateSnapshot",
                self.create_snapshot,
                "Snapshot a volume (incremental against its source snapshot)",
            ),
            Operation(
                "CreateSnapshots", self.create_snapshots, "Snapshot every volume of an instance"
            ),
        ]
