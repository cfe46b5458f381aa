"""Images, launch permissions, block public access, organizations, recycle bin rules.

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from goldsmith.catalog.schema import UtcDateTime

revision = "0003"
down_revision = "0002"


def upgrade() -> None:
    op.create_table(
        "images",
        sa.Column("image_id", sa.String(32), primary_key=True),
        sa.Column("region", sa.String(32), nullable=False),
        sa.Column("account_id", sa.String(12), nullable=False),
        sa.Column("name", sa.String(128), nullable=False),
        sa.Column("description", sa.String(255)),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("image_type", sa.String(16), nullable=False),
        sa.Column("architecture", sa.String(16), nullable=False),
        sa.Column("virtualization_type", sa.String(16), nullable=False),
        sa.Column("root_device_name", sa.String(32)),
        sa.Column("root_device_type", sa.String(16), nullable=False),
        sa.Column("image_location", sa.String(255)),
        sa.Column("kernel_id", sa.String(32)),
        sa.Column("ramdisk_id", sa.String(32)),
        sa.Column("boot_mode", sa.String(16)),
        sa.Column("tpm_support", sa.String(8)),
        sa.Column("uefi_data", sa.Text()),
        sa.Column("imds_support", sa.String(8)),
        sa.Column("ena_support", sa.Boolean()),
        sa.Column("sriov_net_support", sa.String(16)),
        sa.Column("platform", sa.String(16)),
        sa.Column("hypervisor", sa.String(8), nullable=False),
        sa.Column("is_public", sa.Boolean(), nullable=False),
        sa.Column("billing_products", sa.Text(), nullable=False),
        sa.Column("created_at", UtcDateTime(), nullable=False),
        sa.Column("deprecation_time", UtcDateTime()),
        sa.Column("protection", sa.String(32), nullable=False),
        sa.Column("protection_cooldown_until", UtcDateTime()),
        sa.Column("source_image_id", sa.String(32)),
        sa.Column("source_image_region", sa.String(32)),
        sa.Column("source_instance_id", sa.String(32)),
        sa.Column("last_launched_time", UtcDateTime()),
        sa.Column("state_reason_code", sa.String(64)),
        sa.Column("state_reason_message", sa.String(255)),
        sa.Column("recycle_bin_enter", UtcDateTime()),
        sa.Column("recycle_bin_exit", UtcDateTime()),
    )
    op.create_index("ix_images_owner_name", "images", ["region", "account_id", "name"])
    op.create_index("ix_images_public_name", "images", ["region", "is_public", "name"])
    op.create_index("ix_images_region_name", "images", ["region", "name"])
    op.create_table(
        "image_block_devices",
        sa.Column("image_id", sa.String(32), primary_key=True),
        sa.Column("position", sa.Integer(), primary_key=True),
        sa.Column("region", sa.String(32), nullable=False),
        sa.Column("device_name", sa.String(32), nullable=False),
        sa.Column("virtual_name", sa.String(32)),
        sa.Column("no_device", sa.Boolean(), nullable=False),
        sa.Column("snapshot_id", sa.String(32)),
        sa.Column("volume_size", sa.Integer()),
        sa.Column("volume_type", sa.String(16)),
        sa.Column("delete_on_termination", sa.Boolean()),
        sa.Column("encrypted", sa.Boolean()),
        sa.Column("iops", sa.Integer()),
        sa.Column("throughput", sa.Integer()),
    )
    op.create_index(
        "ix_image_block_devices_snapshot", "image_block_devices", ["region", "snapshot_id"]
    )
    op.create_table(
        "image_launch_permissions",
        sa.Column("region", sa.String(32), primary_key=True),
        sa.Column("image_id", sa.String(32), primary_key=True),
        sa.Column("kind", sa.String(8), primary_key=True),
        sa.Column("value", sa.String(255), primary_key=True),
    )
    op.create_index(
        "ix_image_launch_permissions_grantee",
        "image_launch_permissions",
        ["region", "kind", "value", "image_id"],
    )
    op.create_table(
        "image_block_public_access",
        sa.Column("region", sa.String(32), primary_key=True),
        sa.Column("account_id", sa.String(12), primary_key=True),
        sa.Column("state", sa.String(32), nullable=False),
    )
    op.create_table(
        "image_billing_accounts",
        sa.Column("account_id", sa.String(12), primary_key=True),
    )
    op.create_table(
        "organizations",
        sa.Column("org_id", sa.String(40), primary_key=True),
        sa.Column("arn", sa.String(255), nullable=False, unique=True),
        sa.Column("management_account_id", sa.String(12), nullable=False),
        sa.Column("created_at", UtcDateTime(), nullable=False),
    )
    op.create_table(
        "organizational_units",
        sa.Column("ou_id", sa.String(80), primary_key=True),
        sa.Column("org_id", sa.String(40), nullable=False),
        sa.Column("parent_id", sa.String(80)),
        sa.Column("name", sa.String(128), nullable=False),
        sa.Column("arn", sa.String(255), nullable=False, unique=True),
    )
    op.create_index("ix_organizational_units_org_id", "organizational_units", ["org_id"])
    op.create_table(
        "organization_members",
        sa.Column("account_id", sa.String(12), primary_key=True),
        sa.Column("org_id", sa.String(40), nullable=False),
        sa.Column("ou_id", sa.String(80)),
    )
    op.create_index("ix_organization_members_org_id", "organization_members", ["org_id"])
    op.create_table(
        "rbin_rules",
        sa.Column("rule_id", sa.String(16), primary_key=True),
        sa.Column("region", sa.String(32), nullable=False),
        sa.Column("account_id", sa.String(12), nullable=False),
        sa.Column("resource_type", sa.String(16), nullable=False),
        sa.Column("description", sa.String(255)),
        sa.Column("retention_days", sa.Integer(), nullable=False),
        sa.Column("resource_tags", sa.Text(), nullable=False),
        sa.Column("exclude_tags", sa.Text(), nullable=False),
        sa.Column("tags", sa.Text(), nullable=False),
        sa.Column("created_at", UtcDateTime(), nullable=False),
    )
    op.create_index("ix_rbin_rules_owner", "rbin_rules", ["region", "account_id", "resource_type"])
    # Tag filters over many images look tags up by key and value.
    op.create_index("ix_tags_key_value", "tags", ["region", "key", "value"])
