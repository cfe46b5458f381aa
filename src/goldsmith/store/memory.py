"""The in-memory backend: a dict of blobs. For tests, and the reference behaviour."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Iterator

from .backend import Backend, BlobInfo, BytesLike, check_name
from .errors import BlobNotFoundError


class MemoryBackend(Backend):
    """Blobs in a dict; ``clock`` gives modification times (injectable for GC tests)."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._blobs: dict[str, tuple[bytes, float]] = {}
        self._lock = threading.Lock()
        self._clock = clock

    def put(self, name: str, *parts: BytesLike) -> None:
        data = b"".join(bytes(p) for p in parts) if len(parts) != 1 else bytes(parts[0])
        with self._lock:
            self._blobs[check_name(name)] = (data, self._clock())

    def get(self, name: str) -> bytes:
        with self._lock:
            try:
                return self._blobs[check_name(name)][0]
            except KeyError:
                raise BlobNotFoundError(name) from None

    def has_many(self, names: Iterable[str]) -> set[str]:
        with self._lock:
            return {n for n in names if check_name(n) in self._blobs}

    def list(self, prefix: str = "") -> Iterator[BlobInfo]:
        with self._lock:
            items = [(n, b) for n, b in self._blobs.items() if n.startswith(prefix)]
        for name, (data, mtime) in items:
            yield BlobInfo(name, len(data), mtime)

    def delete(self, name: str) -> None:
        with self._lock:
            self._blobs.pop(check_name(name), None)

    def set_mtime(self, name: str, mtime: float) -> None:
        """Test hook: pretend ``name`` was written at ``mtime``."""
        with self._lock:
            self._blobs[name] = (self._blobs[name][0], mtime)

    def __repr__(self) -> str:
        return f"MemoryBackend({len(self._blobs)} blobs)"
