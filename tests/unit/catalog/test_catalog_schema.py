"""The catalog: migrations build exactly the schema the code declares, idempotently."""

from __future__ import annotations

import importlib
import pkgutil
from pathlib import Path

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

import goldsmith.catalog
from goldsmith.catalog.db import Catalog
from goldsmith.catalog.schema import metadata


def _import_every_table_module() -> None:
    """Tables live in several catalog modules; all must be registered on ``metadata``."""
    for module in pkgutil.iter_modules(goldsmith.catalog.__path__, "goldsmith.catalog."):
        importlib.import_module(module.name)


def test_migrations_match_declared_schema(tmp_path: Path) -> None:
    _import_every_table_module()
    catalog = Catalog(f"sqlite:///{tmp_path / 'c.db'}")
    assert catalog.current_revision() is None
    catalog.migrate()
    catalog.migrate()  # idempotent
    assert catalog.current_revision() == catalog.head_revision()
    with catalog.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), metadata)
    catalog.dispose()
    assert diff == []


def test_sqlite_runs_in_wal_mode_with_foreign_keys(tmp_path: Path) -> None:
    catalog = Catalog(f"sqlite:///{tmp_path / 'c.db'}")
    catalog.migrate()
    with catalog.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
    catalog.dispose()
