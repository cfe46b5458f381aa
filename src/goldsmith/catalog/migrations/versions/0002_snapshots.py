"""Snapshots, createVolumePermission grants, blocks of pending EBS direct API uploads.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from goldsmith.catalog.schema import UtcDateTime

revision = "0002"
down_revision = "0001"


def upgrade() -> None:
    op.create_table(
        "snapshots",
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
        sa.UniqueConstraint("region", "owner_id", "client_token", name="uq_snapshots_client_token"),
    )
    op.create_index("ix_snapshots_owner", "snapshots", ["region", "owner_id", "snapshot_id"])
    op.create_index("ix_snapshots_state", "snapshots", ["state"])
    op.create_table(
        "snapshot_permissions",
        sa.Column("snapshot_id", sa.String(32), primary_key=True),
        sa.Column("kind", sa.String(8), primary_key=True),
        sa.Column("value", sa.String(64), primary_key=True),
        sa.Column("region", sa.String(32), nullable=False),
    )
    op.create_index(
        "ix_snapshot_permissions_grantee", "snapshot_permissions", ["region", "kind", "value"]
    )
    op.create_table(
        "snapshot_blocks",
        sa.Column("snapshot_id", sa.String(32), primary_key=True),
        sa.Column("block_index", sa.Integer(), primary_key=True),
        sa.Column("digest", sa.LargeBinary(32)),
        sa.Column("checksum", sa.LargeBinary(32), nullable=False),
    )
