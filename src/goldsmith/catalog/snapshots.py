"""Snapshots: rows, createVolumePermission grants, and the blocks of pending uploads.

Contract:

* one ``snapshots`` row per snapshot, in its region, with its owner (``owner_id``). The
  row exists before any byte reaches the store (state ``pending``), so every store manifest
  has a row from before it was written; the row leaves the table when the snapshot is
  deleted (the store manifest goes after the transaction commits; chunks at GC);
* ``snapshot_permissions`` holds createVolumePermission grants as ``(kind, value)``:
  ``user`` (account id) or ``group`` (``all``);
* ``snapshot_blocks`` holds, for a ``pending`` EBS direct API upload, the digest of every
  block written so far (``None`` for a block written as zeros). With the chunks already in
  the store, it is enough to rebuild the writer after a restart; it is emptied on completion.

This module stores and fetches; the service layer validates and decides who may see what.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from goldsmith.catalog.schema import UtcDateTime, metadata

snapshots = sa.Table(
    "snapshots",
    metadata,
    sa.Column("snapshot_id", sa.String(32), primary_key=True),
    sa.Column("region", sa.String(32), nullable=False),
    sa.Column("owner_id", sa.String(12), nullable=False),
    sa.Column("volume_id", sa.String(32), nullable=False),
    sa.Column("volume_size", sa.Integer(), nullable=False),
    sa.Column("size_bytes", sa.BigInteger(), nullable=False),
    sa.Column("block_size", sa.Integer(), nullable=False),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("state_message", sa.String(255)),
    sa.Column("progress", sa.Integer(), nullable=False),
    sa.Column("start_time", UtcDateTime(), nullable=False),
    sa.Column("completion_time", UtcDateTime()),
    sa.Column("description", sa.String(255), nullable=False),
    sa.Column("parent_id", sa.String(32)),
    sa.Column("data_bytes", sa.BigInteger()),
    sa.Column("stored_bytes", sa.BigInteger()),
    sa.Column("encrypted", sa.Boolean(), nullable=False),
    sa.Column("client_token", sa.String(255)),
    sa.Column("request_hash", sa.String(64)),
    sa.Column("timeout_minutes", sa.Integer()),
    sa.Column("timeout_at", UtcDateTime()),
    sa.Column("source_snapshot_id", sa.String(32)),
    sa.Column("source_region", sa.String(32)),
    sa.Column("recycle_bin_enter", UtcDateTime()),
    sa.Column("recycle_bin_exit", UtcDateTime()),
    sa.Index("ix_snapshots_owner", "region", "owner_id", "snapshot_id"),
    sa.Index("ix_snapshots_state", "state"),
    sa.UniqueConstraint("region", "owner_id", "client_token", name="uq_snapshots_client_token"),
)

snapshot_permissions = sa.Table(
    "snapshot_permissions",
    metadata,
    sa.Column("snapshot_id", sa.String(32), primary_key=True),
    sa.Column("kind", sa.String(8), primary_key=True),
    sa.Column("value", sa.String(64), primary_key=True),
    sa.Column("region", sa.String(32), nullable=False),
    sa.Index("ix_snapshot_permissions_grantee", "region", "kind", "value"),
)

snapshot_blocks = sa.Table(
    "snapshot_blocks",
    metadata,
    sa.Column("snapshot_id", sa.String(32), primary_key=True),
    sa.Column("block_index", sa.Integer(), primary_key=True),
    sa.Column("digest", sa.LargeBinary(32)),
    sa.Column("checksum", sa.LargeBinary(32), nullable=False),
)

#: The group value EC2 uses for "every account".
ALL = "all"


@dataclass(frozen=True)
class SnapshotRow:
    """One snapshot as stored. Sizes: ``volume_size`` GiB, the others bytes."""

    snapshot_id: str
    region: str
    owner_id: str
    volume_id: str
    volume_size: int
    size_bytes: int
    block_size: int
    state: str
    state_message: str | None
    progress: int
    start_time: datetime
    completion_time: datetime | None
    description: str
    parent_id: str | None
    data_bytes: int | None
    stored_bytes: int | None
    encrypted: bool
    client_token: str | None
    request_hash: str | None
    timeout_minutes: int | None
    timeout_at: datetime | None
    source_snapshot_id: str | None
    source_region: str | None
    recycle_bin_enter: datetime | None
    recycle_bin_exit: datetime | None


class DuplicateClientToken(Exception):
    """The owner already has a snapshot with this client token in the region."""


def _row(r: Any) -> SnapshotRow:
    return SnapshotRow(**r._mapping)


def insert_snapshot(conn: sa.Connection, row: SnapshotRow) -> None:
    """Insert ``row``; raises :class:`DuplicateClientToken` when the token is taken."""
    try:
        with conn.begin_nested():
            conn.execute(snapshots.insert().values(**row.__dict__))
    except sa.exc.IntegrityError as exc:
        raise DuplicateClientToken(row.client_token) from exc


def get_snapshot(conn: sa.Connection, region: str, snapshot_id: str) -> SnapshotRow | None:
    query = snapshots.select().where(
        snapshots.c.region == region, snapshots.c.snapshot_id == snapshot_id
    )
    found = conn.execute(query).first()
    return _row(found) if found is not None else None


def by_client_token(
    conn: sa.Connection, region: str, owner_id: str, client_token: str
) -> SnapshotRow | None:
    query = snapshots.select().where(
        snapshots.c.region == region,
        snapshots.c.owner_id == owner_id,
        snapshots.c.client_token == client_token,
    )
    found = conn.execute(query).first()
    return _row(found) if found is not None else None


def visible_condition(region: str, account_id: str) -> Any:
    """Rows ``account_id`` may list: its own, or granted to it or to every account."""
    granted = (
        sa.select(snapshot_permissions.c.snapshot_id)
        .where(
            snapshot_permissions.c.region == region,
            sa.or_(
                sa.and_(
                    snapshot_permissions.c.kind == "user",
                    snapshot_permissions.c.value == account_id,
                ),
                sa.and_(
                    snapshot_permissions.c.kind == "group", snapshot_permissions.c.value == ALL
                ),
            ),
        )
        .scalar_subquery()
    )
    return sa.or_(snapshots.c.owner_id == account_id, snapshots.c.snapshot_id.in_(granted))


def list_snapshots(
    conn: sa.Connection,
    region: str,
    *,
    conditions: Sequence[Any] = (),
    after: str | None = None,
) -> Iterator[SnapshotRow]:
    """Rows of ``region`` matching every condition, ordered by id, starting after ``after``."""
    query = snapshots.select().where(snapshots.c.region == region, *conditions)
    if after is not None:
        query = query.where(snapshots.c.snapshot_id > after)
    for r in conn.execute(query.order_by(snapshots.c.snapshot_id)):
        yield _row(r)


def list_by_state(conn: sa.Connection, state: str) -> list[SnapshotRow]:
    """Every row in ``state``, all regions (start-up recovery of pending uploads)."""
    query = snapshots.select().where(snapshots.c.state == state)
    return [_row(r) for r in conn.execute(query.order_by(snapshots.c.snapshot_id))]


def update_snapshot(conn: sa.Connection, snapshot_id: str, **values: Any) -> None:
    conn.execute(snapshots.update().where(snapshots.c.snapshot_id == snapshot_id).values(**values))


def delete_snapshot(conn: sa.Connection, snapshot_id: str) -> None:
    """Delete the row, its grants and its pending blocks."""
    for table in (snapshot_blocks, snapshot_permissions, snapshots):
        conn.execute(table.delete().where(table.c.snapshot_id == snapshot_id))


# -- createVolumePermission ------------------------------------------------------------------


def permissions_of(conn: sa.Connection, snapshot_id: str) -> list[tuple[str, str]]:
    """Grants as ``(kind, value)``, sorted."""
    query = sa.select(snapshot_permissions.c.kind, snapshot_permissions.c.value).where(
        snapshot_permissions.c.snapshot_id == snapshot_id
    )
    return sorted((r.kind, r.value) for r in conn.execute(query))


def add_permissions(
    conn: sa.Connection, region: str, snapshot_id: str, grants: Iterable[tuple[str, str]]
) -> None:
    """Add grants (already present ones are kept once)."""
    have = set(permissions_of(conn, snapshot_id))
    new = [g for g in dict.fromkeys(grants) if g not in have]
    if new:
        conn.execute(
            snapshot_permissions.insert(),
            [{"snapshot_id": snapshot_id, "kind": k, "value": v, "region": region} for k, v in new],
        )


def remove_permissions(
    conn: sa.Connection, snapshot_id: str, grants: Iterable[tuple[str, str]] | None
) -> None:
    """Remove the given grants, or every grant when ``grants`` is None."""
    base = snapshot_permissions.c.snapshot_id == snapshot_id
    if grants is None:
        conn.execute(snapshot_permissions.delete().where(base))
        return
    for kind, value in grants:
        conn.execute(
            snapshot_permissions.delete().where(
                base, snapshot_permissions.c.kind == kind, snapshot_permissions.c.value == value
            )
        )


# -- blocks of pending uploads ----------------------------------------------------------------


def put_block(
    conn: sa.Connection, snapshot_id: str, index: int, digest: bytes | None, checksum: bytes
) -> None:
    """Record that block ``index`` was written (``digest`` None: all zeros; ``checksum``:
    the SHA-256 of its bytes, for CompleteSnapshot's aggregate checksum)."""
    conn.execute(
        snapshot_blocks.delete().where(
            snapshot_blocks.c.snapshot_id == snapshot_id, snapshot_blocks.c.block_index == index
        )
    )
    conn.execute(
        snapshot_blocks.insert().values(
            snapshot_id=snapshot_id, block_index=index, digest=digest, checksum=checksum
        )
    )


def blocks_of(conn: sa.Connection, snapshot_id: str) -> dict[int, tuple[bytes | None, bytes]]:
    """Every block written to a pending upload so far: index → (digest or None, checksum)."""
    query = sa.select(
        snapshot_blocks.c.block_index, snapshot_blocks.c.digest, snapshot_blocks.c.checksum
    ).where(snapshot_blocks.c.snapshot_id == snapshot_id)
    return {r.block_index: (r.digest, r.checksum) for r in conn.execute(query)}


def forget_blocks(conn: sa.Connection, snapshot_id: str, indexes: Iterable[int] | None) -> None:
    """Drop the given block records (all when ``indexes`` is None)."""
    base = snapshot_blocks.c.snapshot_id == snapshot_id
    if indexes is None:
        conn.execute(snapshot_blocks.delete().where(base))
        return
    items = list(indexes)
    for start in range(0, len(items), 500):
        conn.execute(
            snapshot_blocks.delete().where(
                base, snapshot_blocks.c.block_index.in_(items[start : start + 500])
            )
        )
