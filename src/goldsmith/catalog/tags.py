"""Tags: (region, resource id, key) → value, with the resource's type and owner."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from goldsmith.catalog.schema import tags


@dataclass(frozen=True)
class TagRow:
    region: str
    resource_id: str
    key: str
    value: str
    resource_type: str
    owner_id: str


def tags_of(
    conn: sa.Connection, region: str, resource_ids: Iterable[str]
) -> dict[str, dict[str, str]]:
    """Tags per resource id (ids without tags are absent from the result)."""
    ids = list(resource_ids)
    out: dict[str, dict[str, str]] = {}
    # Chunk the IN list: SQLite caps bound parameters per statement.
    for start in range(0, len(ids), 500):
        query = sa.select(tags.c.resource_id, tags.c.key, tags.c.value).where(
            tags.c.region == region, tags.c.resource_id.in_(ids[start : start + 500])
        )
        for resource_id, key, value in conn.execute(query).all():
            out.setdefault(resource_id, {})[key] = value
    return out


def set_tags(
    conn: sa.Connection,
    region: str,
    resource_id: str,
    resource_type: str,
    owner_id: str,
    values: Mapping[str, str],
) -> None:
    """Create or overwrite tags on one resource."""
    if not values:
        return
    conn.execute(
        tags.delete().where(
            tags.c.region == region,
            tags.c.resource_id == resource_id,
            tags.c.key.in_(list(values)),
        )
    )
    conn.execute(
        tags.insert(),
        [
            {
                "region": region,
                "resource_id": resource_id,
                "key": key,
                "value": value,
                "resource_type": resource_type,
                "owner_id": owner_id,
            }
            for key, value in values.items()
        ],
    )


def delete_tags(
    conn: sa.Connection,
    region: str,
    resource_id: str,
    keys: Sequence[tuple[str, str | None]] | None,
) -> None:
    """Delete tags: all of them (``keys`` None), or by key, or by key and exact value."""
    base = sa.and_(tags.c.region == region, tags.c.resource_id == resource_id)
    if keys is None:
        conn.execute(tags.delete().where(base))
        return
    for key, value in keys:
        cond = sa.and_(base, tags.c.key == key)
        if value is not None:
            cond = sa.and_(cond, tags.c.value == value)
        conn.execute(tags.delete().where(cond))


def count_tags(conn: sa.Connection, region: str, resource_id: str) -> int:
    query = sa.select(sa.func.count()).where(
        tags.c.region == region, tags.c.resource_id == resource_id
    )
    return int(conn.execute(query).scalar_one())


def list_tags(
    conn: sa.Connection,
    region: str,
    owner_id: str,
    after: tuple[str, ...] | None = None,
    conditions: Sequence[Any] = (),
) -> Iterable[TagRow]:
    """The owner's tags in ``region`` ordered by (resource id, key), starting after ``after``.

    ``conditions`` (SQL expressions on the ``tags`` table) narrow the rows further.
    """
    query = tags.select().where(tags.c.region == region, tags.c.owner_id == owner_id, *conditions)
    if after is not None:
        query = query.where(sa.tuple_(tags.c.resource_id, tags.c.key) > sa.tuple_(*after))
    query = query.order_by(tags.c.resource_id, tags.c.key)
    for row in conn.execute(query):
        yield TagRow(**row._mapping)
