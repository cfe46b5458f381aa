"""EBS volumes: rows only.

Contract: one ``volumes`` row per volume, in its region, with its owner. ``snapshot_id`` is
the snapshot the volume was created from (its qcow2 overlay's base; incremental snapshots of
the volume use it as their parent). An attached volume has ``instance_id``, ``device`` and
``attach_time``; its ``state`` is ``in-use``. A deleted volume's row is removed (its file
first, by the service, after the transaction commits).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from goldsmith.catalog.schema import UtcDateTime, metadata

volumes = sa.Table(
    "volumes",
    metadata,
    sa.Column("volume_id", sa.String(32), primary_key=True),
    sa.Column("region", sa.String(32), nullable=False),
    sa.Column("account_id", sa.String(12), nullable=False),
    sa.Column("availability_zone", sa.String(32), nullable=False),
    sa.Column("size_gib", sa.Integer(), nullable=False),
    sa.Column("snapshot_id", sa.String(32)),
    sa.Column("volume_type", sa.String(16), nullable=False),
    sa.Column("iops", sa.Integer()),
    sa.Column("encrypted", sa.Boolean(), nullable=False),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("created_at", UtcDateTime(), nullable=False),
    sa.Column("instance_id", sa.String(32)),
    sa.Column("device", sa.String(32)),
    sa.Column("attach_time", UtcDateTime()),
    sa.Column("attachment_state", sa.String(16)),
    sa.Column("delete_on_termination", sa.Boolean()),
    sa.Column("client_token", sa.String(64)),
    sa.Index("ix_volumes_owner", "region", "account_id", "volume_id"),
    sa.Index("ix_volumes_instance", "instance_id"),
)

VOLUME_COLUMNS = tuple(c.name for c in volumes.columns)


@dataclass(frozen=True)
class VolumeRow:
    """One volume as stored (``size_gib`` in GiB)."""

    volume_id: str
    region: str
    account_id: str
    availability_zone: str
    size_gib: int
    snapshot_id: str | None
    volume_type: str
    iops: int | None
    encrypted: bool
    state: str
    created_at: datetime
    instance_id: str | None
    device: str | None
    attach_time: datetime | None
    attachment_state: str | None
    delete_on_termination: bool | None
    client_token: str | None


def _volume(r: Any) -> VolumeRow:
    return VolumeRow(**{name: r._mapping[name] for name in VOLUME_COLUMNS})


def insert_volume(conn: sa.Connection, row: VolumeRow) -> None:
    conn.execute(volumes.insert().values(**row.__dict__))


def update_volume(conn: sa.Connection, volume_id: str, **values: Any) -> None:
    conn.execute(volumes.update().where(volumes.c.volume_id == volume_id).values(**values))


def delete_volume(conn: sa.Connection, volume_id: str) -> None:
    conn.execute(volumes.delete().where(volumes.c.volume_id == volume_id))


def get_volume(conn: sa.Connection, region: str, volume_id: str) -> VolumeRow | None:
    query = volumes.select().where(volumes.c.region == region, volumes.c.volume_id == volume_id)
    found = conn.execute(query).first()
    return _volume(found) if found is not None else None


def list_volumes(
    conn: sa.Connection, region: str, account_id: str, *, ids: Sequence[str] = ()
) -> list[VolumeRow]:
    query = volumes.select().where(volumes.c.region == region, volumes.c.account_id == account_id)
    if ids:
        query = query.where(volumes.c.volume_id.in_(list(ids)))
    return [_volume(r) for r in conn.execute(query.order_by(volumes.c.volume_id))]


def volumes_of(conn: sa.Connection, instance_ids: Sequence[str]) -> dict[str, list[VolumeRow]]:
    """Attached volumes by instance id, each list in attach order (root first)."""
    out: dict[str, list[VolumeRow]] = {i: [] for i in instance_ids}
    if not instance_ids:
        return out
    query = volumes.select().where(volumes.c.instance_id.in_(list(instance_ids)))
    for r in conn.execute(query.order_by(volumes.c.attach_time, volumes.c.device)):
        row = _volume(r)
        out.setdefault(str(row.instance_id), []).append(row)
    return out
