"""Accounts and access keys: creation, listing, deactivation, and lookup for SigV4.

Every API request is signed with an access key; the key's account is the caller every
permission check uses. Roles: ``admin`` (the account created on first start), ``platform``
(owns the public base images; alias ``amazon`` by default, the ``platform_alias`` setting)
and ``user``.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import string
from dataclasses import dataclass
from datetime import UTC, datetime

import sqlalchemy as sa

from goldsmith.catalog import accounts as rows
from goldsmith.catalog.db import Catalog
from goldsmith.catalog.schema import settings as settings_table

ACCOUNT_ID_RE = re.compile(r"^\d{12}$")
ALIAS_RE = re.compile(r"^[a-z0-9]([a-z0-9-]{1,61}[a-z0-9])?$")
KEY_ID_RE = re.compile(r"^[A-Z0-9]{16,128}$")
PLATFORM_ALIAS = "amazon"


class AccountError(ValueError):
    """An account or key operation was refused (message says why)."""


@dataclass(frozen=True)
class Credentials:
    account_id: str
    access_key_id: str
    secret_access_key: str


def _now() -> datetime:
    return datetime.now(UTC)


def _new_key_id() -> str:
    alphabet = string.ascii_uppercase + string.digits
    return "AKIA" + "".join(secrets.choice(alphabet) for _ in range(16))


def _new_secret() -> str:
    return secrets.token_urlsafe(30)[:40]


class AccountService:
    """Admin operations on accounts and keys, and key lookup for authentication."""

    def __init__(self, catalog: Catalog, platform_alias: str = PLATFORM_ALIAS) -> None:
        self._catalog = catalog
        self._platform_alias = platform_alias

    def create_account(
        self,
        *,
        account_id: str | None = None,
        alias: str | None = None,
        role: str = "user",
        access_key_id: str | None = None,
        secret_access_key: str | None = None,
    ) -> Credentials:
        """Create an account with one access key (generated, or the given id + secret)."""
        if account_id is not None and not ACCOUNT_ID_RE.match(account_id):
            raise AccountError(f"account id must be 12 digits, got {account_id!r}")
        if alias is not None and not ALIAS_RE.match(alias):
            raise AccountError(
                f"alias must be 3-63 lowercase letters, digits or hyphens, got {alias!r}"
            )
        with self._catalog.begin() as conn:
            if account_id is None:
                account_id = self._free_account_id(conn)
            elif rows.get_account(conn, account_id):
                raise AccountError(f"account {account_id} already exists")
            if alias is not None and rows.find_account_by_alias(conn, alias):
                raise AccountError(f"alias {alias!r} is already taken")
            rows.insert_account(conn, rows.AccountRow(account_id, alias, role, _now()))
            key = self._insert_key(conn, account_id, access_key_id, secret_access_key)
        return key

    def _free_account_id(self, conn: sa.Connection) -> str:
        while True:
            candidate = f"{secrets.randbelow(10**12):012d}"
            if rows.get_account(conn, candidate) is None:
                return candidate

    def _insert_key(
        self, conn: sa.Connection, account_id: str, key_id: str | None, secret: str | None
    ) -> Credentials:
        if (key_id is None) != (secret is None):
            raise AccountError("give both --access-key-id and --secret-access-key, or neither")
        if key_id is not None and not KEY_ID_RE.match(key_id):
            raise AccountError("access key id must be 16-128 uppercase letters or digits")
        if secret is not None and not 16 <= len(secret) <= 128:
            raise AccountError("secret access key must be 16-128 characters")
        key_id = key_id or _new_key_id()
        if rows.get_key(conn, key_id):
            raise AccountError(f"access key {key_id} already exists")
        secret = secret or _new_secret()
        row = rows.AccessKeyRow(key_id, account_id, secret, "Active", _now())
        rows.insert_key(conn, row)
        return Credentials(account_id, key_id, secret)

    def create_key(
        self, account_id: str, access_key_id: str | None = None, secret: str | None = None
    ) -> Credentials:
        """Add an access key to an existing account."""
        with self._catalog.begin() as conn:
            if rows.get_account(conn, account_id) is None:
                raise AccountError(f"no account {account_id}")
            return self._insert_key(conn, account_id, access_key_id, secret)

    def set_key_active(self, access_key_id: str, active: bool) -> None:
        with self._catalog.begin() as conn:
            status = "Active" if active else "Inactive"
            if not rows.set_key_status(conn, access_key_id, status):
                raise AccountError(f"no access key {access_key_id}")

    def delete_key(self, access_key_id: str) -> None:
        with self._catalog.begin() as conn:
            if not rows.delete_key(conn, access_key_id):
                raise AccountError(f"no access key {access_key_id}")

    def list_accounts(self) -> list[rows.AccountRow]:
        with self._catalog.begin() as conn:
            return rows.list_accounts(conn)

    def list_keys(self, account_id: str | None = None) -> list[rows.AccessKeyRow]:
        with self._catalog.begin() as conn:
            return rows.list_keys(conn, account_id)

    def lookup(self, access_key_id: str) -> tuple[str, str] | None:
        """(secret, account id) of an active key, else None. Used by SigV4 verification."""
        with self._catalog.begin() as conn:
            key = rows.get_key(conn, access_key_id)
        if key is None or key.status != "Active":
            return None
        return key.secret_access_key, key.account_id

    def alias_of(self, account_id: str) -> str | None:
        with self._catalog.begin() as conn:
            account = rows.get_account(conn, account_id)
        return account.alias if account else None

    def bootstrap(self) -> Credentials | None:
        """First start: create the platform and admin accounts.

        Returns the admin's new credentials when this call created them, else None (they
        are shown once; the caller stores them).
        """
        with self._catalog.begin() as conn:
            has_platform = bool(rows.accounts_with_role(conn, "platform"))
            has_admin = bool(rows.accounts_with_role(conn, "admin"))
        if not has_platform:
            self.create_account(alias=self._platform_alias, role="platform")
        if has_admin:
            return None
        return self.create_account(role="admin")


# Console passwords -------------------------------------------------------------------------
#
# An account may also sign in to the web console with a password the admin sets. Only a
# scrypt hash is kept, in the server-wide ``settings`` table under
# ``console-password/<account id>`` (no schema change): ``scrypt$n$r$p$salt-hex$hash-hex``.

_SCRYPT_N, _SCRYPT_R, _SCRYPT_P = 2**14, 8, 1
MIN_PASSWORD = 8


def _password_key(account_id: str) -> str:
    return f"console-password/{account_id}"


def _scrypt(password: str, salt: bytes, n: int, r: int, p: int) -> bytes:
    return hashlib.scrypt(password.encode(), salt=salt, n=n, r=r, p=p, dklen=32)


def hash_password(password: str) -> str:
    """A self-describing scrypt hash of ``password`` (fresh random salt)."""
    salt = secrets.token_bytes(16)
    digest = _scrypt(password, salt, _SCRYPT_N, _SCRYPT_R, _SCRYPT_P)
    return f"scrypt${_SCRYPT_N}${_SCRYPT_R}${_SCRYPT_P}${salt.hex()}${digest.hex()}"


def password_matches(password: str, stored: str | None) -> bool:
    """True when ``password`` hashes to ``stored``; compares in constant time.

    With no stored hash a dummy hash is still computed, so the answer takes as long whether
    or not the account has a password.
    """
    fields = (stored or hash_password("")).split("$")
    try:
        n, r, p = (int(v) for v in fields[1:4])
        salt, expected = bytes.fromhex(fields[4]), bytes.fromhex(fields[5])
    except (IndexError, ValueError):
        return False
    return hmac.compare_digest(_scrypt(password, salt, n, r, p), expected) and stored is not None


class ConsolePasswords:
    """Set, clear and read console-password hashes (the console verifies them)."""

    def __init__(self, catalog: Catalog) -> None:
        self._catalog = catalog

    def set(self, account_id: str, password: str) -> None:
        """Store a hash of ``password`` for ``account_id`` (replacing any earlier one)."""
        if len(password) < MIN_PASSWORD:
            raise AccountError(f"a console password needs at least {MIN_PASSWORD} characters")
        value = hash_password(password)
        with self._catalog.begin() as conn:
            if rows.get_account(conn, account_id) is None:
                raise AccountError(f"no account {account_id}")
            key = _password_key(account_id)
            conn.execute(settings_table.delete().where(settings_table.c.name == key))
            conn.execute(settings_table.insert().values(name=key, value=value))

    def clear(self, account_id: str) -> bool:
        """Remove the account's console password; False when it had none."""
        with self._catalog.begin() as conn:
            deleted = conn.execute(
                settings_table.delete().where(settings_table.c.name == _password_key(account_id))
            )
        return bool(deleted.rowcount)

    def stored_hash(self, account_id: str) -> str | None:
        """The stored hash, or None (no password, or no such account)."""
        with self._catalog.begin() as conn:
            query = sa.select(settings_table.c.value).where(
                settings_table.c.name == _password_key(account_id)
            )
            value = conn.execute(query).scalar_one_or_none()
        return str(value) if value is not None else None

    def account_for(self, name: str) -> str | None:
        """The account id that ``name`` (a 12-digit id or an alias) names, or None."""
        with self._catalog.begin() as conn:
            if ACCOUNT_ID_RE.match(name):
                return name if rows.get_account(conn, name) else None
            found = rows.find_account_by_alias(conn, name) if ALIAS_RE.match(name) else None
        return found.account_id if found else None
