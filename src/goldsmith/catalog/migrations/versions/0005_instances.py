"""Instances, volumes and durable tasks.

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from goldsmith.catalog.schema import UtcDateTime

revision = "0005"
down_revision = "0004"


def upgrade() -> None:
    op.create_table(
        "instances",
        sa.Column("instance_id", sa.String(32), primary_key=True),
        sa.Column("region", sa.String(32), nullable=False),
        sa.Column("account_id", sa.String(12), nullable=False),
        sa.Column("reservation_id", sa.String(32), nullable=False),
        sa.Column("image_id", sa.String(32), nullable=False),
        sa.Column("instance_type", sa.String(32), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("state_reason_code", sa.String(64)),
        sa.Column("state_reason_message", sa.String(255)),
        sa.Column("state_transition_reason", sa.String(255), nullable=False),
        sa.Column("key_name", sa.String(255)),
        sa.Column("public_key", sa.Text()),
        sa.Column("user_data", sa.LargeBinary()),
        sa.Column("launch_time", UtcDateTime(), nullable=False),
        sa.Column("ami_launch_index", sa.Integer(), nullable=False),
        sa.Column("address_index", sa.Integer()),
        sa.Column("ssh_port", sa.Integer()),
        sa.Column("vcpus", sa.Integer(), nullable=False),
        sa.Column("memory_mib", sa.Integer(), nullable=False),
        sa.Column("architecture", sa.String(16), nullable=False),
        sa.Column("virtualization_type", sa.String(16), nullable=False),
        sa.Column("boot_mode", sa.String(16)),
        sa.Column("kernel_id", sa.String(32)),
        sa.Column("ramdisk_id", sa.String(32)),
        sa.Column("root_device_name", sa.String(32), nullable=False),
        sa.Column("shutdown_behavior", sa.String(16), nullable=False),
        sa.Column("availability_zone", sa.String(32), nullable=False),
        sa.Column("http_tokens", sa.String(16), nullable=False),
        sa.Column("http_endpoint", sa.String(16), nullable=False),
        sa.Column("hop_limit", sa.Integer(), nullable=False),
        sa.Column("disable_api_termination", sa.Boolean(), nullable=False),
        sa.Column("client_token", sa.String(64)),
        sa.Column("request_hash", sa.String(64)),
        sa.Column("terminated_at", UtcDateTime()),
    )
    op.create_index("ix_instances_owner", "instances", ["region", "account_id", "instance_id"])
    op.create_index("ix_instances_state", "instances", ["state"])
    op.create_index("ix_instances_token", "instances", ["region", "account_id", "client_token"])
    op.create_index("ix_instances_address", "instances", ["address_index"])
    op.create_table(
        "tasks",
        sa.Column("task_id", sa.String(40), primary_key=True),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("region", sa.String(32), nullable=False),
        sa.Column("account_id", sa.String(12), nullable=False),
        sa.Column("resource_id", sa.String(32), nullable=False),
        sa.Column("payload", sa.Text(), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("error", sa.String(255)),
        sa.Column("created_at", UtcDateTime(), nullable=False),
        sa.Column("updated_at", UtcDateTime(), nullable=False),
    )
    op.create_index("ix_tasks_state", "tasks", ["state"])
    op.create_table(
        "volumes",
        sa.Column("volume_id", sa.String(32), primary_key=True),
        sa.Column("region", sa.String(32), nullable=False),
        sa.Column("account_id", sa.String(12), nullable=False),
        sa.Column("availability_zone", sa.String(32), nullable=False),
        sa.Column("size_gib", sa.Integer(), nullable=False),
        sa.Column("snapshot_id", sa.String(32)),
        sa.Column("volume_type", sa.String(16), nullable=False),
        sa.Column("iops", sa.Integer()),
        sa.Column("encrypted", sa.Boolean(), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("created_at", UtcDateTime(), nullable=False),
        sa.Column("instance_id", sa.String(32)),
        sa.Column("device", sa.String(32)),
        sa.Column("attach_time", UtcDateTime()),
        sa.Column("attachment_state", sa.String(16)),
        sa.Column("delete_on_termination", sa.Boolean()),
        sa.Column("client_token", sa.String(64)),
    )
    op.create_index("ix_volumes_owner", "volumes", ["region", "account_id", "volume_id"])
    op.create_index("ix_volumes_instance", "volumes", ["instance_id"])
