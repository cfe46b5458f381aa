"""Accounts and their access keys.

Contract: account ids are 12 decimal digits and unique; aliases are unique when set; an
access key belongs to exactly one account and is ``Active`` or ``Inactive``. Deleting an
account deletes its keys (foreign key cascade). The service layer validates input; this
module only stores and fetches rows.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa

from goldsmith.catalog.schema import access_keys, accounts


@dataclass(frozen=True)
class AccountRow:
    account_id: str
    alias: str | None
    role: str
    created_at: datetime


@dataclass(frozen=True)
class AccessKeyRow:
    access_key_id: str
    account_id: str
    secret_access_key: str
    status: str
    created_at: datetime


def insert_account(conn: sa.Connection, row: AccountRow) -> None:
    conn.execute(accounts.insert().values(**row.__dict__))


def get_account(conn: sa.Connection, account_id: str) -> AccountRow | None:
    found = conn.execute(accounts.select().where(accounts.c.account_id == account_id)).first()
    return AccountRow(**found._mapping) if found else None


def find_account_by_alias(conn: sa.Connection, alias: str) -> AccountRow | None:
    found = conn.execute(accounts.select().where(accounts.c.alias == alias)).first()
    return AccountRow(**found._mapping) if found else None


def list_accounts(conn: sa.Connection) -> list[AccountRow]:
    rows = conn.execute(accounts.select().order_by(accounts.c.account_id))
    return [AccountRow(**r._mapping) for r in rows]


def accounts_with_role(conn: sa.Connection, role: str) -> list[AccountRow]:
    rows = conn.execute(accounts.select().where(accounts.c.role == role))
    return [AccountRow(**r._mapping) for r in rows]


def insert_key(conn: sa.Connection, row: AccessKeyRow) -> None:
    conn.execute(access_keys.insert().values(**row.__dict__))


def get_key(conn: sa.Connection, access_key_id: str) -> AccessKeyRow | None:
    query = access_keys.select().where(access_keys.c.access_key_id == access_key_id)
    found = conn.execute(query).first()
    return AccessKeyRow(**found._mapping) if found else None


def list_keys(conn: sa.Connection, account_id: str | None = None) -> list[AccessKeyRow]:
    query = access_keys.select().order_by(access_keys.c.account_id, access_keys.c.created_at)
    if account_id is not None:
        query = query.where(access_keys.c.account_id == account_id)
    return [AccessKeyRow(**r._mapping) for r in conn.execute(query)]


def set_key_status(conn: sa.Connection, access_key_id: str, status: str) -> bool:
    """Set a key's status; False when the key does not exist."""
    result = conn.execute(
        access_keys.update()
        .where(access_keys.c.access_key_id == access_key_id)
        .values(status=status)
    )
    return result.rowcount > 0


def delete_key(conn: sa.Connection, access_key_id: str) -> bool:
    """Delete a key; False when it does not exist."""
    result = conn.execute(access_keys.delete().where(access_keys.c.access_key_id == access_key_id))
    return result.rowcount > 0
