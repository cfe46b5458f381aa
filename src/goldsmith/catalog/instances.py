"""Instances and durable tasks: rows only (the service layer decides what they mean).

Contract:

* one ``instances`` row per instance, in its region, with its owner (``account_id``). The
  row is inserted by RunInstances (state ``pending``) and kept after termination (EC2 lists
  terminated instances for a while); ``address_index`` is the instance's loopback/private
  address slot, held while the instance is not terminated and released (NULL) at terminate;
* ``user_data`` holds the decoded bytes (the API takes and returns base64);
* ``tasks`` holds durable background work (CreateImage …): a task is ``queued`` or
  ``running`` until it is ``done`` or ``failed``; after a restart, unfinished tasks run again,
  so every task kind must be idempotent.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from goldsmith.catalog.schema import UtcDateTime, metadata

instances = sa.Table(
    "instances",
    metadata,
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
    sa.Index("ix_instances_owner", "region", "account_id", "instance_id"),
    sa.Index("ix_instances_state", "state"),
    sa.Index("ix_instances_token", "region", "account_id", "client_token"),
    sa.Index("ix_instances_address", "address_index"),
)

tasks = sa.Table(
    "tasks",
    metadata,
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
    sa.Index("ix_tasks_state", "state"),
)

INSTANCE_COLUMNS = tuple(c.name for c in instances.columns)
TASK_COLUMNS = tuple(c.name for c in tasks.columns)
#: States in which an instance holds host resources (address, vCPUs, memory).
ACTIVE_STATES = ("pending", "running", "stopping", "shutting-down")


@dataclass(frozen=True)
class InstanceRow:
    """One instance as stored."""

    instance_id: str
    region: str
    account_id: str
    reservation_id: str
    image_id: str
    instance_type: str
    state: str
    state_reason_code: str | None
    state_reason_message: str | None
    state_transition_reason: str
    key_name: str | None
    public_key: str | None
    user_data: bytes | None
    launch_time: datetime
    ami_launch_index: int
    address_index: int | None
    ssh_port: int | None
    vcpus: int
    memory_mib: int
    architecture: str
    virtualization_type: str
    boot_mode: str | None
    kernel_id: str | None
    ramdisk_id: str | None
    root_device_name: str
    shutdown_behavior: str
    availability_zone: str
    http_tokens: str
    http_endpoint: str
    hop_limit: int
    disable_api_termination: bool
    client_token: str | None
    request_hash: str | None
    terminated_at: datetime | None


@dataclass(frozen=True)
class TaskRow:
    """One durable task; ``payload`` is JSON text the task kind understands."""

    task_id: str
    kind: str
    region: str
    account_id: str
    resource_id: str
    payload: str
    state: str
    attempts: int
    error: str | None
    created_at: datetime
    updated_at: datetime


def _instance(r: Any) -> InstanceRow:
    return InstanceRow(**{name: r._mapping[name] for name in INSTANCE_COLUMNS})


def insert_instance(conn: sa.Connection, row: InstanceRow) -> None:
    conn.execute(instances.insert().values(**row.__dict__))


def update_instance(conn: sa.Connection, instance_id: str, **values: Any) -> None:
    conn.execute(instances.update().where(instances.c.instance_id == instance_id).values(**values))


def get_instance(conn: sa.Connection, region: str, instance_id: str) -> InstanceRow | None:
    query = instances.select().where(
        instances.c.region == region, instances.c.instance_id == instance_id
    )
    found = conn.execute(query).first()
    return _instance(found) if found is not None else None


def list_instances(
    conn: sa.Connection,
    region: str,
    account_id: str,
    *,
    ids: Sequence[str] = (),
    after: str | None = None,
) -> list[InstanceRow]:
    """The account's instances in ``region`` (narrowed to ``ids``), ordered by id."""
    query = instances.select().where(
        instances.c.region == region, instances.c.account_id == account_id
    )
    if ids:
        query = query.where(instances.c.instance_id.in_(list(ids)))
    if after is not None:
        query = query.where(instances.c.instance_id > after)
    return [_instance(r) for r in conn.execute(query.order_by(instances.c.instance_id))]


def by_client_token(
    conn: sa.Connection, region: str, account_id: str, token: str
) -> list[InstanceRow]:
    query = instances.select().where(
        instances.c.region == region,
        instances.c.account_id == account_id,
        instances.c.client_token == token,
    )
    return [_instance(r) for r in conn.execute(query.order_by(instances.c.ami_launch_index))]


def active_instances(conn: sa.Connection, region: str | None = None) -> list[InstanceRow]:
    """Instances holding host resources (every region unless ``region`` is given)."""
    query = instances.select().where(instances.c.state.in_(ACTIVE_STATES))
    if region is not None:
        query = query.where(instances.c.region == region)
    return [_instance(r) for r in conn.execute(query.order_by(instances.c.instance_id))]


def used_address_indexes(conn: sa.Connection) -> set[int]:
    query = sa.select(instances.c.address_index).where(instances.c.address_index.is_not(None))
    return {int(v) for v in conn.execute(query).scalars()}


def by_address_index(conn: sa.Connection, index: int) -> InstanceRow | None:
    query = instances.select().where(instances.c.address_index == index)
    found = conn.execute(query).first()
    return _instance(found) if found is not None else None


# -- tasks ---------------------------------------------------------------------------------


def _task(r: Any) -> TaskRow:
    return TaskRow(**{name: r._mapping[name] for name in TASK_COLUMNS})


def insert_task(conn: sa.Connection, row: TaskRow) -> None:
    conn.execute(tasks.insert().values(**row.__dict__))


def update_task(conn: sa.Connection, task_id: str, **values: Any) -> None:
    conn.execute(tasks.update().where(tasks.c.task_id == task_id).values(**values))


def get_task(conn: sa.Connection, task_id: str) -> TaskRow | None:
    found = conn.execute(tasks.select().where(tasks.c.task_id == task_id)).first()
    return _task(found) if found is not None else None


def unfinished_tasks(conn: sa.Connection, kinds: Iterable[str] | None = None) -> list[TaskRow]:
    query = tasks.select().where(tasks.c.state.in_(("queued", "running")))
    if kinds is not None:
        query = query.where(tasks.c.kind.in_(list(kinds)))
    return [_task(r) for r in conn.execute(query.order_by(tasks.c.created_at))]
