"""Images (AMIs, AKIs, ARIs): rows, block device mappings, launch permissions.

Contract:

* one ``images`` row per image, in its region, with its owner (``account_id``); the state
  columns say where it is in its life (``available``, ``disabled``, ``deregistered`` while in
  the recycle bin); a row leaves the table only when it is gone for good;
* ``image_block_devices`` holds the mappings in their registration order (``position``), so
  a snapshot's users can be found by index (DeleteSnapshot → InvalidSnapshot.InUse);
* ``image_launch_permissions`` holds grants as ``(kind, value)``: ``user`` (account id),
  ``org`` (organization ARN), ``ou`` (organizational unit ARN). ``Group=all`` is the
  ``is_public`` column, so "public" is one indexed comparison;
* ``image_block_public_access`` has a row per (region, account) that turned it on;
* ``image_billing_accounts`` lists the accounts the admin allows to set BillingProducts.

This module stores and fetches; the service layer validates and decides who may see what.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from goldsmith.catalog.schema import UtcDateTime, metadata, tags

images = sa.Table(
    "images",
    metadata,
    sa.Column("image_id", sa.String(32), primary_key=True),
    sa.Column("region", sa.String(32), nullable=False),
    sa.Column("account_id", sa.String(12), nullable=False),
    sa.Column("name", sa.String(128), nullable=False),
    sa.Column("description", sa.String(255)),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("image_type", sa.String(16), nullable=False),
    sa.Column("architecture", sa.String(16), nullable=False),
    sa.Column("virtualization_type", sa.String(16), nullable=False),
    sa.Column("root_device_name", sa.String(32)),
    sa.Column("root_device_type", sa.String(16), nullable=False),
    sa.Column("image_location", sa.String(255)),
    sa.Column("kernel_id", sa.String(32)),
    sa.Column("ramdisk_id", sa.String(32)),
    sa.Column("boot_mode", sa.String(16)),
    sa.Column("tpm_support", sa.String(8)),
    sa.Column("uefi_data", sa.Text()),
    sa.Column("imds_support", sa.String(8)),
    sa.Column("ena_support", sa.Boolean()),
    sa.Column("sriov_net_support", sa.String(16)),
    sa.Column("platform", sa.String(16)),
    sa.Column("hypervisor", sa.String(8), nullable=False),
    sa.Column("is_public", sa.Boolean(), nullable=False),
    sa.Column("billing_products", sa.Text(), nullable=False),
    sa.Column("created_at", UtcDateTime(), nullable=False),
    sa.Column("deprecation_time", UtcDateTime()),
    sa.Column("protection", sa.String(32), nullable=False),
    sa.Column("protection_cooldown_until", UtcDateTime()),
    sa.Column("source_image_id", sa.String(32)),
    sa.Column("source_image_region", sa.String(32)),
    sa.Column("source_instance_id", sa.String(32)),
    sa.Column("last_launched_time", UtcDateTime()),
    sa.Column("state_reason_code", sa.String(64)),
    sa.Column("state_reason_message", sa.String(255)),
    sa.Column("recycle_bin_enter", UtcDateTime()),
    sa.Column("recycle_bin_exit", UtcDateTime()),
    sa.Index("ix_images_owner_name", "region", "account_id", "name"),
    sa.Index("ix_images_public_name", "region", "is_public", "name"),
    sa.Index("ix_images_region_name", "region", "name"),
    # Covering indexes for DescribeImages' checks (migration 0004): candidates found through
    # another index are checked from the index alone; owners' pages walk in id order.
    sa.Index(
        "ix_images_visibility",
        "image_id",
        "region",
        "account_id",
        "is_public",
        "state",
        "deprecation_time",
        "recycle_bin_enter",
    ),
    sa.Index(
        "ix_images_owner_id",
        "region",
        "account_id",
        "image_id",
        "is_public",
        "state",
        "deprecation_time",
        "recycle_bin_enter",
    ),
)

image_block_devices = sa.Table(
    "image_block_devices",
    metadata,
    sa.Column("image_id", sa.String(32), primary_key=True),
    sa.Column("position", sa.Integer(), primary_key=True),
    sa.Column("region", sa.String(32), nullable=False),
    sa.Column("device_name", sa.String(32), nullable=False),
    sa.Column("virtual_name", sa.String(32)),
    sa.Column("no_device", sa.Boolean(), nullable=False),
    sa.Column("snapshot_id", sa.String(32)),
    sa.Column("volume_size", sa.Integer()),
    sa.Column("volume_type", sa.String(16)),
    sa.Column("delete_on_termination", sa.Boolean()),
    sa.Column("encrypted", sa.Boolean()),
    sa.Column("iops", sa.Integer()),
    sa.Column("throughput", sa.Integer()),
    sa.Index("ix_image_block_devices_snapshot", "region", "snapshot_id"),
)

image_launch_permissions = sa.Table(
    "image_launch_permissions",
    metadata,
    sa.Column("region", sa.String(32), primary_key=True),
    sa.Column("image_id", sa.String(32), primary_key=True),
    sa.Column("kind", sa.String(8), primary_key=True),
    sa.Column("value", sa.String(255), primary_key=True),
    sa.Index("ix_image_launch_permissions_grantee", "region", "kind", "value", "image_id"),
)

image_block_public_access = sa.Table(
    "image_block_public_access",
    metadata,
    sa.Column("region", sa.String(32), primary_key=True),
    sa.Column("account_id", sa.String(12), primary_key=True),
    sa.Column("state", sa.String(32), nullable=False),
)

image_billing_accounts = sa.Table(
    "image_billing_accounts",
    metadata,
    sa.Column("account_id", sa.String(12), primary_key=True),
)

# Tag filters on 100,000 images need tags by (key, value), not only by resource; with the
# resource id in the index, the matching ids come from the index alone (migration 0004).
ix_tags_key_value = sa.Index(
    "ix_tags_key_value", tags.c.region, tags.c.key, tags.c.value, tags.c.resource_id
)

IMAGE_COLUMNS = tuple(c.name for c in images.columns)


@dataclass(frozen=True)
class BlockDeviceRow:
    """One mapping: an EBS volume (``snapshot_id``/``volume_size``), ephemeral, or NoDevice."""

    device_name: str
    virtual_name: str | None = None
    no_device: bool = False
    snapshot_id: str | None = None
    volume_size: int | None = None
    volume_type: str | None = None
    delete_on_termination: bool | None = None
    encrypted: bool | None = None
    iops: int | None = None
    throughput: int | None = None


@dataclass(frozen=True)
class ImageRow:
    """An image as stored; ``billing_products`` is a list (JSON in the database)."""

    image_id: str
    region: str
    account_id: str
    name: str
    description: str | None
    state: str
    image_type: str
    architecture: str
    virtualization_type: str
    root_device_name: str | None
    root_device_type: str
    image_location: str | None
    kernel_id: str | None
    ramdisk_id: str | None
    boot_mode: str | None
    tpm_support: str | None
    uefi_data: str | None
    imds_support: str | None
    ena_support: bool | None
    sriov_net_support: str | None
    platform: str | None
    hypervisor: str
    is_public: bool
    billing_products: tuple[str, ...]
    created_at: datetime
    deprecation_time: datetime | None = None
    protection: str = "disabled"
    protection_cooldown_until: datetime | None = None
    source_image_id: str | None = None
    source_image_region: str | None = None
    source_instance_id: str | None = None
    last_launched_time: datetime | None = None
    state_reason_code: str | None = None
    state_reason_message: str | None = None
    recycle_bin_enter: datetime | None = None
    recycle_bin_exit: datetime | None = None
    block_devices: tuple[BlockDeviceRow, ...] = field(default=(), compare=False)


def _to_db(row: ImageRow) -> dict[str, Any]:
    values = {name: getattr(row, name) for name in IMAGE_COLUMNS}
    values["billing_products"] = json.dumps(list(row.billing_products))
    return values


def image_from(mapping: Any, devices: Sequence[BlockDeviceRow] = ()) -> ImageRow:
    """An :class:`ImageRow` from a result row of ``images`` (plus its mappings)."""
    values = {name: mapping[name] for name in IMAGE_COLUMNS}
    values["billing_products"] = tuple(json.loads(values["billing_products"]))
    return ImageRow(**values, block_devices=tuple(devices))


def insert_image(conn: sa.Connection, row: ImageRow) -> None:
    conn.execute(images.insert().values(**_to_db(row)))
    if row.block_devices:
        conn.execute(
            image_block_devices.insert(),
            [
                {"image_id": row.image_id, "position": i, "region": row.region, **d.__dict__}
                for i, d in enumerate(row.block_devices)
            ],
        )


def update_image(conn: sa.Connection, image_id: str, **values: Any) -> None:
    conn.execute(images.update().where(images.c.image_id == image_id).values(**values))


def delete_image(conn: sa.Connection, image_id: str) -> None:
    """Remove an image for good (its mappings and grants too)."""
    conn.execute(image_block_devices.delete().where(image_block_devices.c.image_id == image_id))
    conn.execute(
        image_launch_permissions.delete().where(image_launch_permissions.c.image_id == image_id)
    )
    conn.execute(images.delete().where(images.c.image_id == image_id))


def block_devices_of(
    conn: sa.Connection, image_ids: Iterable[str]
) -> dict[str, list[BlockDeviceRow]]:
    """Mappings per image id, in registration order."""
    ids = list(image_ids)
    out: dict[str, list[BlockDeviceRow]] = {}
    columns = [
        c for c in image_block_devices.columns if c.name not in {"image_id", "position", "region"}
    ]
    for start in range(0, len(ids), 500):
        query = (
            sa.select(image_block_devices.c.image_id, *columns)
            .where(image_block_devices.c.image_id.in_(ids[start : start + 500]))
            .order_by(image_block_devices.c.image_id, image_block_devices.c.position)
        )
        for r in conn.execute(query):
            values = dict(r._mapping)
            out.setdefault(values.pop("image_id"), []).append(BlockDeviceRow(**values))
    return out


def get_images(conn: sa.Connection, image_ids: Iterable[str]) -> dict[str, ImageRow]:
    """Images by id (any owner, any state, in any region), with their mappings."""
    ids = list(image_ids)
    found: dict[str, ImageRow] = {}
    for start in range(0, len(ids), 500):
        query = images.select().where(images.c.image_id.in_(ids[start : start + 500]))
        rows = list(conn.execute(query))
        devices = block_devices_of(conn, [r.image_id for r in rows])
        for r in rows:
            found[r.image_id] = image_from(r._mapping, devices.get(r.image_id, ()))
    return found


def images_using_snapshot(conn: sa.Connection, region: str, snapshot_id: str) -> list[str]:
    """Ids of images (in the bin or not) whose mappings name ``snapshot_id``."""
    query = sa.select(image_block_devices.c.image_id).where(
        image_block_devices.c.region == region, image_block_devices.c.snapshot_id == snapshot_id
    )
    return [r.image_id for r in conn.execute(query)]


def name_taken(conn: sa.Connection, region: str, account_id: str, name: str) -> str | None:
    """The id of the owner's live (not binned) image called ``name`` in ``region``, if any."""
    query = sa.select(images.c.image_id).where(
        images.c.region == region,
        images.c.account_id == account_id,
        images.c.name == name,
        images.c.recycle_bin_enter.is_(None),
    )
    return conn.execute(query.limit(1)).scalar_one_or_none()


