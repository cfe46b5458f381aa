"""SQLite specifics of the embedded default catalog."""

from __future__ import annotations

from pathlib import Path

from goldsmith.catalog.db import Catalog


def test_fresh_database_has_no_revision_until_migrated(tmp_path: Path) -> None:
    catalog = Catalog(f"sqlite:///{tmp_path / 'sub' / 'c.db'}")  # parent dirs are created
    assert catalog.current_revision() is None
    catalog.migrate()
    assert catalog.current_revision() == catalog.head_revision()
    catalog.dispose()


def test_sqlite_runs_in_wal_mode_with_foreign_keys(tmp_path: Path) -> None:
    catalog = Catalog(f"sqlite:///{tmp_path / 'c.db'}")
    catalog.migrate()
    with catalog.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
    catalog.dispose()
