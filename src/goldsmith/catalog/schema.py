"""The catalog's tables (SQLAlchemy Core). Migrations in ``migrations/versions`` create them.

Every resource row carries its ``region`` (the catalog partition) and its owner's account id.
A test compares this metadata with the migrated database, so the two cannot drift apart.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Dialect


class UtcDateTime(sa.types.TypeDecorator[datetime]):
    """A timezone-aware UTC timestamp on every database (SQLite stores naive values)."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the catalog")
        return value.astimezone(UTC)

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        assert isinstance(value, datetime)
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


metadata = sa.MetaData()

accounts = sa.Table(
    "accounts",
    metadata,
    sa.Column("account_id", sa.String(12), primary_key=True),
    sa.Column("alias", sa.String(63), unique=True),
    sa.Column("role", sa.String(16), nullable=False),
    sa.Column("created_at", UtcDateTime(), nullable=False),
)

access_keys = sa.Table(
    "access_keys",
    metadata,
    sa.Column("access_key_id", sa.String(128), primary_key=True),
    sa.Column(
        "account_id",
        sa.String(12),
        sa.ForeignKey("accounts.account_id", ondelete="CASCADE"),
        nullable=False,
        index=True,
    ),
    sa.Column("secret_access_key", sa.String(128), nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("created_at", UtcDateTime(), nullable=False),
)

regions = sa.Table(
    "regions",
    metadata,
    sa.Column("name", sa.String(32), primary_key=True),
    sa.Column("created_at", UtcDateTime(), nullable=False),
)

key_pairs = sa.Table(
    "key_pairs",
    metadata,
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

tags = sa.Table(
    "tags",
    metadata,
    sa.Column("region", sa.String(32), primary_key=True),
    sa.Column("resource_id", sa.String(64), primary_key=True),
    sa.Column("key", sa.String(128), primary_key=True),
    sa.Column("value", sa.String(256), nullable=False),
    sa.Column("resource_type", sa.String(64), nullable=False),
    sa.Column("owner_id", sa.String(12), nullable=False),
    sa.Index("ix_tags_owner", "region", "owner_id", "resource_id"),
)

settings = sa.Table(
    "settings",
    metadata,
    sa.Column("name", sa.String(64), primary_key=True),
    sa.Column("value", sa.Text(), nullable=False),
)
