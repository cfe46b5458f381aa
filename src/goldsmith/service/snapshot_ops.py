"""The EC2 snapshot operations: Describe/Delete/Copy and the snapshot attributes.

DescribeSnapshots applies every scoping parameter on its own, as EC2 does:

* the base set is what the caller may see (its own snapshots, and those with a
  createVolumePermission for it or for ``all``);
* ``SnapshotIds`` narrows to those ids, and any id the caller cannot see is
  InvalidSnapshot.NotFound (malformed ones InvalidSnapshotID.Malformed);
* ``OwnerIds`` narrows to owners (``self``, account ids, owner aliases such as ``amazon``);
* ``RestorableByUserIds`` narrows to snapshots the given accounts may create volumes from
  (``self``, account ids, ``all`` for public ones);
* ``Filters`` and ``MaxResults``/``NextToken`` (the shared :class:`Paginator`).

CopySnapshot is called in the destination region (the caller's) with ``SourceRegion``:

* within one region the copy is a new manifest over the same chunks (no data is copied),
  ``completed`` when the call returns;
* from another region it is ``pending`` at once and a durable ``copy-snapshot`` task moves
  the data — only the chunks the destination store lacks — then marks it ``completed`` (or
  ``error`` with a StateMessage). Progress and StateMessage report the bytes moved
  meanwhile (see ``SnapshotService.copy_data``); a server restart resumes the task.

An unknown SourceRegion is InvalidRegion (one this server does not serve:
InvalidParameterValue); the source must be a completed
snapshot the caller may read there. ``Encrypted``/``KmsKeyId`` are refused (no encryption
yet); ``PresignedUrl`` (which botocore adds on its own) is ignored.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from goldsmith.catalog import accounts as account_rows
from goldsmith.catalog import snapshots as rows
from goldsmith.catalog.instances import TaskRow
from goldsmith.catalog.snapshots import SnapshotRow, snapshots
from goldsmith.service.context import RequestContext
from goldsmith.service.errors import ClientError, invalid_parameter, missing_parameter
from goldsmith.service.filters import FilterSpec, sql_match
from goldsmith.service.ids import check_id
from goldsmith.service.pagination import Paginator
from goldsmith.service.snapshots import (
    SnapshotService,
    check_description,
    check_source_region,
    now,
    snapshot_not_found,
)
from goldsmith.service.tags import specified_tags, tag_list
from goldsmith.service.tasks import TaskRunner

ACCOUNT_RE = re.compile(r"^\d{12}$")
ATTRIBUTES = ("createVolumePermission", "productCodes")
COPY_KIND = "copy-snapshot"


@dataclass(frozen=True)
class _View:
    """A snapshot as the filters and the response see it."""

    row: SnapshotRow
    tags: Mapping[str, str]
    owner_alias: str | None


def _progress(row: SnapshotRow) -> str:
    return f"{row.progress}%"


_FILTERS: FilterSpec[_View] = FilterSpec(
    {
        "description": lambda v: v.row.description,
        "owner-alias": lambda v: v.owner_alias,
        "owner-id": lambda v: v.row.owner_id,
        "progress": lambda v: _progress(v.row),
        "snapshot-id": lambda v: v.row.snapshot_id,
        "start-time": lambda v: v.row.start_time,
        "status": lambda v: v.row.state,
        "volume-id": lambda v: v.row.volume_id,
        "volume-size": lambda v: v.row.volume_size,
        "encrypted": lambda v: v.row.encrypted,
        "storage-tier": lambda _v: "standard",
        "kms-key-id": lambda _v: None,
    },
    tags=lambda v: v.tags,
    sql={
        "snapshot-id": lambda values: sql_match(snapshots.c.snapshot_id, values),
        "owner-id": lambda values: sql_match(snapshots.c.owner_id, values),
        "status": lambda values: sql_match(snapshots.c.state, values),
        "volume-id": lambda values: sql_match(snapshots.c.volume_id, values),
    },
)


def _snapshot_dict(view: _View) -> dict[str, Any]:
    row = view.row
    return {
        "SnapshotId": row.snapshot_id,
        "VolumeId": row.volume_id,
        "State": row.state,
        "StateMessage": row.state_message,
        "StartTime": row.start_time,
        "CompletionTime": row.completion_time,
        "Progress": _progress(row),
        "OwnerId": row.owner_id,
        "OwnerAlias": view.owner_alias,
        "Description": row.description,
        "VolumeSize": row.volume_size,
        "Encrypted": row.encrypted,
        "StorageTier": "standard",
        "FullSnapshotSizeInBytes": row.data_bytes,
        "Tags": tag_list(view.tags) or None,
    }


def _snapshot_id_param(params: Mapping[str, Any], name: str = "SnapshotId") -> str:
    value = params.get(name)
    if value is None or value == "":
        raise missing_parameter(name)
    return check_id(str(value), "snap")


def _account_ids(values: Sequence[Any], ctx: RequestContext, *, allow_all: bool) -> list[str]:
    out = []
    for value in map(str, values):
        if value == "self":
            out.append(ctx.account_id)
        elif value == "all" and allow_all:
            out.append(rows.ALL)
        elif ACCOUNT_RE.match(value):
            out.append(value)
        else:
            raise ClientError("InvalidUserID.Malformed", f"Invalid user id: '{value}'")
    return out


class SnapshotOperations:
    """DescribeSnapshots, DeleteSnapshot, CopySnapshot and the three attribute operations."""

    def __init__(
        self,
        snapshots: SnapshotService,
        paginator: Paginator,
        platform_alias: str = "amazon",
        region_enabled: Callable[[str], bool] = lambda _region: True,
    ) -> None:
        self._s = snapshots
        self._catalog = snapshots.catalog
        self._paginator = paginator
        self.platform_alias = platform_alias
        self._region_enabled = region_enabled
        self._tasks: TaskRunner | None = None

    def use_tasks(self, tasks: TaskRunner) -> None:
        """Run cross-region copies as durable tasks of ``tasks`` (else inline, in the call)."""
        tasks.register(COPY_KIND, self._run_copy)
        self._tasks = tasks

    def _run_copy(self, task: TaskRow, payload: dict[str, Any]) -> None:
        self._s.copy_data(task.region, str(payload["snapshot_id"]))

    # -- describe ---------------------------------------------------------------------------

    def _platform(self, conn: sa.Connection) -> str | None:
        found = account_rows.accounts_with_role(conn, "platform")
        return found[0].account_id if found else None

    def _owner_ids(
        self, conn: sa.Connection, ctx: RequestContext, values: Sequence[Any]
    ) -> list[str]:
        out = []
        for value in map(str, values):
            if value == "self":
                out.append(ctx.account_id)
            elif ACCOUNT_RE.match(value):
                out.append(value)
            elif value == self.platform_alias:
                out.append(self._platform(conn) or "-")
            else:
                account = account_rows.find_account_by_alias(conn, value)
                out.append(account.account_id if account else "-")
        return out

    def _restorable_condition(self, region: str, accounts: Sequence[str]) -> Any:
        p = rows.snapshot_permissions
        grantee = [sa.and_(p.c.kind == "group", p.c.value == rows.ALL)]
        users = [a for a in accounts if a != rows.ALL]
        if users:
            grantee.append(sa.and_(p.c.kind == "user", p.c.value.in_(users)))
        granted = (
            sa.select(p.c.snapshot_id)
            .where(p.c.region == region, sa.or_(*grantee))
            .scalar_subquery()
        )
        return sa.or_(
            snapshots.c.owner_id.in_(users or ["-"]), snapshots.c.snapshot_id.in_(granted)
        )

    def describe_snapshots(self, ctx: RequestContext, params: Mapping[str, Any]) -> dict[str, Any]:
        ids = list(dict.fromkeys(check_id(str(i), "snap") for i in params.get("SnapshotIds") or []))
        if ids and params.get("MaxResults") is not None:
            raise ClientError(
                "InvalidParameterCombination",
                "The parameter SnapshotIds cannot be used with the parameter MaxResults",
            )
        predicate = _FILTERS.compile(params.get("Filters"))
        after = self._paginator.decode(params.get("NextToken"), "DescribeSnapshots", params)
        with self._catalog.begin() as conn:
            self.expire_pending(conn, ctx.region)
            conds: list[Any] = [
                rows.visible_condition(ctx.region, ctx.account_id),
                snapshots.c.recycle_bin_enter.is_(None),
                *_FILTERS.pushdown(params.get("Filters")),
            ]
            if ids:
                conds.append(snapshots.c.snapshot_id.in_(ids))
            if params.get("OwnerIds"):
                conds.append(
                    snapshots.c.owner_id.in_(self._owner_ids(conn, ctx, params["OwnerIds"]))
                )
            if params.get("RestorableByUserIds"):
                accounts = _account_ids(params["RestorableByUserIds"], ctx, allow_all=True)
                conds.append(self._restorable_condition(ctx.region, accounts))
            found = list(
                rows.list_snapshots(
                    conn, ctx.region, conditions=conds, after=after[0] if after else None
                )
            )
            if ids:
                # Ids must exist and be visible, whatever the other parameters narrow to.
                seen = {
                    r.snapshot_id
                    for r in rows.list_snapshots(
                        conn,
                        ctx.region,
                        conditions=[
                            snapshots.c.snapshot_id.in_(ids),
                            rows.visible_condition(ctx.region, ctx.account_id),
                            snapshots.c.recycle_bin_enter.is_(None),
                        ],
                    )
                }
                missing = [i for i in ids if i not in seen]
                if missing:
                    raise snapshot_not_found(missing[0])
            tags = self._s.tags.tags_of(conn, ctx.region, [r.snapshot_id for r in found])
            platform = self._platform(conn)
        views = (
            _View(
                r,
                tags.get(r.snapshot_id, {}),
                self.platform_alias if r.owner_id == platform else None,
            )
            for r in found
        )
        page, token = self._paginator.page(
            (v for v in views if predicate(v)),
            key=lambda v: (v.row.snapshot_id,),
            operation="DescribeSnapshots",
            params=params,
        )
        return {"Snapshots": [_snapshot_dict(v) for v in page], "NextToken": token}

    def expire_pending(self, conn: sa.Connection, region: str) -> None:
        """Pending uploads past their timeout go to ``error`` (EBS StartSnapshot Timeout)."""
        conn.execute(
            snapshots.update()
            .where(
                snapshots.c.region == region,
                snapshots.c.state == "pending",
                snapshots.c.timeout_at < now(),
            )
            .values(state="error", state_message="The snapshot upload timed out")
        )

    # -- delete -----------------------------------------------------------------------------

    def delete_snapshot(self, ctx: RequestContext, params: Mapping[str, Any]) -> dict[str, Any]:
        snapshot_id = _snapshot_id_param(params)
        with self._catalog.begin() as conn:
            self._s.delete(conn, ctx, snapshot_id)
        return {}

    # -- attributes -------------------------------------------------------------------------

    @staticmethod
    def _attribute(params: Mapping[str, Any]) -> str:
        attribute = params.get("Attribute")
        if not attribute:
            raise missing_parameter("Attribute")
        if attribute not in ATTRIBUTES:
            raise invalid_parameter(
                f"Value ({attribute}) for parameter attribute is invalid. Unknown attribute."
            )
        return str(attribute)

    def describe_snapshot_attribute(
        self, ctx: RequestContext, params: Mapping[str, Any]
    ) -> dict[str, Any]:
        attribute = self._attribute(params)
        snapshot_id = _snapshot_id_param(params)
        with self._catalog.begin() as conn:
            self._s.owned(conn, ctx, snapshot_id)
            grants = rows.permissions_of(conn, snapshot_id)
        out: dict[str, Any] = {"SnapshotId": snapshot_id}
        if attribute == "createVolumePermission":
            out["CreateVolumePermissions"] = [
                {"Group": value} if kind == "group" else {"UserId": value} for kind, value in grants
            ]
        else:
            out["ProductCodes"] = []
        return out

    @staticmethod
    def _grants(items: Sequence[Mapping[str, Any]], ctx: RequestContext) -> list[tuple[str, str]]:
        out = []
        for item in items:
            group, user = item.get("Group"), item.get("UserId")
            if group is not None:
                if group != rows.ALL:
                    raise invalid_parameter(f"Value ({group}) for parameter group is invalid.")
                out.append(("group", rows.ALL))
            if user is not None:
                out.extend(("user", a) for a in _account_ids([user], ctx, allow_all=False))
        return out

    def modify_snapshot_attribute(
        self, ctx: RequestContext, params: Mapping[str, Any]
    ) -> dict[str, Any]:
        snapshot_id = _snapshot_id_param(params)
        attribute = params.get("Attribute") or "createVolumePermission"
        if attribute == "productCodes":
            raise invalid_parameter("The attribute productCodes cannot be modified.")
        if attribute not in ATTRIBUTES:
            self._attribute(params)
        add, remove = self._modifications(params, ctx)
        if not add and not remove:
            raise missing_parameter("CreateVolumePermission")
        with self._catalog.begin() as conn:
            row = self._s.owned(conn, ctx, snapshot_id)
            if add and row.state != "completed":
                raise ClientError(
                    "IncorrectState", f"Snapshot '{snapshot_id}' is in state '{row.state}'."
                )
            rows.remove_permissions(conn, snapshot_id, remove)
            rows.add_permissions(
                conn, ctx.region, snapshot_id, [g for g in add if g != ("user", row.owner_id)]
            )
        return {}

    def _modifications(
        self, params: Mapping[str, Any], ctx: RequestContext
    ) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
        structured = params.get("CreateVolumePermission") or {}
        add = self._grants(structured.get("Add") or [], ctx)
        remove = self._grants(structured.get("Remove") or [], ctx)
        flat = [{"UserId": u} for u in params.get("UserIds") or []]
        flat += [{"Group": g} for g in params.get("GroupNames") or []]
        if flat:
            operation = params.get("OperationType")
            if operation not in ("add", "remove"):
                raise missing_parameter("OperationType")
            (add if operation == "add" else remove).extend(self._grants(flat, ctx))
        return add, remove

    def reset_snapshot_attribute(
        self, ctx: RequestContext, params: Mapping[str, Any]
    ) -> dict[str, Any]:
        attribute = self._attribute(params)
        snapshot_id = _snapshot_id_param(params)
        if attribute != "createVolumePermission":
            raise invalid_parameter(f"The attribute {attribute} cannot be reset.")
        with self._catalog.begin() as conn:
            self._s.owned(conn, ctx, snapshot_id)
            rows.remove_permissions(conn, snapshot_id, None)
        return {}

    # -- copy -------------------------------------------------------------------------------

    def copy_snapshot(self, ctx: RequestContext, params: Mapping[str, Any]) -> dict[str, Any]:
        source_id = _snapshot_id_param(params, "SourceSnapshotId")
        source_region = check_source_region(params.get("SourceRegion"), self._region_enabled)
        if params.get("DestinationRegion") not in (None, ctx.region):
            raise ClientError(
                "InvalidParameterValue",
                f"DestinationRegion must be the region the request is sent to ({ctx.region}).",
            )
        if params.get("Encrypted") or params.get("KmsKeyId"):
            raise ClientError(
                "InvalidParameterValue", "Encrypted snapshots are not supported by this server."
            )
        if params.get("DestinationOutpostArn"):
            raise ClientError("InvalidParameterValue", "Outposts are not supported.")
        description = check_description(params.get("Description"))
        tags = specified_tags(params.get("TagSpecifications"), "snapshot")
        remote = source_region != ctx.region
        with self._catalog.begin() as conn:
            source_ctx = RequestContext(ctx.account_id, source_region, ctx.request_id)
            source = self._s.usable(conn, source_ctx, source_id)
            row = self._s.new_copy_row(conn, ctx, source, description=description, tags=tags)
            if remote and self._tasks is not None:
                self._tasks.submit(
                    conn,
                    COPY_KIND,
                    region=ctx.region,
                    account_id=ctx.account_id,
                    resource_id=row.snapshot_id,
                    payload={"snapshot_id": row.snapshot_id},
                )
        if not remote or self._tasks is None:
            self._s.copy_data(ctx.region, row.snapshot_id)
        return {"SnapshotId": row.snapshot_id, "Tags": tag_list(tags) or None}
