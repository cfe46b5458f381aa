"""Recycle bin retention rules (the ``rbin`` API), per account and region.

Contract: a rule retains deleted resources of one ``resource_type`` (``EC2_IMAGE`` or
``EBS_SNAPSHOT``) for ``retention_days``; ``resource_tags`` (JSON list of ``[key, value]``,
value None = any) narrows it to tagged resources (a tag-level rule), empty means every
resource of the type (a Region-level rule); ``exclude_tags`` (same form) exempts resources
from a Region-level rule. ``tags`` are the rule's own tags.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from goldsmith.catalog.schema import UtcDateTime, metadata

rbin_rules = sa.Table(
    "rbin_rules",
    metadata,
    sa.Column("rule_id", sa.String(16), primary_key=True),
    sa.Column("region", sa.String(32), nullable=False),
    sa.Column("account_id", sa.String(12), nullable=False),
    sa.Column("resource_type", sa.String(16), nullable=False),
    sa.Column("description", sa.String(255)),
    sa.Column("retention_days", sa.Integer(), nullable=False),
    sa.Column("resource_tags", sa.Text(), nullable=False),
    sa.Column("exclude_tags", sa.Text(), nullable=False),
    sa.Column("tags", sa.Text(), nullable=False),
    sa.Column("created_at", UtcDateTime(), nullable=False),
    sa.Index("ix_rbin_rules_owner", "region", "account_id", "resource_type"),
)

TagPairs = tuple[tuple[str, str | None], ...]


@dataclass(frozen=True)
class RuleRow:
    rule_id: str
    region: str
    account_id: str
    resource_type: str
    description: str | None
    retention_days: int
    resource_tags: TagPairs
    exclude_tags: TagPairs
    tags: tuple[tuple[str, str], ...]
    created_at: datetime


def _pairs(text: str) -> Any:
    return tuple(tuple(p) for p in json.loads(text))


def _row(mapping: Any) -> RuleRow:
    values = dict(mapping)
    for name in ("resource_tags", "exclude_tags", "tags"):
        values[name] = _pairs(values[name])
    return RuleRow(**values)


def _db(row: RuleRow) -> dict[str, Any]:
    values = dict(row.__dict__)
    for name in ("resource_tags", "exclude_tags", "tags"):
        values[name] = json.dumps([list(p) for p in values[name]])
    return values


def insert_rule(conn: sa.Connection, row: RuleRow) -> None:
    conn.execute(rbin_rules.insert().values(**_db(row)))


def replace_rule(conn: sa.Connection, row: RuleRow) -> None:
    conn.execute(rbin_rules.update().where(rbin_rules.c.rule_id == row.rule_id).values(**_db(row)))


def delete_rule(conn: sa.Connection, rule_id: str) -> None:
    conn.execute(rbin_rules.delete().where(rbin_rules.c.rule_id == rule_id))


def get_rule(conn: sa.Connection, region: str, account_id: str, rule_id: str) -> RuleRow | None:
    query = rbin_rules.select().where(
        rbin_rules.c.rule_id == rule_id,
        rbin_rules.c.region == region,
        rbin_rules.c.account_id == account_id,
    )
    found = conn.execute(query).first()
    return _row(found._mapping) if found else None


def list_rules(
    conn: sa.Connection, region: str, account_id: str, resource_type: str | None = None
) -> list[RuleRow]:
    query = rbin_rules.select().where(
        rbin_rules.c.region == region, rbin_rules.c.account_id == account_id
    )
    if resource_type is not None:
        query = query.where(rbin_rules.c.resource_type == resource_type)
    return [_row(r._mapping) for r in conn.execute(query.order_by(rbin_rules.c.rule_id))]
