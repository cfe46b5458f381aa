"""Regions that have been used: a region's row is created on its first request."""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa

from goldsmith.catalog.schema import regions


def ensure_region(conn: sa.Connection, name: str, now: datetime) -> bool:
    """Record region ``name``; True when this call created it (race-safe)."""
    if conn.execute(sa.select(regions.c.name).where(regions.c.name == name)).first():
        return False
    try:
        with conn.begin_nested():
            conn.execute(regions.insert().values(name=name, created_at=now))
    except sa.exc.IntegrityError:
        return False
    return True


def used_regions(conn: sa.Connection) -> list[str]:
    return [r.name for r in conn.execute(sa.select(regions.c.name).order_by(regions.c.name))]
