"""Images tuning: covering indexes for DescribeImages at 100,000 images.

* ``ix_tags_key_value`` gains ``resource_id``: a ``tag:<key>`` filter reads the matching
  ids from the index alone instead of one table row per tagged resource;
* ``ix_images_visibility`` (id first, then what every DescribeImages checks: region,
  owner, public, state, deprecation, recycle bin): candidates from another index (tags,
  grants, ids) are checked without reading their table rows;
* ``ix_images_owner_id``: ``Owners=…`` pages walk an owner's images in id order, checks
  included, from the index alone.

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

from alembic import op

revision = "0004"
down_revision = "0003"

_CHECKED = ["is_public", "state", "deprecation_time", "recycle_bin_enter"]


def upgrade() -> None:
    op.drop_index("ix_tags_key_value", table_name="tags")
    op.create_index("ix_tags_key_value", "tags", ["region", "key", "value", "resource_id"])
    op.create_index(
        "ix_images_visibility", "images", ["image_id", "region", "account_id", *_CHECKED]
    )
    op.create_index("ix_images_owner_id", "images", ["region", "account_id", "image_id", *_CHECKED])
