"""The backend interface: a flat namespace of immutable, named blobs.

A backend stores byte strings under ``/``-separated names (``chunks/ab/ab12…``). The
repository layer relies only on this contract, which an S3-compatible object store can meet:

* ``put`` is atomic: a concurrent or later reader sees the whole blob or no blob; a crash
  during ``put`` leaves nothing visible. Putting an existing name replaces it atomically
  (the repository only does so for lock blobs).
* ``flush`` is the durability barrier: every ``put`` that returned before it survives a power
  loss once it returns (a no-op where ``put`` is already durable, as on S3).
* ``get_range`` reads part of a blob (an S3 ranged GET); a negative offset counts from the
  end (a suffix range), and a range reaching past the end is cut short.
* ``has_many`` is the batched existence check (one request per batch on remote stores).
* ``list`` yields every visible blob under a prefix with size and modification time; blobs of
  interrupted puts are never listed.
* ``delete`` of a missing name is not an error (deletes are idempotent).
* ``purge_incomplete`` removes leftovers of interrupted puts older than a given age.

Errors: ``BlobNotFoundError`` from ``get``, ``StoreFullError`` when out of space, any other
I/O failure as ``BackendError``.
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

#: Anything with the buffer protocol that the backends accept.
BytesLike = bytes | bytearray | memoryview

_NAME = re.compile(r"^[A-Za-z0-9_-][A-Za-z0-9._-]*(/[A-Za-z0-9_-][A-Za-z0-9._-]*)*$")


def check_name(name: str) -> str:
    """Return ``name`` if it is a valid blob name, else raise ``ValueError``.

    Valid: ``/``-separated segments of letters, digits, ``.``, ``_``, ``-``, none starting
    with ``.`` (so ``..`` and temp files can never be named).
    """
    if len(name) > 512 or not _NAME.match(name):
        raise ValueError(f"invalid blob name: {name!r}")
    return name


@dataclass(frozen=True, slots=True)
class BlobInfo:
    """A listed blob: its name, size in bytes and modification time (epoch seconds)."""

    name: str
    size: int
    mtime: float


class Backend(ABC):
    """Storage of named immutable blobs. See the module docstring for the contract."""

    @abstractmethod
    def put(self, name: str, *parts: BytesLike) -> None:
        """Store the concatenation of ``parts`` under ``name``, atomically."""

    @abstractmethod
    def get(self, name: str) -> bytes:
        """Return the blob's bytes; raise ``BlobNotFoundError`` if it does not exist."""

    def get_range(self, name: str, offset: int, length: int) -> bytes:
        """``length`` bytes of the blob at ``offset`` (negative: from the end), cut at its end.

        ``BlobNotFoundError`` if it does not exist. The default reads the whole blob.
        """
        blob = self.get(name)
        start = max(len(blob) + offset, 0) if offset < 0 else offset
        return blob[start : start + length]

    def prefetch(self, name: str, offset: int, length: int) -> None:  # noqa: B027 - a hint
        """Hint that this range of ``name`` will be read soon (no-op by default)."""

    @abstractmethod
    def has_many(self, names: Iterable[str]) -> set[str]:
        """Return the subset of ``names`` that exist."""

    def has(self, name: str) -> bool:
        """Return whether ``name`` exists."""
        return bool(self.has_many([name]))

    @abstractmethod
    def list(self, prefix: str = "") -> Iterator[BlobInfo]:
        """Yield every blob whose name starts with ``prefix`` (in no particular order)."""

    @abstractmethod
    def delete(self, name: str) -> None:
        """Remove ``name`` if it exists."""

    def flush(self) -> None:  # noqa: B027 - an optional hook, no-op by default
        """Make every completed ``put`` durable; no-op where puts are durable already."""

    def purge_incomplete(self, older_than: float) -> int:
        """Remove leftovers of interrupted puts older than ``older_than`` seconds; count them."""
        del older_than
        return 0

    def close(self) -> None:  # noqa: B027 - an optional hook, no-op by default
        """Release resources (connections, file handles)."""