# Launch permissions ------------------------------------------------------------------


def permissions_of(conn: sa.Connection, image_id: str) -> list[tuple[str, str]]:
    query = (
        sa.select(image_launch_permissions.c.kind, image_launch_permissions.c.value)
        .where(image_launch_permissions.c.image_id == image_id)
        .order_by(image_launch_permissions.c.kind, image_launch_permissions.c.value)
    )
    return [(r.kind, r.value) for r in conn.execute(query)]


def add_permissions(
    conn: sa.Connection, region: str, image_id: str, grants: Iterable[tuple[str, str]]
) -> None:
    existing = set(permissions_of(conn, image_id))
    new = [g for g in dict.fromkeys(grants) if g not in existing]
    if new:
        conn.execute(
            image_launch_permissions.insert(),
            [{"region": region, "image_id": image_id, "kind": k, "value": v} for k, v in new],
        )


def remove_permissions(
    conn: sa.Connection, image_id: str, grants: Iterable[tuple[str, str]]
) -> None:
    for kind, value in grants:
        conn.execute(
            image_launch_permissions.delete().where(
                image_launch_permissions.c.image_id == image_id,
                image_launch_permissions.c.kind == kind,
                image_launch_permissions.c.value == value,
            )
        )


def clear_permissions(conn: sa.Connection, image_id: str) -> None:
    conn.execute(
        image_launch_permissions.delete().where(image_launch_permissions.c.image_id == image_id)
    )


