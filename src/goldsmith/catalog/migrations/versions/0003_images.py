"""Images tables (filled in by the images work).

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

revision = "0003"
down_revision = "0002"


def upgrade() -> None:
    pass
