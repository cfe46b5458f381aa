"""CreateImage: an instance's EBS volumes captured into snapshots and a new image.

The call validates and writes, in one transaction, a ``pending`` image (SourceInstanceId
set, its mappings naming ``pending`` snapshots) and a durable ``create-image`` task; it
answers at once. The task then, holding the instance's lock:

1. makes the disks consistent — NoReboot=false: a clean ACPI shutdown of a running
   instance (which is restarted afterwards); NoReboot=true: the VM is paused (QEMU flushes
   every disk), a crash-consistent capture; a stopped instance needs nothing;
2. snapshots every volume incrementally against the volume's source snapshot (only what the
   guest wrote is read and stored);
3. marks the snapshots ``completed`` and the image ``available`` — or, on any failure, the
   snapshots ``error`` and the image ``failed`` with a StateReason.

Re-running the task after a restart skips the snapshots already completed.

BlockDeviceMappings in the request exclude attached volumes, override their mappings or add
new volumes to the image (:mod:`goldsmith.service.instances.image_mappings`); only attached
volumes are captured, added mappings are written as given.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from goldsmith.catalog import images as image_rows
from goldsmith.catalog import instances as rows
from goldsmith.catalog import snapshots as snapshot_rows
from goldsmith.catalog import volumes as volume_rows
from goldsmith.service.context import RequestContext
from goldsmith.service.errors import ClientError, missing_parameter
from goldsmith.service.ids import check_id, new_id
from goldsmith.service.images.validation import check_description, check_name
from goldsmith.service.instances.image_mappings import bare, plan_mappings
from goldsmith.service.instances.manager import InstanceManager, now, root_first
from goldsmith.service.instances.service import InstanceService, incorrect_state
from goldsmith.service.snapshots import SnapshotService
from goldsmith.service.tags import validate_tags
from goldsmith.service.tasks import TaskRunner

log = logging.getLogger(__name__)
KIND = "create-image"
GIB = 1024**3


def split_tags(params: Mapping[str, Any]) -> tuple[dict[str, str], dict[str, str]]:
    image: dict[str, str] = {}
    snapshot: dict[str, str] = {}
    for spec in params.get("TagSpecifications") or ():
        kind = spec.get("ResourceType")
        if kind not in ("image", "snapshot"):
            raise ClientError(
                "InvalidParameterValue",
                f"'{kind}' is not a valid taggable resource type for this operation.",
            )
        (image if kind == "image" else snapshot).update(validate_tags(spec.get("Tags") or []))
    return image, snapshot


class ImageCapture:
    """CreateImage and its task."""

    def __init__(
        self,
        instances: InstanceService,
        snapshots: SnapshotService,
        manager: InstanceManager,
        tasks: TaskRunner,
    ) -> None:
        self._instances = instances
        self._snapshots = snapshots
        self._manager = manager
        self._tasks = tasks
        self._catalog = instances.catalog
        tasks.register(KIND, self._run)

    def create_image(self, ctx: RequestContext, params: Mapping[str, Any]) -> dict[str, Any]:
        instance_id = params.get("InstanceId")
        if not instance_id:
            raise missing_parameter("InstanceId")
        name = check_name(params.get("Name"))
        description = check_description(params.get("Description"))
        no_reboot = bool(params.get("NoReboot"))
        image_tags, snapshot_tags = split_tags(params)
        with self._catalog.begin() as conn:
            (row,) = self._instances.owned(conn, ctx, [check_id(str(instance_id), "i")])
            if row.state not in ("running", "stopped"):
                raise incorrect_state(row, "imaged")
            taken = image_rows.name_taken(conn, ctx.region, ctx.account_id, name)
            if taken is not None:
                raise ClientError(
                    "InvalidAMIName.Duplicate", f"AMI name {name} is already in use by AMI {taken}"
                )
            attached = volume_rows.volumes_of(conn, [row.instance_id])[row.instance_id]
            mappings = plan_mappings(
                conn,
                ctx,
                self._snapshots,
                params.get("BlockDeviceMappings") or (),
                attached,
                row.root_device_name,
            )
            volumes = [
                v
                for v in root_first(attached, row.root_device_name)
                if bare(str(v.device)) not in mappings.excluded
            ]
            image_id = new_id("ami")
            plan: list[list[str | None]] = []
            devices: list[image_rows.BlockDeviceRow] = []
            for vol in volumes:
                snap = self._snapshots.new_row(
                    ctx,
                    size_bytes=vol.size_gib * GIB,
                    description=f"Created by CreateImage({row.instance_id}) for {image_id}",
                    parent=vol.snapshot_id,
                )
                snap = replace(snap, volume_id=vol.volume_id, volume_size=vol.size_gib)
                snapshot_rows.insert_snapshot(conn, snap)
                self._instances.tags.set_tags(
                    conn, ctx, "snapshot", snap.snapshot_id, snapshot_tags
                )
                plan.append([vol.volume_id, snap.snapshot_id, vol.snapshot_id])
                devices.append(mappings.mapping_for(vol, snap.snapshot_id))
            devices += mappings.added
            source, _ = None, None
            found = image_rows.get_images(conn, [row.image_id]).get(row.image_id)
            image = image_rows.ImageRow(
                image_id=image_id,
                region=ctx.region,
                account_id=ctx.account_id,
                name=name,
                description=description,
                state="pending",
                image_type="machine",
                architecture=row.architecture,
                virtualization_type=row.virtualization_type,
                root_device_name=row.root_device_name,
                root_device_type="ebs",
                image_location=None,
                kernel_id=row.kernel_id,
                ramdisk_id=row.ramdisk_id,
                boot_mode=row.boot_mode if row.virtualization_type == "hvm" else None,
                tpm_support=None,
                uefi_data=None,
                imds_support=found.imds_support if found is not None else None,
                ena_support=True,
                sriov_net_support=None,
                platform=None,
                hypervisor="xen",
                is_public=False,
                billing_products=(),
                created_at=now(),
                source_instance_id=row.instance_id,
                source_image_id=source,
                block_devices=tuple(devices),
            )
            image_rows.insert_image(conn, image)
            self._instances.tags.set_tags(conn, ctx, "image", image_id, image_tags)
            self._tasks.submit(
                conn,
                KIND,
                region=ctx.region,
                account_id=ctx.account_id,
                resource_id=image_id,
                payload={
                    "image_id": image_id,
                    "instance_id": row.instance_id,
                    "no_reboot": no_reboot,
                    "volumes": plan,
                },
            )
        return {"ImageId": image_id}

    # -- the task ------------------------------------------------------------------------------

    def _run(self, task: rows.TaskRow, payload: dict[str, Any]) -> None:
        region, image_id = task.region, str(payload["image_id"])
        instance_id = str(payload["instance_id"])
        try:
            self._capture(region, instance_id, payload)
        except Exception as exc:
            log.warning("CreateImage %s from %s failed: %s", image_id, instance_id, exc)
            self._fail(region, image_id, payload, str(exc))
            raise
        with self._catalog.begin() as conn:
            image_rows.update_image(conn, image_id, state="available")

    def _capture(self, region: str, instance_id: str, payload: dict[str, Any]) -> None:
        with self._catalog.begin() as conn:
            todo = []
            for volume_id, snapshot_id, source in payload["volumes"]:
                snap = snapshot_rows.get_snapshot(conn, region, snapshot_id)
                if snap is not None and snap.state != "completed":
                    todo.append((volume_id, snap, source))
        if not todo:
            return
        manager = self._manager
        with manager.lock(instance_id):
            how = manager.quiesce(instance_id, reboot=not payload["no_reboot"])
            try:
                for volume_id, snap, source in todo:
                    self._snapshot_volume(region, volume_id, snap, source, how == "paused")
            finally:
                manager.unquiesce(region, instance_id, how)

    def _snapshot_volume(
        self,
        region: str,
        volume_id: str,
        snap: snapshot_rows.SnapshotRow,
        source: str | None,
        paused: bool,
    ) -> None:
        repo = self._snapshots.repository(region)
        if not repo.exists(snap.snapshot_id):
            self._manager.files.snapshot(
                region, volume_id, source, snap.snapshot_id, force_share=paused
            )
        with self._catalog.begin() as conn:
            self._snapshots.mark_completed(conn, snap)

    def _fail(self, region: str, image_id: str, payload: dict[str, Any], message: str) -> None:
        with self._catalog.begin() as conn:
            for _vol, snapshot_id, _src in payload["volumes"]:
                snap = snapshot_rows.get_snapshot(conn, region, snapshot_id)
                if snap is not None and snap.state != "completed":
                    self._snapshots.mark_error(conn, snap, message)
            image_rows.update_image(
                conn,
                image_id,
                state="failed",
                state_reason_code="Server.InternalError",
                state_reason_message=f"Server.InternalError: {message}"[:255],
            )
