"""An image's life after registration: deprecate, disable, protect, deregister, restore.

* DeregisterImage: owner only; refused while deregistration protection is on (or in its
  24-hour cooldown). When a recycle bin rule of the owner covers the image (resource type
  ``EC2_IMAGE``, matching resource tags), the image moves to the bin for the rule's
  retention instead of disappearing; ListImagesInRecycleBin shows it and
  RestoreImageFromRecycleBin brings it back with its tags and launch permissions. Binned
  images past their retention are purged on the next bin or deregister call of the region
  and by the server's periodic recycle bin sweep.
  ``DeleteAssociatedSnapshots`` deletes the mappings' snapshots when the image is gone for
  good (``success``); snapshots of a binned image stay, reported ``skipped``.
* Enable/DisableImageDeprecation: ``DeprecateAt`` (rounded up to the minute, at most 10
  years ahead); others stop listing the image once that time passes.
* DisableImage: state ``disabled``, every launch permission and public flag removed (EC2
  does not restore them on EnableImage).
* GetImageAncestry: the chain of SourceImageId/SourceImageRegion links, newest first.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa

from goldsmith.catalog import images as rows
from goldsmith.service.context import RequestContext
from goldsmith.service.errors import ClientError, Ec2Error, invalid_parameter, missing_parameter
from goldsmith.service.images.common import (
    ImageDeps,
    check_image_id,
    get_owned,
    get_visible,
    image_id_param,
    now,
    platform_account,
)
from goldsmith.service.pagination import max_results
from goldsmith.service.retention import retention

COOLDOWN = timedelta(hours=24)
MAX_DEPRECATION = timedelta(days=3650)


def _protected(image: rows.ImageRow, at: datetime) -> bool:
    if image.protection != "disabled":
        return True
    return image.protection_cooldown_until is not None and image.protection_cooldown_until > at


class Lifecycle:
    """Deregistration, protection, deprecation, enable/disable, recycle bin, ancestry."""

    def __init__(self, deps: ImageDeps) -> None:
        self._deps = deps

    # Deregistration -------------------------------------------------------------------

    def deregister_image(self, ctx: RequestContext, params: Mapping[str, Any]) -> dict[str, Any]:
        image_id = image_id_param(params)
        delete_snapshots = bool(params.get("DeleteAssociatedSnapshots"))
        at = now()
        with self._deps.catalog.begin() as conn:
            self._purge_expired(conn, ctx, at)
            image = get_owned(conn, ctx, image_id, "DeregisterImage")
            if _protected(image, at):
                raise ClientError(
                    "OperationNotPermitted",
                    f"The image {image_id} has deregistration protection enabled; disable it "
                    "first (with cooldown, deregistration waits 24 hours).",
                )
            snapshots = [d.snapshot_id for d in image.block_devices if d.snapshot_id]
            retention = self._retention(conn, ctx, image_id)
            if retention is not None:
                rows.update_image(
                    conn, image_id, recycle_bin_enter=at, recycle_bin_exit=at + retention
                )
                results = [{"SnapshotId": s, "ReturnCode": "skipped"} for s in snapshots]
            else:
                rows.delete_image(conn, image_id)
                self._deps.tags.forget(conn, ctx.region, image_id)
                results = self._delete_snapshots(conn, ctx, snapshots) if delete_snapshots else []
        return {"Return": True, "DeleteSnapshotResults": results if delete_snapshots else None}

    def _delete_snapshots(
        self, conn: sa.Connection, ctx: RequestContext, snapshot_ids: list[str]
    ) -> list[dict[str, str]]:
        out = []
        for snapshot_id in dict.fromkeys(snapshot_ids):
            try:
                with conn.begin_nested():
                    self._deps.snapshots.delete_for_image(conn, ctx, snapshot_id)
                code = "success"
            except Ec2Error as exc:
                code = "missing-permissions" if exc.status in (401, 403) else "client-error"
            out.append({"SnapshotId": snapshot_id, "ReturnCode": code})
        return out

    def _retention(
        self, conn: sa.Connection, ctx: RequestContext, image_id: str
    ) -> timedelta | None:
        tags = self._deps.tags.tags_of(conn, ctx.region, [image_id]).get(image_id, {})
        return retention(conn, ctx.region, ctx.account_id, "EC2_IMAGE", tags)

    def _purge_expired(self, conn: sa.Connection, ctx: RequestContext, at: datetime) -> None:
        self.purge_expired(conn, ctx.region, at)

    def purge_expired(self, conn: sa.Connection, region: str | None, at: datetime) -> int:
        """Delete for good the binned images (of ``region``, or all) expired by ``at``.

        Their snapshots stay (no longer in use, so their owner may delete them).
        """
        images = rows.images
        query = sa.select(images.c.image_id, images.c.region).where(images.c.recycle_bin_exit <= at)
        if region is not None:
            query = query.where(images.c.region == region)
        expired = list(conn.execute(query))
        for image_id, image_region in expired:
            rows.delete_image(conn, image_id)
            self._deps.tags.forget(conn, image_region, image_id)
        return len(expired)

    # Protection -----------------------------------------------------------------------

    def enable_image_deregistration_protection(
        self, ctx: RequestContext, params: Mapping[str, Any]
    ) -> dict[str, Any]:
        image_id = image_id_param(params)
        mode = "enabled-with-cooldown" if params.get("WithCooldown") else "enabled"
        with self._deps.catalog.begin() as conn:
            get_owned(conn, ctx, image_id, "EnableImageDeregistrationProtection")
            rows.update_image(conn, image_id, protection=mode, protection_cooldown_until=None)
        return {"Return": mode}

    def disable_image_deregistration_protection(
        self, ctx: RequestContext, params: Mapping[str, Any]
    ) -> dict[str, Any]:
        image_id = image_id_param(params)
        with self._deps.catalog.begin() as conn:
            image = get_owned(conn, ctx, image_id, "DisableImageDeregistrationProtection")
            until = now() + COOLDOWN if image.protection == "enabled-with-cooldown" else None
            rows.update_image(
                conn, image_id, protection="disabled", protection_cooldown_until=until
            )
        return {"Return": "disabled"}

    # Deprecation ----------------------------------------------------------------------

    def enable_image_deprecation(
        self, ctx: RequestContext, params: Mapping[str, Any]
    ) -> dict[str, Any]:
        image_id = image_id_param(params)
        at = params.get("DeprecateAt")
        if at is None:
            raise missing_parameter("DeprecateAt")
        if not isinstance(at, datetime):
            raise invalid_parameter(f"Value ({at}) for parameter DeprecateAt is invalid.")
        if at.tzinfo is None:
            at = at.replace(tzinfo=now().tzinfo)
        if at > now() + MAX_DEPRECATION:
            raise invalid_parameter("DeprecateAt can be at most 10 years in the future.")
        # EC2 rounds the time up to the next whole minute.
        if at.second or at.microsecond:
            at = at.replace(second=0, microsecond=0) + timedelta(minutes=1)
        with self._deps.catalog.begin() as conn:
            get_owned(conn, ctx, image_id, "EnableImageDeprecation")
            rows.update_image(conn, image_id, deprecation_time=at)
        return {"Return": True}

    def disable_image_deprecation(
        self, ctx: RequestContext, params: Mapping[str, Any]
    ) -> dict[str, Any]:
        image_id = image_id_param(params)
        with self._deps.catalog.begin() as conn:
            get_owned(conn, ctx, image_id, "DisableImageDeprecation")
            rows.update_image(conn, image_id, deprecation_time=None)
        return {"Return": True}

    # Enable / disable -----------------------------------------------------------------

    def disable_image(self, ctx: RequestContext, params: Mapping[str, Any]) -> dict[str, Any]:
        image_id = image_id_param(params)
        with self._deps.catalog.begin() as conn:
            image = get_owned(conn, ctx, image_id, "DisableImage")
            if image.state not in ("available", "disabled"):
                raise ClientError(
                    "IncorrectState",
                    f"The image {image_id} is {image.state}; it can't be disabled.",
                )
            rows.clear_permissions(conn, image_id)
            rows.update_image(conn, image_id, state="disabled", is_public=False)
        return {"Return": True}

    def enable_image(self, ctx: RequestContext, params: Mapping[str, Any]) -> dict[str, Any]:
        image_id = image_id_param(params)
        with self._deps.catalog.begin() as conn:
            image = get_owned(conn, ctx, image_id, "EnableImage")
            if image.state != "disabled":
                raise ClientError("IncorrectState", f"The image {image_id} is not disabled.")
            rows.update_image(conn, image_id, state="available")
        return {"Return": True}

    # Recycle bin ----------------------------------------------------------------------

    def list_images_in_recycle_bin(
        self, ctx: RequestContext, params: Mapping[str, Any]
    ) -> dict[str, Any]:
        ids = [check_image_id(str(i)) for i in params.get("ImageIds") or []]
        after = self._deps.paginator.decode(
            params.get("NextToken"), "ListImagesInRecycleBin", params
        )
        limit = max_results(params.get("MaxResults"), (1, 1000), None)
        images = rows.images
        with self._deps.catalog.begin() as conn:
            self._purge_expired(conn, ctx, now())
            query = images.select().where(
                images.c.region == ctx.region,
                images.c.account_id == ctx.account_id,
                images.c.recycle_bin_enter.is_not(None),
            )
            if ids:
                query = query.where(images.c.image_id.in_(ids))
            if after is not None:
                query = query.where(images.c.image_id > after[0])
            if limit is not None:
                query = query.limit(limit + 1)
            found = [
                rows.image_from(r._mapping) for r in conn.execute(query.order_by(images.c.image_id))
            ]
        token = None
        if limit is not None and len(found) > limit:
            found = found[:limit]
            token = self._deps.paginator.encode(
                (found[-1].image_id,), "ListImagesInRecycleBin", params
            )
        return {
            "Images": [
                {
                    "ImageId": i.image_id,
                    "Name": i.name,
                    "Description": i.description,
                    "RecycleBinEnterTime": i.recycle_bin_enter,
                    "RecycleBinExitTime": i.recycle_bin_exit,
                }
                for i in found
            ],
            "NextToken": token,
        }

    def restore_image_from_recycle_bin(
        self, ctx: RequestContext, params: Mapping[str, Any]
    ) -> dict[str, Any]:
        image_id = image_id_param(params)
        with self._deps.catalog.begin() as conn:
            self._purge_expired(conn, ctx, now())
            image, _ = get_visible(conn, ctx, image_id, binned=True)
            if image.account_id != ctx.account_id:
                raise ClientError(
                    "InvalidAMIID.NotFound", f"The image id '[{image_id}]' does not exist"
                )
            taken = rows.name_taken(conn, ctx.region, ctx.account_id, image.name)
            if taken is not None:
                raise ClientError(
                    "InvalidAMIName.Duplicate",
                    f"AMI name {image.name} is already in use by AMI {taken}",
                )
            rows.update_image(conn, image_id, recycle_bin_enter=None, recycle_bin_exit=None)
        return {"Return": True}

    # Lineage --------------------------------------------------------------------------

    def get_image_ancestry(self, ctx: RequestContext, params: Mapping[str, Any]) -> dict[str, Any]:
        image_id = image_id_param(params)
        entries: list[dict[str, Any]] = []
        with self._deps.catalog.begin() as conn:
            image, _ = get_visible(conn, ctx, image_id)
            seen: set[str] = set()
            current: rows.ImageRow | None = image
            while current is not None and current.image_id not in seen:
                seen.add(current.image_id)
                entries.append(
                    {
                        "CreationDate": current.created_at,
                        "ImageId": current.image_id,
                        "ImageOwnerAlias": self._alias(conn, current),
                        "SourceImageId": current.source_image_id,
                        "SourceImageRegion": current.source_image_region,
                    }
                )
                source = current.source_image_id
                current = rows.get_images(conn, [source]).get(source) if source else None
        return {"ImageAncestryEntries": entries}

    def _alias(self, conn: sa.Connection, image: rows.ImageRow) -> str | None:
        return self._deps.platform_alias if image.account_id == platform_account(conn) else None

    def record_launch(self, conn: sa.Connection, image_id: str, at: datetime) -> None:
        """Set LastLaunchedTime (for RunInstances, later)."""
        rows.update_image(conn, image_id, last_launched_time=at)
