"""Initial schema: accounts, access keys, regions, key pairs, tags, settings.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from goldsmith.catalog.schema import UtcDateTime

revision = "0001"
down_revision = None


def upgrade() -> None:
    op.create_table(
        "accounts",
        sa.Column("account_id", sa.String(12), primary_key=True),
        sa.Column("alias", sa.String(63), unique=True),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("created_at", UtcDateTime(), nullable=False),
    )
    op.create_table(
        "access_keys",
        sa.Column("access_key_id", sa.String(128), primary_key=True),
        sa.Column(
            "account_id",
            sa.String(12),
            sa.ForeignKey("accounts.account_id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("secret_access_key", sa.String(128), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("created_at", UtcDateTime(), nullable=False),
    )
    op.create_index("ix_access_keys_account_id", "access_keys", ["account_id"])
    op.create_table(
        "regions",
        sa.Column("name", sa.String(32), primary_key=True),
        sa.Column("created_at", UtcDateTime(), nullable=False),
    )
    op.create_table(
        "key_pairs",
        sa.Column("key_pair_id", sa.String(32), primary_key=True),
        sa.Column("region", sa.String(32), nullable=False),
        sa.Column("account_id", sa.String(12), nullable=False),
        sa.Column("key_name", sa.String(255), nullable=False),
        sa.Column("key_type", sa.String(16), nullable=False),
        sa.Column("fingerprint", sa.String(128), nullable=False),
        sa.Column("public_key", sa.Text(), nullable=False),
        sa.Column("created_at", UtcDateTime(), nullable=False),
        sa.UniqueConstraint("region", "account_id", "key_name", name="uq_key_pairs_name"),
    )
    op.create_table(
        "tags",
        sa.Column("region", sa.String(32), primary_key=True),
        sa.Column("resource_id", sa.String(64), primary_key=True),
        sa.Column("key", sa.String(128), primary_key=True),
        sa.Column("value", sa.String(256), nullable=False),
        sa.Column("resource_type", sa.String(64), nullable=False),
        sa.Column("owner_id", sa.String(12), nullable=False),
    )
    op.create_index("ix_tags_owner", "tags", ["region", "owner_id", "resource_id"])
    op.create_table(
        "settings",
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("value", sa.Text(), nullable=False),
    )
