"""Snapshots: the catalog rows, the region stores, and who may do what with a snapshot.

:class:`SnapshotService` is the core every snapshot-facing part builds on: the EC2 snapshot
operations (``snapshot_ops``), the EBS direct API (``ebs``) and images, which reach it
through four hooks:

* ``usable(conn, ctx, id)`` — a completed snapshot the caller may register an image from;
* ``add_read_grant(fn)`` — "this caller may launch an image that uses the snapshot": such
  callers may read the snapshot's blocks but not list, describe or modify it (as in EC2);
* ``add_in_use_check(fn)`` — the image that uses a snapshot, so DeleteSnapshot refuses;
* ``delete_for_image(conn, ctx, id)`` — DeregisterImage's DeleteAssociatedSnapshots;
* ``new_copy_row(conn, ctx, source, …)`` and ``copy_data(region, id)`` — CopySnapshot and
  CopyImage: a ``pending`` copy in the caller's region, then its data moved from the source
  region's store (only the chunks the destination lacks; see ``goldsmith.store.transfer``).

Who may do what (``ctx`` is the caller):

==============================  ===============================================
see (Describe*, attributes)     owner; createVolumePermission for it or ``all``
read blocks (EBS, images)       the above, plus any registered read grant
write, modify, delete           owner only (others: AuthFailure if they can see
                                it, else NotFound)
==============================  ===============================================

Store and catalog: a row is inserted (``pending``) before its manifest is written, and the
manifest is deleted only after the row's deletion commits, so the store never holds a
snapshot the catalog does not know, except briefly after a delete.

Each region's store is its own repository (``Settings.region_store``: ``region_stores`` in
the configuration, else ``<data-dir>/regions/<region>/store``). While a copy's data moves,
its row shows ``Progress`` (stored bytes moved / needed, at most 99 % until completed) and a
``StateMessage`` with the exact bytes, ``Copying from R: M of N bytes moved``; once completed
the message says ``Copied from R: M of N bytes moved; S bytes already present`` (see
:data:`COPY_PROGRESS` for the pattern the CLI reads).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import re
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from goldsmith.catalog import snapshots as rows
from goldsmith.catalog.db import Catalog
from goldsmith.catalog.snapshots import SnapshotRow
from goldsmith.config import Settings
from goldsmith.service.context import RequestContext
from goldsmith.service.errors import (
    ClientError,
    invalid_parameter,
    missing_parameter,
    not_authorized_for,
)
from goldsmith.service.ids import check_id, new_id
from goldsmith.service.regions import STANDARD_REGIONS
from goldsmith.service.retention import retention
from goldsmith.service.tags import ResourceKind, TagService
from goldsmith.store import Repository, SnapshotNotFoundError, StoreError
from goldsmith.store.transfer import TransferReport, transfer_snapshot
from goldsmith.store.writer import Progress

GIB = 1024**3
#: EC2's volume id for snapshots that were not taken from a volume.
NO_VOLUME = "vol-ffffffff"
MAX_DESCRIPTION = 255

ReadGrant = Callable[[sa.Connection, RequestContext, str], bool]
InUseCheck = Callable[[sa.Connection, str, str], str | None]
#: a pending or completed copy's StateMessage: group 1 = bytes moved, group 2 = bytes needed
COPY_PROGRESS = re.compile(r"(\d+) of (\d+) bytes moved")
#: seconds between two progress updates of a copy in the catalog
PROGRESS_INTERVAL = 0.5


def now() -> datetime:
    return datetime.now(UTC)


def gib(size_bytes: int) -> int:
    """Volume size in GiB, rounded up (at least 1, as EC2 volumes are)."""
    return max(1, -(-size_bytes // GIB))


def request_hash(params: Mapping[str, Any]) -> str:
    """A fingerprint of a create request, for ClientToken idempotency."""
    scoped = {k: v for k, v in params.items() if k not in {"ClientToken", "DryRun"}}
    blob = json.dumps(scoped, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()


def check_description(value: Any) -> str:
    if value is None:
        return ""
    if not isinstance(value, str) or len(value) > MAX_DESCRIPTION:
        raise invalid_parameter(f"Description must be a string of at most {MAX_DESCRIPTION} chars")
    return value


def snapshot_not_found(snapshot_id: str) -> ClientError:
    return ClientError("InvalidSnapshot.NotFound", f"The snapshot '{snapshot_id}' does not exist.")


def check_source_region(region: Any, enabled: Callable[[str], bool]) -> str:
    """A copy's ``SourceRegion``: required, a region name this server serves, else an error.

    A name that is no region is ``InvalidRegion``; a region this server does not serve
    (``regions`` in the configuration) is ``InvalidParameterValue``.
    """
    if region is None or region == "":
        raise missing_parameter("SourceRegion")
    if not isinstance(region, str) or region not in STANDARD_REGIONS:
        raise ClientError("InvalidRegion", f"The source region '{region}' does not exist.")
    if not enabled(region):
        raise invalid_parameter(f"The source region '{region}' is not enabled on this server.")
    return region


def after_commit(conn: sa.Connection, fn: Callable[[], None]) -> None:
    """Run ``fn`` once the transaction of ``conn`` commits (never if it rolls back)."""
    sa.event.listen(conn, "commit", lambda _conn: fn(), once=True)


class SnapshotService:
    """Snapshot rows, permissions and stores; the hooks images and the APIs use."""

    def __init__(self, catalog: Catalog, tags: TagService, settings: Settings) -> None:
        self.catalog = catalog
        self.tags = tags
        self.settings = settings
        self._repos: dict[str, Repository] = {}
        self._repos_lock = threading.Lock()
        self._read_grants: list[ReadGrant] = []
        self._in_use_checks: list[InUseCheck] = []
        tags.register(ResourceKind("snap", "snapshot", self._owner_of))

    # -- collaborators -----------------------------------------------------------------------

    def repository(self, region: str) -> Repository:
        """The region's chunk store (opened once, created on first use)."""
        with self._repos_lock:
            repo = self._repos.get(region)
            if repo is None:
                repo = Repository.open(self.settings.region_store(region))
                self._repos[region] = repo
            return repo

    def add_read_grant(self, fn: ReadGrant) -> None:
        """Register ``fn(conn, ctx, snapshot_id)``: may the caller read the snapshot's blocks."""
        self._read_grants.append(fn)

    def add_in_use_check(self, fn: InUseCheck) -> None:
        """Register ``fn(conn, region, snapshot_id)`` → id of an image using it, or None."""
        self._in_use_checks.append(fn)

    @staticmethod
    def _owner_of(conn: sa.Connection, region: str, snapshot_id: str) -> str | None:
        row = rows.get_snapshot(conn, region, snapshot_id)
        # A snapshot in the recycle bin cannot be tagged (its tags are kept for restore).
        return row.owner_id if row is not None and row.recycle_bin_enter is None else None

    # -- permission checks -------------------------------------------------------------------

    @staticmethod
    def may_see(conn: sa.Connection, ctx: RequestContext, row: SnapshotRow) -> bool:
        """Owner, or a createVolumePermission for the caller or for every account.

        A snapshot in the recycle bin is seen by nobody (its owner lists it with
        ListSnapshotsInRecycleBin and restores it first).
        """
        if row.recycle_bin_enter is not None:
            return False
        if row.owner_id == ctx.account_id:
            return True
        grants = rows.permissions_of(conn, row.snapshot_id)
        return ("user", ctx.account_id) in grants or ("group", rows.ALL) in grants

    def may_read(self, conn: sa.Connection, ctx: RequestContext, row: SnapshotRow) -> bool:
        """``may_see`` or a registered read grant (an image the caller may launch uses it)."""
        if self.may_see(conn, ctx, row):
            return True
        if row.recycle_bin_enter is not None:
            return False
        return any(grant(conn, ctx, row.snapshot_id) for grant in self._read_grants)

    def find(self, conn: sa.Connection, region: str, snapshot_id: str) -> SnapshotRow | None:
        """The row (any owner), or None; the id must be well formed."""
        return rows.get_snapshot(conn, region, check_id(snapshot_id, "snap"))

    def visible(self, conn: sa.Connection, ctx: RequestContext, snapshot_id: str) -> SnapshotRow:
        """The snapshot if the caller may see it, else InvalidSnapshot.NotFound."""
        row = self.find(conn, ctx.region, snapshot_id)
        if row is None or not self.may_see(conn, ctx, row):
            raise snapshot_not_found(snapshot_id)
        return row

    def readable(self, conn: sa.Connection, ctx: RequestContext, snapshot_id: str) -> SnapshotRow:
        """The snapshot if the caller may read its blocks, else InvalidSnapshot.NotFound."""
        row = self.find(conn, ctx.region, snapshot_id)
        if row is None or not self.may_read(conn, ctx, row):
            raise snapshot_not_found(snapshot_id)
        return row

    def owned(self, conn: sa.Connection, ctx: RequestContext, snapshot_id: str) -> SnapshotRow:
        """The caller's own snapshot; AuthFailure if it only sees it, else NotFound."""
        row = self.find(conn, ctx.region, snapshot_id)
        if row is None or (row.recycle_bin_enter is not None and row.owner_id != ctx.account_id):
            raise snapshot_not_found(snapshot_id)
        if row.owner_id != ctx.account_id:
            # Only a caller that may see the snapshot learns it exists; a read grant alone
            # (an image shared with the caller maps it) does not make it visible.
            if self.may_see(conn, ctx, row):
                raise not_authorized_for(f"snapshot:{snapshot_id}")
            raise snapshot_not_found(snapshot_id)
        if row.recycle_bin_enter is not None:
            raise snapshot_not_found(snapshot_id)
        return row

    def usable(self, conn: sa.Connection, ctx: RequestContext, snapshot_id: str) -> SnapshotRow:
        """The completed snapshot if the caller may register an image (or a volume) from it.

        Unknown or unreadable → InvalidSnapshot.NotFound; malformed → InvalidSnapshotID.Malformed;
        not completed → IncorrectState.
        """
        row = self.readable(conn, ctx, snapshot_id)
        if row.state != "completed":
            raise ClientError(
                "IncorrectState", f"Snapshot '{snapshot_id}' is in state '{row.state}'."
            )
        return row

    def in_use_by(self, conn: sa.Connection, region: str, snapshot_id: str) -> str | None:
        for check in self._in_use_checks:
            user = check(conn, region, snapshot_id)
            if user is not None:
                return user
        return None

    # -- lifecycle ---------------------------------------------------------------------------

    def new_row(
        self,
        ctx: RequestContext,
        *,
        size_bytes: int,
        description: str,
        parent: str | None = None,
        client_token: str | None = None,
        request_fingerprint: str | None = None,
        timeout_minutes: int | None = None,
        source: tuple[str, str] | None = None,
    ) -> SnapshotRow:
        """A fresh ``pending`` row (not inserted) owned by the caller."""
        return SnapshotRow(
            snapshot_id=new_id("snap"),
            region=ctx.region,
            owner_id=ctx.account_id,
            volume_id=NO_VOLUME,
            volume_size=gib(size_bytes),
            size_bytes=size_bytes,
            block_size=self.repository(ctx.region).chunk_size,
            state="pending",
            state_message=None,
            progress=0,
            start_time=now(),
            completion_time=None,
            description=description,
            parent_id=parent,
            data_bytes=None,
            stored_bytes=None,
            encrypted=False,
            client_token=client_token,
            request_hash=request_fingerprint,
            timeout_minutes=timeout_minutes,
            timeout_at=now() + timedelta(minutes=timeout_minutes) if timeout_minutes else None,
            source_snapshot_id=source[0] if source else None,
            source_region=source[1] if source else None,
            recycle_bin_enter=None,
            recycle_bin_exit=None,
        )

    def mark_completed(self, conn: sa.Connection, row: SnapshotRow) -> SnapshotRow:
        """Record a snapshot whose manifest is now in the store: sizes, state, progress."""
        repo = self.repository(row.region)
        manifest = repo.manifest(row.snapshot_id)
        data = sum(manifest.chunk_length(i) for i in manifest.entries)
        try:
            stored = repo.usage([row.snapshot_id]).snapshots[0].stored
        except StoreError:
            stored = None
        values: dict[str, Any] = {
            "state": "completed",
            "state_message": None,
            "progress": 100,
            "completion_time": now(),
            "data_bytes": data,
            "stored_bytes": stored,
            "size_bytes": manifest.size,
            "volume_size": gib(manifest.size),
        }
        rows.update_snapshot(conn, row.snapshot_id, **values)
        return replace(row, **values)

    def mark_error(self, conn: sa.Connection, row: SnapshotRow, message: str) -> SnapshotRow:
        values: dict[str, Any] = {"state": "error", "state_message": message[:255]}
        rows.update_snapshot(conn, row.snapshot_id, **values)
        return replace(row, **values)

    def create_from_file(
        self,
        ctx: RequestContext,
        path: Path,
        *,
        description: str,
        parent: str | None = None,
        tags: dict[str, str] | None = None,
        progress: Progress | None = None,
    ) -> SnapshotRow:
        """Snapshot a local disk file (raw or qcow2) into a new completed snapshot of the caller.

        ``parent`` (a snapshot in the caller's region) makes it incremental. On failure the
        row is removed and the error re-raised (nothing is left visible).
        """
        size = Path(path).stat().st_size
        row = self.new_row(ctx, size_bytes=size, description=check_description(description))
        row = replace(row, parent_id=parent)
        with self.catalog.begin() as conn:
            rows.insert_snapshot(conn, row)
            if tags:
                self.tags.set_tags(conn, ctx, "snapshot", row.snapshot_id, tags)
        try:
            self.repository(ctx.region).snapshot_file(
                path, row.snapshot_id, parent=parent, progress=progress
            )
            with self.catalog.begin() as conn:
                return self.mark_completed(conn, row)
        except BaseException:
            with self.catalog.begin() as conn:
                rows.delete_snapshot(conn, row.snapshot_id)
                self.tags.forget(conn, ctx.region, row.snapshot_id)
            raise

    # -- copies ----------------------------------------------------------------------------

    def new_copy_row(
        self,
        conn: sa.Connection,
        ctx: RequestContext,
        source: SnapshotRow,
        *,
        description: str,
        tags: Mapping[str, str] | None = None,
    ) -> SnapshotRow:
        """Insert a ``pending`` copy of ``source`` (any region) for the caller, in ``conn``.

        The caller has checked that it may read ``source``. Its data moves with
        :meth:`copy_data`. The copy's parent is the caller-region copy of ``source``'s
        parent when one exists (so lineage and ListChangedBlocks work there).
        """
        parent = None
        if source.region != ctx.region and source.parent_id is not None:
            parent = self._copy_of(conn, ctx.region, source.region, source.parent_id)
        row = self.new_row(
            ctx,
            size_bytes=source.size_bytes,
            description=description,
            parent=parent,
            source=(source.snapshot_id, source.region),
        )
        row = replace(row, volume_size=source.volume_size)
        rows.insert_snapshot(conn, row)
        if tags:
            self.tags.set_tags(conn, ctx, "snapshot", row.snapshot_id, tags)
        return row

    @staticmethod
    def _copy_of(
        conn: sa.Connection, region: str, source_region: str, source_id: str
    ) -> str | None:
        """A completed snapshot in ``region`` copied from ``source_region``/``source_id``."""
        table = rows.snapshots
        query = sa.select(table.c.snapshot_id).where(
            table.c.region == region,
            table.c.source_region == source_region,
            table.c.source_snapshot_id == source_id,
            table.c.state == "completed",
        )
        return conn.execute(query.limit(1)).scalar_one_or_none()

    def copy_data(self, region: str, snapshot_id: str) -> TransferReport | None:
        """Move a pending copy's data from its source region's store; mark it completed.

        Idempotent (a task re-runs it after a restart): chunks that arrived before are not
        moved again and a completed copy is left alone (None). On failure the row goes to
        ``error`` with the reason and the exception propagates. A copy deleted meanwhile
        leaves no manifest behind.
        """
        with self.catalog.begin() as conn:
            row = rows.get_snapshot(conn, region, snapshot_id)
        if row is None or row.state == "completed":
            return None
        if row.state != "pending" or row.source_snapshot_id is None or row.source_region is None:
            raise StoreError(row.state_message or f"snapshot {snapshot_id} is not a pending copy")
        source = self.repository(row.source_region)
        dest = self.repository(region)
        parent = row.parent_id if row.parent_id and dest.exists(row.parent_id) else None
        try:
            report = transfer_snapshot(
                source,
                row.source_snapshot_id,
                dest,
                snapshot_id,
                parent=parent,
                progress=_CopyProgress(self.catalog, row),
            )
        except Exception as exc:
            reason = (
                f"The source snapshot {row.source_snapshot_id} no longer exists"
                if isinstance(exc, SnapshotNotFoundError)
                else f"copy failed: {exc}"
            )
            with self.catalog.begin() as conn:
                current = rows.get_snapshot(conn, region, snapshot_id)
                if current is not None:
                    self.mark_error(conn, current, reason)
            raise StoreError(reason) from exc
        with self.catalog.begin() as conn:
            current = rows.get_snapshot(conn, region, snapshot_id)
            if current is None:  # deleted while its data moved: the manifest goes too
                after_commit(conn, lambda: dest.delete_snapshot(snapshot_id))
                return report
            self.mark_completed(conn, current)
            rows.update_snapshot(
                conn,
                snapshot_id,
                state_message=(
                    f"Copied from {row.source_region}: {report.bytes_moved} of "
                    f"{report.bytes_needed} bytes moved; {report.bytes_skipped} bytes "
                    "already present"
                )[:255],
            )
        return report

    def delete(self, conn: sa.Connection, ctx: RequestContext, snapshot_id: str) -> None:
        """Delete the caller's snapshot inside ``conn``'s transaction (EC2 checks included).

        When an ``EBS_SNAPSHOT`` retention rule of the owner covers the (completed) snapshot,
        it goes to the recycle bin for the rule's retention instead (row, tags, grants and
        data kept; see ``snapshot_bin``). Otherwise the manifest leaves the store once the
        transaction commits; chunks go at GC.
        """
        row = self.owned(conn, ctx, snapshot_id)
        user = self.in_use_by(conn, ctx.region, snapshot_id)
        if user is not None:
            raise ClientError(
                "InvalidSnapshot.InUse",
                f"The snapshot {snapshot_id} is currently in use by {user}",
            )
        kept = None
        if row.state == "completed":
            tags = self.tags.tags_of(conn, row.region, [snapshot_id]).get(snapshot_id, {})
            kept = retention(conn, row.region, row.owner_id, "EBS_SNAPSHOT", tags)
        if kept is None:
            self.forget(conn, row)
            return
        at = now()
        rows.update_snapshot(conn, snapshot_id, recycle_bin_enter=at, recycle_bin_exit=at + kept)

    def forget(self, conn: sa.Connection, row: SnapshotRow) -> None:
        """Remove the row, its grants and tags; drop the manifest after commit."""
        rows.delete_snapshot(conn, row.snapshot_id)
        self.tags.forget(conn, row.region, row.snapshot_id)
        repo = self.repository(row.region)

        def drop_manifest() -> None:
            # Pending or failed snapshots never had a manifest.
            with contextlib.suppress(SnapshotNotFoundError):
                repo.delete_snapshot(row.snapshot_id)

        after_commit(conn, drop_manifest)

    def delete_for_image(self, conn: sa.Connection, ctx: RequestContext, snapshot_id: str) -> None:
        """DeregisterImage's DeleteAssociatedSnapshots: same rules as DeleteSnapshot."""
        self.delete(conn, ctx, snapshot_id)


class _CopyProgress:
    """A transfer's progress callback: the row's Progress and StateMessage, rate-limited.

    Called from the transfer's worker threads; an update that would come sooner than
    ``PROGRESS_INTERVAL`` after the last one (or while another thread writes) is skipped.
    """

    def __init__(self, catalog: Catalog, row: SnapshotRow) -> None:
        self._catalog = catalog
        self._row = row
        self._lock = threading.Lock()
        self._last = 0.0

    def __call__(self, moved: int, needed: int) -> None:
        now_ = time.monotonic()
        if now_ - self._last < PROGRESS_INTERVAL or not self._lock.acquire(blocking=False):
            return
        try:
            self._last = now_
            percent = min(99, moved * 100 // needed) if needed else 99
            message = f"Copying from {self._row.source_region}: {moved} of {needed} bytes moved"
            with self._catalog.begin() as conn:
                conn.execute(
                    rows.snapshots.update()
                    .where(
                        rows.snapshots.c.snapshot_id == self._row.snapshot_id,
                        rows.snapshots.c.state == "pending",
                    )
                    .values(progress=percent, state_message=message)
                )
        finally:
            self._lock.release()
