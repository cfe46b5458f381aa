"""Reading snapshots: verified chunk reads, random access and restore to a sparse file.

Every chunk is checked against its hash on the way out; a missing or damaged chunk raises
``CorruptionError`` with the snapshot id and the byte offset of the chunk. Zero chunks are
never stored, so they read as zeros and restore as holes.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor

from .backend import Backend
from .chunks import ChunkStore, LooseChunks
from .errors import BlobNotFoundError, CorruptionError
from .formats import ChunkCodec, Manifest

Progress = Callable[[int, int], None]


class SnapshotReader:
    """Random access to one snapshot. Thread-safe; keeps a small cache of decoded chunks."""

    def __init__(
        self,
        backend: Backend,
        codec: ChunkCodec,
        manifest: Manifest,
        cache_chunks: int = 8,
        chunks: ChunkStore | None = None,
    ) -> None:
        self.backend = backend
        self.chunks = chunks if chunks is not None else LooseChunks(backend)
        self.codec = codec
        self.manifest = manifest
        self._cache: OrderedDict[int, bytes] = OrderedDict()
        self._cache_chunks = cache_chunks
        self._mutex = threading.Lock()

    @property
    def size(self) -> int:
        return self.manifest.size

    def read_chunk(self, index: int) -> bytes:
        """The verified bytes of chunk ``index`` (zeros for a zero chunk)."""
        m = self.manifest
        if not 0 <= index < m.chunk_count:
            raise ValueError(f"chunk index {index} out of range 0..{m.chunk_count - 1}")
        d = m.entries.get(index)
        if d is None:
            return bytes(m.chunk_length(index))
        offset = index * m.chunk_size
        try:
            blob = self.chunks.get(d)
        except BlobNotFoundError:
            raise CorruptionError(
                "missing chunk",
                blob=self.chunks.location(d),
                snapshot_id=m.snapshot_id,
                offset=offset,
            ) from None
        try:
            data = self.codec.decode(blob, d)
        except ValueError as exc:
            raise CorruptionError(
                f"corrupt chunk: {exc}",
                blob=self.chunks.location(d),
                snapshot_id=m.snapshot_id,
                offset=offset,
            ) from None
        if len(data) != m.chunk_length(index):
            raise CorruptionError(
                "chunk has the wrong length",
                blob=self.chunks.location(d),
                snapshot_id=m.snapshot_id,
                offset=offset,
            )
        return data

    def _cached_chunk(self, index: int) -> bytes:
        with self._mutex:
            data = self._cache.get(index)
            if data is not None:
                self._cache.move_to_end(index)
                return data
        data = self.read_chunk(index)
        with self._mutex:
            self._cache[index] = data
            while len(self._cache) > self._cache_chunks:
                self._cache.popitem(last=False)
        return data

    def read(self, offset: int, length: int) -> bytes:
        """``length`` bytes at ``offset``; the range must lie within the snapshot."""
        if offset < 0 or length < 0 or offset + length > self.size:
            raise ValueError(f"read ({offset}, {length}) outside snapshot of {self.size} bytes")
        cs = self.manifest.chunk_size
        out = bytearray()
        pos, end = offset, offset + length
        while pos < end:
            index = pos // cs
            chunk = self._cached_chunk(index)
            lo = pos - index * cs
            hi = min(len(chunk), end - index * cs)
            out += chunk[lo:hi]
            pos += hi - lo
        return bytes(out)

    def restore(
        self, dest: str | os.PathLike[str], workers: int, progress: Progress | None = None
    ) -> None:
        """Write the snapshot to ``dest`` as a sparse raw file (holes for zero chunks).

        ``dest`` is created or truncated; on error it is removed.
        """
        m = self.manifest
        fd = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
        try:
            os.ftruncate(fd, m.size)
            self._restore_into(fd, workers, progress)
        except BaseException:
            os.close(fd)
            with contextlib.suppress(OSError):
                os.unlink(dest)
            raise
        os.close(fd)

    def _restore_into(self, fd: int, workers: int, progress: Progress | None) -> None:
        m = self.manifest
        indexes = sorted(m.entries)
        zero_bytes = m.size - sum(m.chunk_length(i) for i in indexes)
        done = zero_bytes

        def work(index: int) -> int:
            data = self.read_chunk(index)
            view = memoryview(data)
            off = index * m.chunk_size
            while view:
                n = os.pwrite(fd, view, off)
                view, off = view[n:], off + n
            return len(data)

        window = 2 * workers + 2
        pending: list[Future[int]] = []
        ahead = max(32, 2 * window)  # chunks hinted ahead of the reads (~16 MiB)
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="gs-restore") as ex:
            try:
                for k, index in enumerate(indexes):
                    if k % (ahead // 2) == 0:
                        self.chunks.prefetch([m.entries[i] for i in indexes[k : k + ahead]])
                    pending.append(ex.submit(work, index))
                    if len(pending) >= window:
                        done += pending.pop(0).result()
                        if progress is not None:
                            progress(done, m.size)
                while pending:
                    done += pending.pop(0).result()
            except BaseException:
                for f in pending:
                    f.cancel()
                raise
        if progress is not None:
            progress(m.size, m.size)
