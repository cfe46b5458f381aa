"""Key pairs: public halves only (the private key is returned once and never stored)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa

from goldsmith.catalog.schema import key_pairs


@dataclass(frozen=True)
class KeyPairRow:
    key_pair_id: str
    region: str
    account_id: str
    key_name: str
    key_type: str
    fingerprint: str
    public_key: str
    created_at: datetime


class DuplicateKeyName(Exception):
    """A key pair with this name already exists for the account in the region."""


def insert_key_pair(conn: sa.Connection, row: KeyPairRow) -> None:
    """Insert ``row``; raises :class:`DuplicateKeyName` when the name is taken."""
    try:
        with conn.begin_nested():
            conn.execute(key_pairs.insert().values(**row.__dict__))
    except sa.exc.IntegrityError as exc:
        raise DuplicateKeyName(row.key_name) from exc


def list_key_pairs(
    conn: sa.Connection,
    region: str,
    account_id: str,
    *,
    names: Sequence[str] = (),
    ids: Sequence[str] = (),
) -> list[KeyPairRow]:
    """The account's key pairs in ``region``, narrowed by names and ids when given."""
    query = key_pairs.select().where(
        key_pairs.c.region == region, key_pairs.c.account_id == account_id
    )
    if names:
        query = query.where(key_pairs.c.key_name.in_(list(names)))
    if ids:
        query = query.where(key_pairs.c.key_pair_id.in_(list(ids)))
    rows = conn.execute(query.order_by(key_pairs.c.key_name))
    return [KeyPairRow(**r._mapping) for r in rows]


def delete_key_pair(conn: sa.Connection, key_pair_id: str) -> None:
    conn.execute(key_pairs.delete().where(key_pairs.c.key_pair_id == key_pair_id))


def list_key_pairs_by_id(conn: sa.Connection, region: str, key_pair_id: str) -> list[KeyPairRow]:
    """The key pair with this id in ``region`` (any owner), as a 0- or 1-item list."""
    query = key_pairs.select().where(
        key_pairs.c.region == region, key_pairs.c.key_pair_id == key_pair_id
    )
    return [KeyPairRow(**r._mapping) for r in conn.execute(query)]
