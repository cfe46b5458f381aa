"""Snapshots in the recycle bin: ListSnapshotsInRecycleBin, RestoreSnapshotFromRecycleBin, expiry.

DeleteSnapshot puts a completed snapshot in the bin when an ``EBS_SNAPSHOT`` retention rule
of its owner covers it (``SnapshotService.delete``): the row stays with
``recycle_bin_enter``/``recycle_bin_exit`` set, its data, tags and createVolumePermission
grants kept, and nobody can see, read, tag or change it. Only its owner lists it here and
restores it, which makes it an ordinary snapshot again.

Expiry: a binned snapshot whose retention has ended is deleted for good (row, grants, tags;
the manifest after commit, its unique chunks at the next GC). That happens lazily, before
any bin operation or DeleteSnapshot of the region answers, and by the server's periodic
sweep (:meth:`SnapshotRecycleBin.purge_expired` over every region), so an expired snapshot
is never listed or restored and its data does not outlive the sweep interval.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from goldsmith.catalog import snapshots as rows
from goldsmith.catalog.snapshots import SnapshotRow, snapshots
from goldsmith.service.context import RequestContext
from goldsmith.service.errors import missing_parameter
from goldsmith.service.ids import check_id
from goldsmith.service.pagination import Paginator, max_results
from goldsmith.service.snapshots import SnapshotService, now, snapshot_not_found


class SnapshotRecycleBin:
    """The two EC2 bin operations for snapshots and the expiry of binned snapshots."""

    def __init__(self, snapshots_service: SnapshotService, paginator: Paginator) -> None:
        self._s = snapshots_service
        self._paginator = paginator

    def purge_expired(self, conn: sa.Connection, region: str | None, at: datetime) -> int:
        """Delete for good the binned snapshots (of ``region``, or all) expired by ``at``."""
        query = snapshots.select().where(snapshots.c.recycle_bin_exit <= at)
        if region is not None:
            query = query.where(snapshots.c.region == region)
        expired = [SnapshotRow(**r._mapping) for r in conn.execute(query)]
        for row in expired:
            self._s.forget(conn, row)
        return len(expired)

    def list_snapshots_in_recycle_bin(
        self, ctx: RequestContext, params: Mapping[str, Any]
    ) -> dict[str, Any]:
        ids = list(dict.fromkeys(check_id(str(i), "snap") for i in params.get("SnapshotIds") or []))
        limit = max_results(params.get("MaxResults"), (5, 1000), None)
        after = self._paginator.decode(params.get("NextToken"), "ListSnapshotsInRecycleBin", params)
        with self._s.catalog.begin() as conn:
            self.purge_expired(conn, ctx.region, now())
            conds: list[Any] = [
                snapshots.c.owner_id == ctx.account_id,
                snapshots.c.recycle_bin_enter.is_not(None),
            ]
            if ids:
                conds.append(snapshots.c.snapshot_id.in_(ids))
            found = list(
                rows.list_snapshots(
                    conn, ctx.region, conditions=conds, after=after[0] if after else None
                )
            )
        token = None
        if limit is not None and len(found) > limit:
            found = found[:limit]
            token = self._paginator.encode(
                (found[-1].snapshot_id,), "ListSnapshotsInRecycleBin", params
            )
        return {
            "Snapshots": [
                {
                    "SnapshotId": r.snapshot_id,
                    "RecycleBinEnterTime": r.recycle_bin_enter,
                    "RecycleBinExitTime": r.recycle_bin_exit,
                    "Description": r.description,
                    "VolumeId": r.volume_id,
                }
                for r in found
            ],
            "NextToken": token,
        }

    def restore_snapshot_from_recycle_bin(
        self, ctx: RequestContext, params: Mapping[str, Any]
    ) -> dict[str, Any]:
        snapshot_id = params.get("SnapshotId")
        if not snapshot_id:
            raise missing_parameter("SnapshotId")
        snapshot_id = check_id(str(snapshot_id), "snap")
        with self._s.catalog.begin() as conn:
            self.purge_expired(conn, ctx.region, now())
            row = rows.get_snapshot(conn, ctx.region, snapshot_id)
            if row is None or row.owner_id != ctx.account_id or row.recycle_bin_enter is None:
                raise snapshot_not_found(snapshot_id)
            rows.update_snapshot(conn, snapshot_id, recycle_bin_enter=None, recycle_bin_exit=None)
        return {
            "SnapshotId": row.snapshot_id,
            "Description": row.description,
            "Encrypted": row.encrypted,
            "OwnerId": row.owner_id,
            "Progress": f"{row.progress}%",
            "StartTime": row.start_time,
            "State": row.state,
            "VolumeId": row.volume_id,
            "VolumeSize": row.volume_size,
            "SseType": "none",
        }
