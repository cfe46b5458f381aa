"""Server-wide named values kept in the catalog (e.g. the pagination-token signing key)."""

from __future__ import annotations

import sqlalchemy as sa

from goldsmith.catalog.schema import settings


def get_or_create(conn: sa.Connection, name: str, make: str) -> str:
    """The stored value of ``name``; stores ``make`` first when absent (race-safe)."""
    found = conn.execute(sa.select(settings.c.value).where(settings.c.name == name)).first()
    if found:
        return str(found.value)
    try:
        with conn.begin_nested():
            conn.execute(settings.insert().values(name=name, value=make))
    except sa.exc.IntegrityError:
        pass
    return str(
        conn.execute(sa.select(settings.c.value).where(settings.c.name == name)).scalar_one()
    )
