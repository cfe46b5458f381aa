"""One conformance suite for every catalog database (SQLite and PostgreSQL)."""

from __future__ import annotations

import importlib
import pkgutil
from datetime import UTC, datetime, timedelta

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

import goldsmith.catalog
from goldsmith.catalog import accounts, keypairs, regions, settings, tags
from goldsmith.catalog.db import Catalog
from goldsmith.catalog.schema import metadata

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


def test_migrated_schema_matches_declared(catalog: Catalog) -> None:
    for module in pkgutil.iter_modules(goldsmith.catalog.__path__, "goldsmith.catalog."):
        importlib.import_module(module.name)
    catalog.migrate()  # idempotent
    assert catalog.current_revision() == catalog.head_revision()
    with catalog.engine.connect() as conn:
        assert compare_metadata(MigrationContext.configure(conn), metadata) == []


def test_timestamps_round_trip_as_aware_utc(catalog: Catalog) -> None:
    local = NOW.astimezone(__import__("datetime").timezone(timedelta(hours=5)))
    with catalog.begin() as conn:
        accounts.insert_account(conn, accounts.AccountRow("111122223333", "a", "user", local))
        got = accounts.get_account(conn, "111122223333")
    assert got is not None and got.created_at == NOW and got.created_at.tzinfo is not None


def test_accounts_keys_and_cascade(catalog: Catalog) -> None:
    with catalog.begin() as conn:
        accounts.insert_account(conn, accounts.AccountRow("111122223333", None, "user", NOW))
        accounts.insert_key(
            conn, accounts.AccessKeyRow("AKIA1", "111122223333", "s" * 40, "Active", NOW)
        )
        assert accounts.set_key_status(conn, "AKIA1", "Inactive")
        assert not accounts.set_key_status(conn, "AKIA-missing", "Inactive")
        key = accounts.get_key(conn, "AKIA1")
        assert key is not None and key.status == "Inactive"
        conn.execute(goldsmith.catalog.schema.accounts.delete())
        assert accounts.get_key(conn, "AKIA1") is None  # foreign key cascade


def test_duplicate_key_pair_name_is_detected_and_transaction_survives(catalog: Catalog) -> None:
    row = keypairs.KeyPairRow("key-1", "us-east-1", "111122223333", "k", "rsa", "fp", "pub", NOW)
    with catalog.begin() as conn:
        keypairs.insert_key_pair(conn, row)
        with pytest.raises(keypairs.DuplicateKeyName):
            keypairs.insert_key_pair(
                conn, row.__class__(**{**row.__dict__, "key_pair_id": "key-2"})
            )
        # Still usable after the savepoint rolled back:
        other = row.__class__(**{**row.__dict__, "key_pair_id": "key-3", "region": "eu-west-1"})
        keypairs.insert_key_pair(conn, other)
    with catalog.begin() as conn:
        assert [
            r.key_pair_id for r in keypairs.list_key_pairs(conn, "us-east-1", "111122223333")
        ] == ["key-1"]


def test_tag_listing_resumes_after_a_key(catalog: Catalog) -> None:
    with catalog.begin() as conn:
        for rid in ("key-a", "key-b"):
            tags.set_tags(conn, "us-east-1", rid, "key-pair", "111122223333", {"x": "1", "y": "2"})
        tags.set_tags(conn, "us-east-1", "key-a", "key-pair", "111122223333", {"x": "3"})
        listed = [
            (t.resource_id, t.key, t.value)
            for t in tags.list_tags(conn, "us-east-1", "111122223333", after=("key-a", "x"))
        ]
        assert listed == [("key-a", "y", "2"), ("key-b", "x", "1"), ("key-b", "y", "2")]
        assert tags.tags_of(conn, "us-east-1", ["key-a"]) == {"key-a": {"x": "3", "y": "2"}}
        tags.delete_tags(conn, "us-east-1", "key-b", [("x", "wrong"), ("y", None)])
        assert tags.tags_of(conn, "us-east-1", ["key-b"]) == {"key-b": {"x": "1"}}


def test_settings_and_regions_are_create_once(catalog: Catalog) -> None:
    with catalog.begin() as conn:
        assert settings.get_or_create(conn, "secret", "first") == "first"
        assert settings.get_or_create(conn, "secret", "second") == "first"
        assert regions.ensure_region(conn, "eu-west-1", NOW)
        assert not regions.ensure_region(conn, "eu-west-1", NOW)
        assert regions.used_regions(conn) == ["eu-west-1"]
