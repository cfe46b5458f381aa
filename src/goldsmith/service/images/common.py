"""What every image module shares: collaborators, the snapshot port, lookups, constants.

The images service reaches snapshots only through :class:`SnapshotPort` (structural: the
snapshots service satisfies it), so image code does not depend on how snapshots are stored
and unit tests can use a small fake.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

import sqlalchemy as sa

from goldsmith.catalog import accounts as account_rows
from goldsmith.catalog import images as rows
from goldsmith.catalog.db import Catalog
from goldsmith.service.context import RequestContext
from goldsmith.service.errors import missing_parameter, not_authorized_for, not_found
from goldsmith.service.ids import check_id, prefix_of
from goldsmith.service.images.organizations import Principals, principals_of
from goldsmith.service.pagination import Paginator
from goldsmith.service.tags import TagService

IMAGE_PREFIXES = ("ami", "aki", "ari")
PREFIX_BY_TYPE = {"machine": "ami", "kernel": "aki", "ramdisk": "ari"}


class SnapshotInfo(Protocol):
    """What images need to know about a snapshot."""

    @property
    def snapshot_id(self) -> str: ...

    @property
    def volume_size(self) -> int: ...


ReadGrant = Callable[[sa.Connection, RequestContext, str], bool]
InUseCheck = Callable[[sa.Connection, str, str], str | None]


class SnapshotPort(Protocol):
    """The snapshot operations images use (the snapshots service implements them)."""

    def usable(self, conn: sa.Connection, ctx: RequestContext, snapshot_id: str) -> Any: ...

    def add_read_grant(self, fn: ReadGrant) -> None: ...

    def add_in_use_check(self, fn: InUseCheck) -> None: ...

    def delete_for_image(
        self, conn: sa.Connection, ctx: RequestContext, snapshot_id: str
    ) -> Any: ...

    def create_from_file(
        self,
        ctx: RequestContext,
        path: Path,
        *,
        description: str,
        parent: str | None = None,
        tags: dict[str, str] | None = None,
        progress: Any = None,
    ) -> Any: ...


@dataclass(frozen=True)
class ImageDeps:
    """Collaborators of every image module."""

    catalog: Catalog
    tags: TagService
    snapshots: SnapshotPort
    paginator: Paginator
    platform_alias: str


def now() -> datetime:
    return datetime.now(UTC)


def image_id_param(params: Any, name: str = "ImageId") -> str:
    """The request's image id, checked for form (``ami-``/``aki-``/``ari-``)."""
    value = params.get(name)
    if value is None or value == "":
        raise missing_parameter(name)
    return check_image_id(str(value))


def check_image_id(value: str) -> str:
    prefix = prefix_of(value)
    return check_id(value, prefix if prefix in IMAGE_PREFIXES else "ami")


def snapshot_size(info: Any) -> int:
    """A snapshot's volume size in GiB, whatever the snapshot row calls it."""
    for name in ("volume_size", "volume_size_gib", "size_gib"):
        value = getattr(info, name, None)
        if isinstance(value, int):
            return value
    raise TypeError(f"snapshot row without a volume size: {info!r}")


def platform_account(conn: sa.Connection) -> str | None:
    found = account_rows.accounts_with_role(conn, "platform")
    return found[0].account_id if found else None


def get_visible(
    conn: sa.Connection, ctx: RequestContext, image_id: str, *, binned: bool = False
) -> tuple[rows.ImageRow, Principals]:
    """The image if the caller may see it (owner, granted, org/OU, public), else NotFound.

    Images in the recycle bin are only found with ``binned`` (and only by their owner).
    """
    image = rows.get_images(conn, [image_id]).get(image_id)
    principals = principals_of(conn, ctx.account_id)
    if image is None or image.region != ctx.region:
        raise not_found(image_id, f"The image id '[{image_id}]' does not exist")
    in_bin = image.recycle_bin_enter is not None
    if in_bin != binned or not may_see(conn, image, principals):
        raise not_found(image_id, f"The image id '[{image_id}]' does not exist")
    return image, principals


def may_see(conn: sa.Connection, image: rows.ImageRow, principals: Principals) -> bool:
    """Owner, public, or a launch permission naming the caller, its organization or an OU."""
    if image.account_id == principals.account_id:
        return True
    if image.recycle_bin_enter is not None or image.state == "disabled":
        return False
    if image.is_public:
        return True
    return bool(set(rows.permissions_of(conn, image.image_id)) & principals.grants)


def get_owned(
    conn: sa.Connection, ctx: RequestContext, image_id: str, action: str
) -> rows.ImageRow:
    """The caller's own image; others see NotFound (invisible) or AuthFailure (visible).

    EC2 answers an attempt to change someone else's visible image with AuthFailure
    ("Not authorized for image"), and one the caller cannot see with NotFound.
    """
    image, _ = get_visible(conn, ctx, image_id)
    if image.account_id != ctx.account_id:
        raise not_authorized_for(f"image:{image_id}")
    return image
