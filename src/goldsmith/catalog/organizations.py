"""Organizations and organizational units (OUs), as far as image sharing needs them.

Contract: an organization has one management account and an ARN; OUs form a tree under
the organization (``parent_id`` None = directly under the root); an account belongs to at
most one organization, and to at most one OU in it (None = the root). The service layer
turns an account's membership into the set of ARNs launch permissions are matched with.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa

from goldsmith.catalog.schema import UtcDateTime, metadata

organizations = sa.Table(
    "organizations",
    metadata,
    sa.Column("org_id", sa.String(40), primary_key=True),
    sa.Column("arn", sa.String(255), nullable=False, unique=True),
    sa.Column("management_account_id", sa.String(12), nullable=False),
    sa.Column("created_at", UtcDateTime(), nullable=False),
)

organizational_units = sa.Table(
    "organizational_units",
    metadata,
    sa.Column("ou_id", sa.String(80), primary_key=True),
    sa.Column("org_id", sa.String(40), nullable=False, index=True),
    sa.Column("parent_id", sa.String(80)),
    sa.Column("name", sa.String(128), nullable=False),
    sa.Column("arn", sa.String(255), nullable=False, unique=True),
)

organization_members = sa.Table(
    "organization_members",
    metadata,
    sa.Column("account_id", sa.String(12), primary_key=True),
    sa.Column("org_id", sa.String(40), nullable=False, index=True),
    sa.Column("ou_id", sa.String(80)),
)


@dataclass(frozen=True)
class OrganizationRow:
    org_id: str
    arn: str
    management_account_id: str
    created_at: datetime


@dataclass(frozen=True)
class OuRow:
    ou_id: str
    org_id: str
    parent_id: str | None
    name: str
    arn: str


@dataclass(frozen=True)
class MemberRow:
    account_id: str
    org_id: str
    ou_id: str | None


def insert_organization(conn: sa.Connection, row: OrganizationRow) -> None:
    conn.execute(organizations.insert().values(**row.__dict__))


def get_organization(conn: sa.Connection, org_id: str) -> OrganizationRow | None:
    found = conn.execute(organizations.select().where(organizations.c.org_id == org_id)).first()
    return OrganizationRow(**found._mapping) if found else None


def list_organizations(conn: sa.Connection) -> list[OrganizationRow]:
    query = organizations.select().order_by(organizations.c.org_id)
    return [OrganizationRow(**r._mapping) for r in conn.execute(query)]


def insert_ou(conn: sa.Connection, row: OuRow) -> None:
    conn.execute(organizational_units.insert().values(**row.__dict__))


def get_ou(conn: sa.Connection, ou_id: str) -> OuRow | None:
    query = organizational_units.select().where(organizational_units.c.ou_id == ou_id)
    found = conn.execute(query).first()
    return OuRow(**found._mapping) if found else None


def list_ous(conn: sa.Connection, org_id: str) -> list[OuRow]:
    query = (
        organizational_units.select()
        .where(organizational_units.c.org_id == org_id)
        .order_by(organizational_units.c.ou_id)
    )
    return [OuRow(**r._mapping) for r in conn.execute(query)]


def set_member(conn: sa.Connection, row: MemberRow) -> None:
    """Place an account (replacing any earlier placement)."""
    remove_member(conn, row.account_id)
    conn.execute(organization_members.insert().values(**row.__dict__))


def remove_member(conn: sa.Connection, account_id: str) -> bool:
    result = conn.execute(
        organization_members.delete().where(organization_members.c.account_id == account_id)
    )
    return result.rowcount > 0


def get_member(conn: sa.Connection, account_id: str) -> MemberRow | None:
    query = organization_members.select().where(organization_members.c.account_id == account_id)
    found = conn.execute(query).first()
    return MemberRow(**found._mapping) if found else None


def list_members(conn: sa.Connection, org_id: str) -> list[MemberRow]:
    query = (
        organization_members.select()
        .where(organization_members.c.org_id == org_id)
        .order_by(organization_members.c.account_id)
    )
    return [MemberRow(**r._mapping) for r in conn.execute(query)]
