"""Test helpers shipped with the store: a fault-injecting backend wrapper.

``FaultyBackend`` wraps any backend and fails on purpose: after a byte budget is used up
(disk full), on the n-th put, or on gets of chosen names. Other layers' tests use it to check
that a store failure becomes a clean error.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator

from .backend import Backend, BlobInfo, BytesLike
from .errors import BackendError, StoreFullError


class FaultyBackend(Backend):
    """Delegate to ``inner`` but inject faults.

    ``space``: bytes that puts may still write before every further put raises
    ``StoreFullError`` (``None``: unlimited). ``fail_put_after``: number of puts that succeed
    before every further put raises ``BackendError``. ``fail_put_prefix``: puts of names
    starting with it raise ``BackendError``. ``fail_get``: names whose get fails.
    """

    def __init__(
        self,
        inner: Backend,
        *,
        space: int | None = None,
        fail_put_after: int | None = None,
        fail_get: Iterable[str] = (),
        fail_put_prefix: str | None = None,
    ) -> None:
        self.fail_put_prefix = fail_put_prefix
        self.inner = inner
        self.space = space
        self.fail_put_after = fail_put_after
        self.fail_get = set(fail_get)
        self.puts = 0
        self._lock = threading.Lock()

    def put(self, name: str, *parts: BytesLike) -> None:
        size = sum(memoryview(p).nbytes for p in parts)
        with self._lock:
            if (self.fail_put_after is not None and self.puts >= self.fail_put_after) or (
                self.fail_put_prefix is not None and name.startswith(self.fail_put_prefix)
            ):
                raise BackendError(f"put {name}: injected failure")
            if self.space is not None:
                if size > self.space:
                    raise StoreFullError(f"put {name}: no space left (injected)")
                self.space -= size
            self.puts += 1
        self.inner.put(name, *parts)

    def get(self, name: str) -> bytes:
        if name in self.fail_get:
            raise BackendError(f"get {name}: injected failure")
        return self.inner.get(name)

    def get_range(self, name: str, offset: int, length: int) -> bytes:
        if name in self.fail_get:
            raise BackendError(f"get {name}: injected failure")
        return self.inner.get_range(name, offset, length)

    def prefetch(self, name: str, offset: int, length: int) -> None:
        self.inner.prefetch(name, offset, length)

    def has_many(self, names: Iterable[str]) -> set[str]:
        return self.inner.has_many(names)

    def list(self, prefix: str = "") -> Iterator[BlobInfo]:
        return self.inner.list(prefix)

    def delete(self, name: str) -> None:
        self.inner.delete(name)

    def flush(self) -> None:
        self.inner.flush()

    def purge_incomplete(self, older_than: float) -> int:
        return self.inner.purge_incomplete(older_than)
