"""The store's exception tree: every way a store operation can fail.

::

    StoreError                    anything the store raises on purpose
    ├── BackendError              the backend could not do an I/O operation
    │   ├── BlobNotFoundError     get() of a name that does not exist
    │   └── StoreFullError        no space left (ENOSPC, EDQUOT, a quota)
    ├── FormatError               a repository/config version this code does not know
    ├── SnapshotNotFoundError     no manifest for that snapshot id
    ├── SnapshotExistsError       snapshot id already used
    ├── CorruptionError           a chunk or manifest is missing, truncated or altered
    ├── LineageError              diff of snapshots that are not of one lineage
    └── RepositoryBusyError       a lock could not be taken in time (GC vs writers)

The service layer maps these to EC2 errors; the store itself knows nothing of EC2.
"""

from __future__ import annotations


class StoreError(Exception):
    """Base of every error the store raises on purpose."""


class BackendError(StoreError):
    """A backend operation failed (I/O error, permission, network)."""


class BlobNotFoundError(BackendError):
    """The named blob does not exist."""

    def __init__(self, name: str) -> None:
        super().__init__(f"blob not found: {name}")
        self.name = name


class StoreFullError(BackendError):
    """The backend has no space left; nothing partial was made visible."""


class FormatError(StoreError):
    """The repository or a blob uses a format version this code does not understand."""


class SnapshotNotFoundError(StoreError):
    """No snapshot (manifest) with this id exists."""

    def __init__(self, snapshot_id: str) -> None:
        super().__init__(f"snapshot not found: {snapshot_id}")
        self.snapshot_id = snapshot_id


class SnapshotExistsError(StoreError):
    """A snapshot with this id already exists; ids are never reused."""

    def __init__(self, snapshot_id: str) -> None:
        super().__init__(f"snapshot already exists: {snapshot_id}")
        self.snapshot_id = snapshot_id


class CorruptionError(StoreError):
    """Stored data is missing or does not match its hash.

    ``snapshot_id`` and ``offset`` (byte offset in the disk) say where it was found when the
    read was on behalf of a snapshot; ``blob`` names the damaged blob.
    """

    def __init__(
        self,
        detail: str,
        *,
        blob: str | None = None,
        snapshot_id: str | None = None,
        offset: int | None = None,
    ) -> None:
        where = []
        if snapshot_id is not None:
            where.append(f"snapshot {snapshot_id}")
        if offset is not None:
            where.append(f"offset {offset}")
        if blob is not None:
            where.append(f"blob {blob}")
        super().__init__(f"{detail} ({', '.join(where)})" if where else detail)
        self.detail = detail
        self.blob = blob
        self.snapshot_id = snapshot_id
        self.offset = offset


class LineageError(StoreError):
    """The snapshots are not of one lineage (neither is an ancestor of the other)."""


class RepositoryBusyError(StoreError):
    """A writer or GC lock could not be acquired (or was lost) within the allowed time."""
