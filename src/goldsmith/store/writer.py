"""Writing snapshots: the streaming ``SnapshotWriter`` and the file pipeline on top of it.

``SnapshotWriter`` takes whole chunks at arbitrary indexes (EBS PutSnapshotBlock semantics:
512 KiB blocks, any order, from several threads) and commits a manifest on ``complete``.
``snapshot_file`` feeds it from a file through a bounded pipeline: the calling thread reads
chunks into a fixed pool of reusable buffers (holes skipped with SEEK_DATA/SEEK_HOLE, zero
chunks dropped), worker threads hash, dedup, compress and put them. BLAKE3, zstd and file
I/O release the GIL, so the workers use every core while memory stays at ``pool × chunk``.
"""

from __future__ import annotations

import os
import queue
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

from .backend import Backend, BytesLike
from .chunks import ChunkStore, LooseChunks
from .formats import ChunkCodec, Manifest, digest
from .locks import Lock

#: progress(bytes_done, bytes_total), in logical bytes of the disk.
Progress = Callable[[int, int], None]


@dataclass(frozen=True, slots=True)
class SnapshotInfo:
    """What a completed snapshot is, and what writing it cost."""

    snapshot_id: str
    parent: str | None
    size: int
    chunk_size: int
    created: float
    #: non-zero chunks in the snapshot
    data_chunks: int
    #: chunks read and hashed by this run
    chunks_hashed: int
    #: chunks this run stored (absent from the repository before)
    chunks_written: int
    #: stored (compressed) bytes this run added
    bytes_written: int
    seconds: float


