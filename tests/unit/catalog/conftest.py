"""Catalog fixtures: the same tests run against SQLite and a real PostgreSQL server.

PostgreSQL is started per test session in a temporary cluster (``initdb`` + ``pg_ctl`` as the
``postgres`` user, listening only on a unix socket) and stopped at the end.
"""

from __future__ import annotations

import glob
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from goldsmith.catalog.db import Catalog


def _pg_bin() -> Path:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if not found:
        raise RuntimeError("PostgreSQL server binaries missing: scripts/setup installs them")
    return Path(found[-1]).parent


def _as_postgres(*cmd: str) -> None:
    subprocess.run(
        ["runuser", "-u", "postgres", "--", *cmd], check=True, capture_output=True, timeout=120
    )


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[str]:
    """A running PostgreSQL cluster; yields the socket directory."""
    root = Path(tempfile.mkdtemp(prefix="gs-pg-", dir="/tmp"))
    root.chmod(0o755)
    shutil.chown(root, "postgres", "postgres")
    data, bindir = root / "data", _pg_bin()
    _as_postgres(str(bindir / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres")
    options = f"-k {root} -c listen_addresses='' -c fsync=off"
    _as_postgres(
        str(bindir / "pg_ctl"),
        "-D",
        str(data),
        "-o",
        options,
        "-l",
        str(root / "server.log"),
        "-w",
        "start",
    )
    try:
        yield str(root)
    finally:
        _as_postgres(str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop")
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(params=["sqlite", "postgresql"])
def catalog(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Catalog]:
    """A freshly migrated, empty catalog on each database the code supports."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'catalog.db'}"
    else:
        socket_dir = request.getfixturevalue("postgres_server")
        name = f"gs_{uuid.uuid4().hex[:12]}"
        _as_postgres("createdb", "-h", socket_dir, name)
        url = f"postgresql+psycopg://postgres@/{name}?host={socket_dir}"
    db = Catalog(url)
    db.migrate()
    try:
        yield db
    finally:
        db.dispose()


__all__ = ["catalog", "postgres_server"]
