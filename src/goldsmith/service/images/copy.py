"""CopyImage: a new image in the caller's region from an image in any region.

The call is made in the destination region (the caller's) and names ``SourceRegion`` and
``SourceImageId``. In one transaction it writes:

* a ``pending`` image owned by the caller — same architecture, virtualization type, boot
  mode, root device, ENA/SR-IOV/IMDS/TPM/UEFI settings and deprecation time as the source;
  ``SourceImageId``/``SourceImageRegion`` set; not public, no launch permissions;
* a ``pending`` snapshot (``SnapshotService.new_copy_row``) for every EBS mapping, which the
  new image's mappings name;
* for a paravirtual image from another region, its kernel and ramdisk (``aki-``/``ari-``):
  mapped to a copy of them the caller can already see in the destination, else copied too
  (their own pending images and snapshots, made available first);
* a durable ``copy-image`` task.

The task moves each snapshot's data (``SnapshotService.copy_data``: only the chunks the
destination store lacks; within one region a new manifest and no chunk at all) and then
makes the images ``available``; on any failure the unfinished snapshots go to ``error`` and
the images to ``failed`` with a StateReason. After a server restart the task resumes where
it stopped (chunks already moved stay, completed snapshots are skipped). Progress shows on
the pending snapshots (DescribeSnapshots ``Progress`` and ``StateMessage``).

Who may copy: whoever may launch the source image (owner, launch permission for the
account, its organization or OU, or public). The copy belongs to the caller. Images with
billing products can be copied by their owner only. Errors: unknown source region
InvalidRegion (one this server does not serve: InvalidParameterValue); image not visible
InvalidAMIID.NotFound; deregistered (in the recycle bin), disabled or not ``available``
InvalidAMIID.Unavailable; ``Encrypted`` or
``KmsKeyId`` InvalidParameterValue (no encryption yet); a ``ClientToken`` reused with
different parameters IdempotentParameterMismatch (the same parameters return the first
call's ImageId).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

import sqlalchemy as sa

from goldsmith.catalog import images as rows
from goldsmith.catalog import instances as task_rows
from goldsmith.catalog import snapshots as snapshot_rows
from goldsmith.service.context import RequestContext
from goldsmith.service.errors import ClientError, invalid_parameter, missing_parameter, not_found
from goldsmith.service.ids import new_id
from goldsmith.service.images.common import (
    PREFIX_BY_TYPE,
    ImageDeps,
    check_image_id,
    may_see,
    now,
)
from goldsmith.service.images.organizations import Principals, principals_of
from goldsmith.service.images.validation import check_description, check_name
from goldsmith.service.snapshots import check_source_region, request_hash
from goldsmith.service.tags import validate_tags
from goldsmith.service.tasks import TaskRunner
from goldsmith.store import SnapshotNotFoundError

log = logging.getLogger(__name__)
KIND = "copy-image"
MAX_CLIENT_TOKEN = 64


class CopyPort(Protocol):
    """What CopyImage needs from the snapshots service."""

    def new_copy_row(
        self,
        conn: sa.Connection,
        ctx: RequestContext,
        source: snapshot_rows.SnapshotRow,
        *,
        description: str,
        tags: Mapping[str, str] | None = None,
    ) -> snapshot_rows.SnapshotRow: ...

    def copy_data(self, region: str, snapshot_id: str) -> Any: ...

    def mark_error(
        self, conn: sa.Connection, row: snapshot_rows.SnapshotRow, message: str
    ) -> Any: ...


@dataclass
class _Plan:
    """The rows one CopyImage call creates, kernel/ramdisk copies first."""

    images: list[rows.ImageRow] = field(default_factory=list)
    snapshots: dict[str, list[str]] = field(default_factory=dict)  # image id → its snapshots


def _unavailable(image_id: str, why: str) -> ClientError:
    return ClientError("InvalidAMIID.Unavailable", f"The image {image_id} {why}.")


def _split_tags(specs: Sequence[Mapping[str, Any]] | None) -> tuple[dict[str, str], dict[str, str]]:
    image: dict[str, str] = {}
    snapshot: dict[str, str] = {}
    for spec in specs or ():
        kind = spec.get("ResourceType")
        if kind not in ("image", "snapshot"):
            raise invalid_parameter(
                f"'{kind}' is not a valid taggable resource type for this operation."
            )
        (image if kind == "image" else snapshot).update(validate_tags(spec.get("Tags") or []))
    return image, snapshot


class ImageCopier:
    """CopyImage and its durable task."""

    def __init__(
        self,
        deps: ImageDeps,
        snapshots: CopyPort,
        tasks: TaskRunner,
        region_enabled: Callable[[str], bool],
    ) -> None:
        self._deps = deps
        self._snapshots = snapshots
        self._tasks = tasks
        self._region_enabled = region_enabled
        tasks.register(KIND, self._run)

    # -- the call -------------------------------------------------------------------------

    def copy_image(self, ctx: RequestContext, params: Mapping[str, Any]) -> dict[str, Any]:
        source_region = check_source_region(params.get("SourceRegion"), self._region_enabled)
        source_id = params.get("SourceImageId")
        if not source_id:
            raise missing_parameter("SourceImageId")
        source_id = check_image_id(str(source_id))
        name = check_name(params.get("Name"))
        description = check_description(params.get("Description"))
        if params.get("Encrypted") or params.get("KmsKeyId"):
            raise invalid_parameter(
                "Encrypted copies are not supported by this server (no KMS): "
                "omit Encrypted and KmsKeyId."
            )
        if params.get("DestinationOutpostArn"):
            raise invalid_parameter("Outposts are not supported.")
        image_tags, snapshot_tags = _split_tags(params.get("TagSpecifications"))
        token = params.get("ClientToken")
        if token is not None and (not isinstance(token, str) or len(token) > MAX_CLIENT_TOKEN):
            raise invalid_parameter(f"ClientToken must be at most {MAX_CLIENT_TOKEN} characters.")
        fingerprint = request_hash(params)
        with self._deps.catalog.begin() as conn:
            if token:
                earlier = self._by_token(conn, ctx, token)
                if earlier is not None:
                    if earlier.get("request_hash") != fingerprint:
                        raise ClientError(
                            "IdempotentParameterMismatch",
                            "The client token has been used with different parameters.",
                        )
                    return {"ImageId": earlier["image_id"]}
            principals = principals_of(conn, ctx.account_id)
            source = self._source(conn, principals, source_region, source_id)
            taken = rows.name_taken(conn, ctx.region, ctx.account_id, name)
            if taken is not None:
                raise ClientError(
                    "InvalidAMIName.Duplicate", f"AMI name {name} is already in use by AMI {taken}"
                )
            if params.get("CopyImageTags") and source.account_id == ctx.account_id:
                copied = self._deps.tags.tags_of(conn, source_region, [source_id])
                image_tags = {**copied.get(source_id, {}), **image_tags}
            plan = _Plan()
            kernel = self._boot_image(conn, ctx, principals, source, source.kernel_id, plan)
            ramdisk = self._boot_image(conn, ctx, principals, source, source.ramdisk_id, plan)
            image = self._image(conn, ctx, source, plan, snapshot_tags)
            image = replace(
                image,
                name=name,
                description=description if description is not None else source.description,
                kernel_id=kernel,
                ramdisk_id=ramdisk,
            )
            for row in [*plan.images, image]:
                rows.insert_image(conn, row)
            self._deps.tags.set_tags(conn, ctx, "image", image.image_id, image_tags)
            self._tasks.submit(
                conn,
                KIND,
                region=ctx.region,
                account_id=ctx.account_id,
                resource_id=image.image_id,
                payload={
                    "image_id": image.image_id,
                    "source_region": source_region,
                    "source_image_id": source_id,
                    "client_token": token,
                    "request_hash": fingerprint,
                    "images": [
                        [i.image_id, plan.snapshots.get(i.image_id, [])]
                        for i in [*plan.images, image]
                    ],
                },
            )
        return {"ImageId": image.image_id}

    @staticmethod
    def _by_token(conn: sa.Connection, ctx: RequestContext, token: str) -> dict[str, Any] | None:
        """The payload of the caller's earlier copy with this client token, if any."""
        tasks = task_rows.tasks
        query = sa.select(tasks.c.payload).where(
            tasks.c.kind == KIND,
            tasks.c.region == ctx.region,
            tasks.c.account_id == ctx.account_id,
            tasks.c.payload.contains(json.dumps(token), autoescape=True),
        )
        for (text,) in conn.execute(query):
            payload: dict[str, Any] = json.loads(text)
            if payload.get("client_token") == token:
                return payload
        return None

    @staticmethod
    def _source(
        conn: sa.Connection, principals: Principals, region: str, image_id: str
    ) -> rows.ImageRow:
        """The image to copy, if the caller may launch it and it can be copied."""
        image = rows.get_images(conn, [image_id]).get(image_id)
        if image is None or image.region != region:
            raise not_found(image_id, f"The image id '[{image_id}]' does not exist")
        mine = image.account_id == principals.account_id
        if image.recycle_bin_enter is not None:
            if mine:
                raise _unavailable(image_id, "is deregistered (in the recycle bin)")
            raise not_found(image_id, f"The image id '[{image_id}]' does not exist")
        if not may_see(conn, image, principals):
            raise not_found(image_id, f"The image id '[{image_id}]' does not exist")
        if image.state != "available":
            raise _unavailable(image_id, f"is {image.state} and cannot be copied")
        if image.billing_products and not mine:
            raise ClientError(
                "InvalidRequest",
                f"The image {image_id} has billing products; only its owner can copy it.",
            )
        return image

    def _image(
        self,
        conn: sa.Connection,
        ctx: RequestContext,
        source: rows.ImageRow,
        plan: _Plan,
        snapshot_tags: Mapping[str, str],
    ) -> rows.ImageRow:
        """A pending copy of ``source`` for the caller, with pending snapshot copies."""
        image_id = new_id(PREFIX_BY_TYPE.get(source.image_type, "ami"))
        devices = []
        copies = []
        for device in source.block_devices:
            if device.snapshot_id is None:
                devices.append(device)
                continue
            snap = snapshot_rows.get_snapshot(conn, source.region, device.snapshot_id)
            if snap is None or snap.state != "completed":
                raise _unavailable(source.image_id, f"maps {device.snapshot_id}, not available")
            copy = self._snapshots.new_copy_row(
                conn,
                ctx,
                snap,
                description=(
                    f"Copied for DestinationAmi {image_id} from SourceAmi {source.image_id} "
                    f"for SourceSnapshot {snap.snapshot_id}"
                ),
                tags=snapshot_tags,
            )
            copies.append(copy.snapshot_id)
            devices.append(replace(device, snapshot_id=copy.snapshot_id, encrypted=False))
        plan.snapshots[image_id] = copies
        return replace(
            source,
            image_id=image_id,
            region=ctx.region,
            account_id=ctx.account_id,
            state="pending",
            is_public=False,
            billing_products=source.billing_products if source.account_id == ctx.account_id else (),
            created_at=now(),
            protection="disabled",
            protection_cooldown_until=None,
            source_image_id=source.image_id,
            source_image_region=source.region,
            source_instance_id=None,
            last_launched_time=None,
            state_reason_code=None,
            state_reason_message=None,
            recycle_bin_enter=None,
            recycle_bin_exit=None,
            block_devices=tuple(devices),
        )

    def _boot_image(
        self,
        conn: sa.Connection,
        ctx: RequestContext,
        principals: Principals,
        source: rows.ImageRow,
        boot_id: str | None,
        plan: _Plan,
    ) -> str | None:
        """The kernel/ramdisk id the copy refers to in the caller's region.

        Same region: unchanged. Otherwise an existing copy the caller can see, else a new
        pending copy of it (added to ``plan``).
        """
        if boot_id is None or source.region == ctx.region:
            return boot_id
        table = rows.images
        query = sa.select(table.c.image_id).where(
            table.c.region == ctx.region,
            table.c.source_image_region == source.region,
            table.c.source_image_id == boot_id,
            table.c.state.in_(("available", "pending")),
            table.c.recycle_bin_enter.is_(None),
        )
        candidates = [str(r.image_id) for r in conn.execute(query.order_by(table.c.created_at))]
        found = rows.get_images(conn, candidates)
        for image_id in candidates:
            if may_see(conn, found[image_id], principals):
                return image_id
        for planned in plan.images:
            if planned.source_image_id == boot_id:
                return planned.image_id
        boot = rows.get_images(conn, [boot_id]).get(boot_id)
        if boot is None or boot.state != "available" or boot.recycle_bin_enter is not None:
            raise _unavailable(source.image_id, f"refers to {boot_id}, which is not available")
        copy = self._image(conn, ctx, boot, plan, {})
        name = boot.name
        if rows.name_taken(conn, ctx.region, ctx.account_id, name) is not None or any(
            i.name == name for i in plan.images
        ):
            name = f"{boot.name} from {boot.region} {boot.image_id}"[:128]
        plan.images.append(replace(copy, name=name))
        return copy.image_id

    # -- the task -------------------------------------------------------------------------

    def _run(self, task: task_rows.TaskRow, payload: dict[str, Any]) -> None:
        region = task.region
        try:
            for image_id, snapshot_ids in payload["images"]:
                for snapshot_id in snapshot_ids:
                    self._snapshots.copy_data(region, snapshot_id)
                with self._deps.catalog.begin() as conn:
                    conn.execute(
                        rows.images.update()
                        .where(rows.images.c.image_id == image_id, rows.images.c.state == "pending")
                        .values(state="available")
                    )
        except Exception as exc:
            log.warning("CopyImage %s failed: %s", payload["image_id"], exc)
            self._fail(region, payload, exc)
            raise

    def _fail(self, region: str, payload: dict[str, Any], exc: Exception) -> None:
        gone = isinstance(exc.__cause__, SnapshotNotFoundError)
        code = "Client.InvalidSnapshot.NotFound" if gone else "Server.InternalError"
        message = f"{code}: {exc}"[:255]
        with self._deps.catalog.begin() as conn:
            for image_id, snapshot_ids in payload["images"]:
                for snapshot_id in snapshot_ids:
                    snap = snapshot_rows.get_snapshot(conn, region, snapshot_id)
                    if snap is not None and snap.state == "pending":
                        self._snapshots.mark_error(conn, snap, f"copy of {image_id} failed")
                conn.execute(
                    rows.images.update()
                    .where(rows.images.c.image_id == image_id, rows.images.c.state == "pending")
                    .values(state="failed", state_reason_code=code, state_reason_message=message)
                )
