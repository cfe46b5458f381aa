"""Images tuning (indexes for DescribeImages; filled in by the images performance work).

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

revision = "0004"
down_revision = "0003"


def upgrade() -> None:
    pass
