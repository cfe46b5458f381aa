"""Opening the catalog: engine set-up, migrations, transactions.

``Catalog(url)`` works for SQLite (the embedded default: WAL journal, foreign keys on,
a busy timeout so the CLI and the server can write at the same time) and PostgreSQL.
``migrate()`` brings the schema to the newest revision with Alembic; it is idempotent and
runs inside a transaction, so a failed migration leaves the old schema in place.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

MIGRATIONS_DIR = Path(__file__).with_name("migrations")


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


class Catalog:
    """The metadata database. Thread-safe; share one per process."""

    def __init__(self, url: str) -> None:
        self.url = url
        if url.startswith("sqlite"):
            path = url.split("///", 1)[-1]
            if path and path != ":memory:":
                Path(path).parent.mkdir(parents=True, exist_ok=True)
            self.engine = sa.create_engine(
                url, connect_args={"check_same_thread": False, "timeout": 10}
            )
            sa.event.listen(self.engine, "connect", _sqlite_pragmas)
        else:
            self.engine = sa.create_engine(url, pool_pre_ping=True)

    def _alembic_config(self) -> Config:
        config = Config()
        config.set_main_option("script_location", str(MIGRATIONS_DIR))
        return config

    def migrate(self) -> None:
        """Upgrade the schema to the newest revision (no-op when already there)."""
        config = self._alembic_config()
        with self.engine.begin() as conn:
            config.attributes["connection"] = conn
            command.upgrade(config, "head")

    def current_revision(self) -> str | None:
        """The schema revision the database is at (``None`` before the first migration)."""
        with self.engine.connect() as conn:
            return MigrationContext.configure(conn).get_current_revision()

    def head_revision(self) -> str | None:
        """The newest revision the code knows."""
        return ScriptDirectory.from_config(self._alembic_config()).get_current_head()

    @contextmanager
    def begin(self) -> Iterator[sa.Connection]:
        """A connection in a transaction: committed on success, rolled back on error."""
        with self.engine.begin() as conn:
            yield conn

    def dispose(self) -> None:
        """Close pooled connections."""
        self.engine.dispose()
