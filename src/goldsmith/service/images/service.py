"""The images service: its parts wired together, its operations, and its hooks into snapshots.

Hooks registered with the snapshots service:

* a read grant: an account may read (launch from, copy) a snapshot when it may launch an
  image that maps it — visible to it and not disabled — though it cannot describe or
  modify the snapshot itself;
* an in-use check: DeleteSnapshot of a snapshot an image maps (binned images included)
  answers InvalidSnapshot.InUse.
"""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa

from goldsmith.catalog import images as rows
from goldsmith.catalog.db import Catalog
from goldsmith.service.context import RequestContext
from goldsmith.service.images.attributes import Attributes
from goldsmith.service.images.common import ImageDeps, SnapshotPort, may_see
from goldsmith.service.images.describe import Describer
from goldsmith.service.images.lifecycle import Lifecycle
from goldsmith.service.images.organizations import OrganizationService, principals_of
from goldsmith.service.images.registry import Registry
from goldsmith.service.operations import Operation
from goldsmith.service.pagination import Paginator
from goldsmith.service.tags import ResourceKind, TagService


class ImageService:
    """Every image operation (see :meth:`operations`) and the admin entry points."""

    def __init__(
        self,
        catalog: Catalog,
        tags: TagService,
        snapshots: SnapshotPort,
        paginator: Paginator,
        platform_alias: str = "amazon",
    ) -> None:
        self.deps = ImageDeps(catalog, tags, snapshots, paginator, platform_alias)
        self.registry = Registry(self.deps)
        self.describer = Describer(self.deps)
        self.attributes = Attributes(self.deps)
        self.lifecycle = Lifecycle(self.deps)
        self.organizations = OrganizationService(catalog)
        for prefix in ("ami", "aki", "ari"):
            tags.register(ResourceKind(prefix, "image", self._owner_of))
        snapshots.add_read_grant(self.may_launch_snapshot)
        snapshots.add_in_use_check(self.image_using)

    @staticmethod
    def _owner_of(conn: sa.Connection, region: str, image_id: str) -> str | None:
        image = rows.get_images(conn, [image_id]).get(image_id)
        if image is None or image.region != region or image.recycle_bin_enter is not None:
            return None
        return image.account_id

    @staticmethod
    def may_launch_snapshot(conn: sa.Connection, ctx: RequestContext, snapshot_id: str) -> bool:
        """True when the caller may launch an image that maps ``snapshot_id``."""
        principals = principals_of(conn, ctx.account_id)
        ids = rows.images_using_snapshot(conn, ctx.region, snapshot_id)
        for image in rows.get_images(conn, ids).values():
            usable = image.state == "available" and image.recycle_bin_enter is None
            if usable and may_see(conn, image, principals):
                return True
        return False

    @staticmethod
    def image_using(conn: sa.Connection, region: str, snapshot_id: str) -> str | None:
        """An image that maps ``snapshot_id`` (so the snapshot is in use), or None."""
        found = rows.images_using_snapshot(conn, region, snapshot_id)
        return found[0] if found else None

    def register_file(
        self, ctx: RequestContext, path: Path, *, image_type: str, name: str
    ) -> rows.ImageRow:
        """Admin: a kernel (aki-) or ramdisk (ari-) image holding ``path``."""
        return self.registry.register_file(ctx, path, image_type=image_type, name=name)

    def operations(self) -> list[Operation]:
        r, d, a, lc = self.registry, self.describer, self.attributes, self.lifecycle
        return [
            Operation("RegisterImage", r.register_image, "Register an EBS-backed image"),
            Operation("DescribeImages", d.describe_images, "Find images (scoping, filters, pages)"),
            Operation(
                "DescribeImageAttribute", a.describe_image_attribute, "Read one image attribute"
            ),
            Operation(
                "ModifyImageAttribute",
                a.modify_image_attribute,
                "Change description, IMDS support or launch permissions",
            ),
            Operation(
                "ResetImageAttribute", a.reset_image_attribute, "Remove every launch permission"
            ),
            Operation(
                "CancelImageLaunchPermission",
                a.cancel_image_launch_permission,
                "Give up access to an image shared with you",
            ),
            Operation(
                "EnableImageBlockPublicAccess",
                a.enable_image_block_public_access,
                "Refuse new public sharing of your images",
            ),
            Operation(
                "DisableImageBlockPublicAccess",
                a.disable_image_block_public_access,
                "Allow public sharing again",
            ),
            Operation(
                "GetImageBlockPublicAccessState",
                a.get_image_block_public_access_state,
                "Whether public sharing is blocked",
            ),
            Operation(
                "DeregisterImage",
                lc.deregister_image,
                "Deregister (to the recycle bin when a rule applies)",
            ),
            Operation(
                "EnableImageDeregistrationProtection",
                lc.enable_image_deregistration_protection,
                "Protect an image from deregistration",
            ),
            Operation(
                "DisableImageDeregistrationProtection",
                lc.disable_image_deregistration_protection,
                "Remove deregistration protection (cooldown honoured)",
            ),
            Operation(
                "EnableImageDeprecation", lc.enable_image_deprecation, "Deprecate at a given time"
            ),
            Operation(
                "DisableImageDeprecation", lc.disable_image_deprecation, "Cancel deprecation"
            ),
            Operation("DisableImage", lc.disable_image, "Disable an image (unshares it)"),
            Operation("EnableImage", lc.enable_image, "Re-enable a disabled image"),
            Operation(
                "ListImagesInRecycleBin",
                lc.list_images_in_recycle_bin,
                "Your deregistered images still in the recycle bin",
            ),
            Operation(
                "RestoreImageFromRecycleBin",
                lc.restore_image_from_recycle_bin,
                "Bring an image back from the recycle bin",
            ),
            Operation("GetImageAncestry", lc.get_image_ancestry, "An image's source chain"),
        ]