class SnapshotWriter:
    """Builds one snapshot block by block; ``complete`` makes it visible, atomically.

    Blocks not written keep the parent's content (or are zero without a parent). A written
    chunk is stored (durable and visible to dedup) at the latest when ``complete`` returns;
    the snapshot exists only after ``complete``. Thread-safe. Use as a context manager: leaving
    the block without ``complete`` aborts (nothing visible; stored chunks wait for GC).
    """

    def __init__(
        self,
        backend: Backend,
        codec: ChunkCodec,
        lock: Lock,
        snapshot_id: str,
        size: int,
        chunk_size: int,
        parent: Manifest | None,
        inherit: bool,
        chunks: ChunkStore | None = None,
    ) -> None:
        self.backend = backend
        self.chunks = chunks if chunks is not None else LooseChunks(backend)
        self._session = self.chunks.session()
        self.codec = codec
        self.lock = lock
        self.snapshot_id = snapshot_id
        self.size = size
        self.chunk_size = chunk_size
        self.parent = parent
        self._count = -(-size // chunk_size)
        self._zero = bytes(chunk_size)
        self._parent_entries = parent.entries if parent is not None else {}
        self.entries: dict[int, bytes] = {}
        if inherit:
            self.entries = {i: d for i, d in self._parent_entries.items() if i < self._count}
        self._known: set[bytes] = set(self._parent_entries.values())
        self._mutex = threading.Lock()
        self._hashed = self._written = self._bytes_written = 0
        self._start = time.monotonic()
        self._done = False

    def chunk_length(self, index: int) -> int:
        return min(self.chunk_size, self.size - index * self.chunk_size)

    def write_block(self, index: int, data: BytesLike) -> None:
        """Set chunk ``index`` to ``data`` (exactly ``chunk_length(index)`` bytes)."""
        if self._done:
            raise RuntimeError("snapshot writer already completed or aborted")
        if not 0 <= index < self._count:
            raise ValueError(f"block index {index} out of range 0..{self._count - 1}")
        n = memoryview(data).nbytes
        if n != self.chunk_length(index):
            raise ValueError(f"block {index} must be {self.chunk_length(index)} bytes, got {n}")
        if data == self._zero[:n] if n != self.chunk_size else data == self._zero:
            with self._mutex:
                self.entries.pop(index, None)
            return
        self.store_chunk(index, data)

    def set_zero(self, index: int) -> None:
        """Mark chunk ``index`` all-zero (a hole)."""
        with self._mutex:
            self.entries.pop(index, None)

    def store_chunk(self, index: int, data: BytesLike, *, buffered: bool = False) -> None:
        """Hash a non-zero chunk, store it unless already present, and record it.

        The chunk is stored before this returns (as ``write_block`` promises, so an upload
        can resume after a restart). ``buffered``: it may instead wait in an open pack until
        ``complete`` — the file pipeline's mode, where a crash means a retry anyway.
        """
        d = digest(data)
        with self._mutex:
            self._hashed += 1
            self.entries[index] = d
            if self._parent_entries.get(index) == d or d in self._known:
                return
            self._known.add(d)  # claim it: a concurrent twin need not write it again
        if self.chunks.contains(d):
            return
        header, payload = self.codec.encode(data)
        try:
            self._session.put(d, header, payload, now=not buffered)
        except BaseException:
            with self._mutex:
                self._known.discard(d)
            raise
        with self._mutex:
            self._written += 1
            self._bytes_written += len(header) + memoryview(payload).nbytes

    def refresh_lock(self) -> None:
        """Keep the writer lock live during long writes (rate-limited)."""
        self.lock.refresh()

    def complete(self) -> SnapshotInfo:
        """Flush chunks, check the lock, put the manifest, flush; return the snapshot."""
        if self._done:
            raise RuntimeError("snapshot writer already completed or aborted")
        try:
            self._session.flush()  # every chunk durable before the manifest that names it
            self.lock.refresh(force=True)  # raises if GC broke our lock as stale
            manifest = Manifest(
                self.snapshot_id,
                self.parent.snapshot_id if self.parent else None,
                self.size,
                self.chunk_size,
                time.time(),
                dict(self.entries),
            )
            self.backend.put(f"snapshots/{self.snapshot_id}", manifest.encode())
            self.backend.flush()
        finally:
            self._finish()
        return SnapshotInfo(
            self.snapshot_id,
            manifest.parent,
            self.size,
            self.chunk_size,
            manifest.created,
            len(manifest.entries),
            self._hashed,
            self._written,
            self._bytes_written,
            time.monotonic() - self._start,
        )

    def abort(self) -> None:
        """Give up: no manifest is written; chunks already stored are left for GC."""
        if not self._done:
            self._finish()

    def _finish(self) -> None:
        self._done = True
        try:
            self._session.close()
        finally:
            self.lock.release()

    def __enter__(self) -> SnapshotWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.abort()


def data_chunks(fd: int, size: int, chunk_size: int) -> Iterator[int]:
    """Indexes of chunks that overlap data extents (holes are never read)."""
    pos, last = 0, -1
    while pos < size:
        try:
            start = os.lseek(fd, pos, os.SEEK_DATA)
        except OSError:  # ENXIO: only a hole remains; EINVAL: no SEEK_DATA support
            if pos == 0 and last == -1 and not _seek_data_supported(fd):
                yield from range(-(-size // chunk_size))
            return
        end = min(os.lseek(fd, start, os.SEEK_HOLE), size)
        for i in range(max(start // chunk_size, last + 1), -(-end // chunk_size)):
            yield i
            last = i
        pos = max(end, (last + 1) * chunk_size)


def _seek_data_supported(fd: int) -> bool:
    try:
        os.lseek(fd, 0, os.SEEK_HOLE)
    except OSError:
        return False
    return True


def changed_chunks(
    ranges: Iterable[tuple[int, int]], size: int, chunk_size: int, parent_size: int
) -> list[int]:
    """Chunk indexes touched by (offset, length) ranges, plus any beyond the parent's end."""
    count = -(-size // chunk_size)
    out: set[int] = set()
    for off, length in ranges:
        if off < 0 or length < 0:
            raise ValueError(f"bad changed range ({off}, {length})")
        if length == 0 or off >= size:
            continue
        end = min(off + length, size)
        out.update(range(off // chunk_size, -(-end // chunk_size)))
    # The parent's last chunk may have been short: re-read it too, with every new one.
    out.update(range(max(parent_size // chunk_size, 0), count))
    return sorted(out)


def _read_full(fd: int, buf: memoryview, offset: int) -> int:
    done = 0
    while done < len(buf):
        n = os.preadv(fd, [buf[done:]], offset + done)
        if n == 0:
            break
        done += n
    return done


def run_file_pipeline(
    writer: SnapshotWriter,
    fd: int,
    indexes: list[int],
    workers: int,
    progress: Progress | None,
) -> None:
    """Read chunks ``indexes`` of ``fd`` and feed them to ``writer`` on a thread pool."""
    cs = writer.chunk_size
    pool: queue.SimpleQueue[bytearray] = queue.SimpleQueue()
    for _ in range(2 * workers + 2):
        pool.put(bytearray(cs))
    zero = bytes(cs)
    errors: list[BaseException] = []
    total, done = writer.size, writer.size - sum(writer.chunk_length(i) for i in indexes)

    def work(index: int, buf: bytearray, n: int) -> None:
        try:
            writer.store_chunk(index, memoryview(buf)[:n] if n != cs else buf, buffered=True)
        except BaseException as exc:
            errors.append(exc)
        finally:
            pool.put(buf)

    futures: list[Future[None]] = []
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="gs-snap") as ex:
        for index in indexes:
            buf = pool.get()
            if errors:
                break
            n = writer.chunk_length(index)
            got = _read_full(fd, memoryview(buf)[:n], index * cs)
            if got < n:  # the file shrank under us: the rest reads as zeros
                buf[got:n] = bytes(n - got)
            if (buf == zero) if n == cs else (buf[:n] == zero[:n]):
                writer.set_zero(index)
                pool.put(buf)
            else:
                futures.append(ex.submit(work, index, buf, n))
            done += n
            if progress is not None:
                progress(done, total)
            if len(futures) > 4096:
                futures = [f for f in futures if not f.done()]
            writer.refresh_lock()
    for f in futures:
        f.result()
    if errors:
        raise errors[0]
