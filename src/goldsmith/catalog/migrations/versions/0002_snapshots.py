"""Snapshots tables (filled in by the snapshots work).

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

revision = "0002"
down_revision = "0001"


def upgrade() -> None:
    pass
