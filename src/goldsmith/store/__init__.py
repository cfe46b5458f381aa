"""The snapshot store: content-addressed, incremental, deduplicated disk snapshots.

See ``repository.Repository`` for the API and docs/design/store.md for the format.
"""

from .backend import Backend, BlobInfo
from .errors import (
    BackendError,
    BlobNotFoundError,
    CorruptionError,
    FormatError,
    LineageError,
    RepositoryBusyError,
    SnapshotExistsError,
    SnapshotNotFoundError,
    StoreError,
    StoreFullError,
)
from .local import LocalBackend
from .maintenance import CheckIssue, CheckReport, GcReport, SnapshotUsage, UsageReport
from .memory import MemoryBackend
from .reader import SnapshotReader
from .repository import Repository
from .writer import SnapshotInfo, SnapshotWriter

__all__ = [
    "Backend",
    "BackendError",
    "BlobInfo",
    "BlobNotFoundError",
    "CheckIssue",
    "CheckReport",
    "CorruptionError",
    "FormatError",
    "GcReport",
    "LineageError",
    "LocalBackend",
    "MemoryBackend",
    "Repository",
    "RepositoryBusyError",
    "SnapshotExistsError",
    "SnapshotInfo",
    "SnapshotNotFoundError",
    "SnapshotReader",
    "SnapshotUsage",
    "SnapshotWriter",
    "StoreError",
    "StoreFullError",
    "UsageReport",
]