# Block public access and billing authorisation -----------------------------------------


def block_public_access(conn: sa.Connection, region: str, account_id: str) -> str | None:
    query = sa.select(image_block_public_access.c.state).where(
        image_block_public_access.c.region == region,
        image_block_public_access.c.account_id == account_id,
    )
    return conn.execute(query).scalar_one_or_none()


def set_block_public_access(
    conn: sa.Connection, region: str, account_id: str, state: str | None
) -> None:
    conn.execute(
        image_block_public_access.delete().where(
            image_block_public_access.c.region == region,
            image_block_public_access.c.account_id == account_id,
        )
    )
    if state is not None:
        conn.execute(
            image_block_public_access.insert().values(
                region=region, account_id=account_id, state=state
            )
        )


def billing_allowed(conn: sa.Connection, account_id: str) -> bool:
    query = sa.select(image_billing_accounts.c.account_id).where(
        image_billing_accounts.c.account_id == account_id
    )
    return conn.execute(query).first() is not None


def set_billing_allowed(conn: sa.Connection, account_id: str, allowed: bool) -> None:
    conn.execute(
        image_billing_accounts.delete().where(image_billing_accounts.c.account_id == account_id)
    )
    if allowed:
        conn.execute(image_billing_accounts.insert().values(account_id=account_id))
