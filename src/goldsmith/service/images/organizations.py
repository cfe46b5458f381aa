"""Organizations and OUs (admin-managed), and the principals an account matches grants with.

An account in organization ``o-…`` placed in OU ``ou-…`` (nested under others) matches
launch permissions naming its account id, the organization's ARN, and the ARN of its OU or
any OU above it — as EC2 evaluates ``OrganizationArn`` and ``OrganizationalUnitArn`` grants.

ARNs have EC2's shapes::

    arn:aws:organizations::<management account>:organization/o-<10 chars>
    arn:aws:organizations::<management account>:ou/o-<10 chars>/ou-<4 chars>-<8 chars>
"""

from __future__ import annotations

import secrets
import string
from dataclasses import dataclass
from datetime import UTC, datetime

import sqlalchemy as sa

from goldsmith.catalog import accounts as account_rows
from goldsmith.catalog import organizations as rows
from goldsmith.catalog.db import Catalog

_ALPHABET = string.ascii_lowercase + string.digits


class OrganizationError(ValueError):
    """An organization operation was refused (message says why)."""


@dataclass(frozen=True)
class Principals:
    """Who a caller is for launch permissions: ``(kind, value)`` pairs it matches."""

    account_id: str
    grants: frozenset[tuple[str, str]]


def _random(n: int) -> str:
    return "".join(secrets.choice(_ALPHABET) for _ in range(n))


def principals_of(conn: sa.Connection, account_id: str) -> Principals:
    """The account's grants: itself, its organization, its OU and every OU above it."""
    grants: set[tuple[str, str]] = {("user", account_id)}
    member = rows.get_member(conn, account_id)
    if member is not None:
        org = rows.get_organization(conn, member.org_id)
        if org is not None:
            grants.add(("org", org.arn))
        ou_id = member.ou_id
        seen: set[str] = set()
        while ou_id is not None and ou_id not in seen:
            seen.add(ou_id)
            ou = rows.get_ou(conn, ou_id)
            if ou is None:
                break
            grants.add(("ou", ou.arn))
            ou_id = ou.parent_id
    return Principals(account_id, frozenset(grants))


class OrganizationService:
    """Admin operations: create organizations and OUs, place accounts in them."""

    def __init__(self, catalog: Catalog) -> None:
        self._catalog = catalog

    def create_organization(self, management_account_id: str) -> rows.OrganizationRow:
        """A new organization managed by (and containing) ``management_account_id``."""
        with self._catalog.begin() as conn:
            self._account(conn, management_account_id)
            if rows.get_member(conn, management_account_id) is not None:
                raise OrganizationError(f"account {management_account_id} is already a member")
            org_id = f"o-{_random(10)}"
            row = rows.OrganizationRow(
                org_id=org_id,
                arn=f"arn:aws:organizations::{management_account_id}:organization/{org_id}",
                management_account_id=management_account_id,
                created_at=datetime.now(UTC),
            )
            rows.insert_organization(conn, row)
            rows.set_member(conn, rows.MemberRow(management_account_id, org_id, None))
        return row

    def create_ou(self, org_id: str, name: str, parent_id: str | None = None) -> rows.OuRow:
        """A new OU under the organization's root, or under ``parent_id``."""
        if not 1 <= len(name) <= 128:
            raise OrganizationError("OU name must be 1-128 characters")
        with self._catalog.begin() as conn:
            org = self._org(conn, org_id)
            if parent_id is not None:
                parent = rows.get_ou(conn, parent_id)
                if parent is None or parent.org_id != org_id:
                    raise OrganizationError(f"no OU {parent_id} in {org_id}")
            ou_id = f"ou-{_random(4)}-{_random(8)}"
            row = rows.OuRow(
                ou_id=ou_id,
                org_id=org_id,
                parent_id=parent_id,
                name=name,
                arn=f"arn:aws:organizations::{org.management_account_id}:ou/{org_id}/{ou_id}",
            )
            rows.insert_ou(conn, row)
        return row

    def place(self, account_id: str, org_id: str, ou_id: str | None = None) -> None:
        """Put an account in an organization (at its root, or in ``ou_id``)."""
        with self._catalog.begin() as conn:
            self._account(conn, account_id)
            self._org(conn, org_id)
            if ou_id is not None:
                ou = rows.get_ou(conn, ou_id)
                if ou is None or ou.org_id != org_id:
                    raise OrganizationError(f"no OU {ou_id} in {org_id}")
            rows.set_member(conn, rows.MemberRow(account_id, org_id, ou_id))

    def remove(self, account_id: str) -> None:
        with self._catalog.begin() as conn:
            if not rows.remove_member(conn, account_id):
                raise OrganizationError(f"account {account_id} is in no organization")

    def list_organizations(self) -> list[rows.OrganizationRow]:
        with self._catalog.begin() as conn:
            return rows.list_organizations(conn)

    def describe(
        self, org_id: str
    ) -> tuple[rows.OrganizationRow, list[rows.OuRow], list[rows.MemberRow]]:
        with self._catalog.begin() as conn:
            org = self._org(conn, org_id)
            return org, rows.list_ous(conn, org_id), rows.list_members(conn, org_id)

    def principals(self, account_id: str) -> Principals:
        with self._catalog.begin() as conn:
            return principals_of(conn, account_id)

    @staticmethod
    def _account(conn: sa.Connection, account_id: str) -> None:
        if account_rows.get_account(conn, account_id) is None:
            raise OrganizationError(f"no account {account_id}")

    @staticmethod
    def _org(conn: sa.Connection, org_id: str) -> rows.OrganizationRow:
        org = rows.get_organization(conn, org_id)
        if org is None:
            raise OrganizationError(f"no organization {org_id}")
        return org
