"""Where chunk records live: one blob per chunk (format v1) or many per pack file (v2).

Both layouts hold the same chunk records (the chunk encoding of ``formats.ChunkCodec``); they
differ in how a digest finds its bytes and in what GC deletes:

* ``LooseChunks`` (repository version 1): ``chunks/<h0h1>/<hex>``, one blob per chunk.
* ``PackedChunks`` (repository version 2): ``packs/<h0h1>/<id>`` holds records back to back,
  then an index of (digest, offset, length) and a checksummed footer. An in-memory index
  digest → location is built from the packs' tails; it is refreshed when a writer starts
  (under its writer lock, so GC cannot change packs meanwhile) and when a lookup misses.

Writers put chunks through a ``ChunkSession``. A chunk is durable and visible only once the
session's ``flush`` has returned (for packs: its pack was written to a temp file, fsynced and
renamed by ``Backend.put``, and ``Backend.flush`` made the rename durable). A session whose
pack write failed refuses to ``flush`` ever after, so a writer cannot commit a manifest over
chunks that were lost with the pack.
"""

from __future__ import annotations

import secrets
import threading
from abc import ABC, abstractmethod
from dataclasses import dataclass, field

from .backend import Backend, BytesLike
from .errors import BlobNotFoundError, FormatError
from .formats import (
    PACK_FOOTER,
    chunk_name,
    decode_pack_index,
    digest_of_name,
    encode_pack_index,
    is_pack_name,
    pack_index_length,
    pack_name,
)

#: a pack is rewritten by GC when less than this fraction of its record bytes is live
REPACK_LIVE_FRACTION = 0.5
_TAIL_READ = 64 * 1024
_MASK32 = 0xFFFFFFFF


@dataclass(slots=True)
class Inventory:
    """Every stored chunk (digest → stored bytes) and blobs that could not be understood."""

    sizes: dict[bytes, int] = field(default_factory=dict)
    #: (blob name, reason): names that are not chunk/pack names, unreadable pack indexes
    problems: list[tuple[str, str]] = field(default_factory=list)


Entry = tuple[bytes, int, int]  # chunk digest, record offset, record length


@dataclass(slots=True)
class GcPlan:
    """What GC will do: blobs to delete outright and packs to rewrite without dead records."""

    chunks_before: int = 0
    #: blob name → (stored bytes, the records it holds)
    delete: dict[str, tuple[int, list[Entry]]] = field(default_factory=dict)
    repack: dict[str, tuple[int, list[Entry]]] = field(default_factory=dict)
    chunks_deleted: int = 0
    bytes_freed: int = 0


def classify(
    plan: GcPlan, name: str, size: int, entries: list[Entry], referenced: set[bytes]
) -> None:
    """Add blob ``name`` to ``plan``: delete it if nothing in it is referenced, rewrite it if
    less than ``REPACK_LIVE_FRACTION`` of its record bytes is, else leave it."""
    dead = [e for e in entries if e[0] not in referenced]
    if not dead:
        return
    live = sum(n for d, _o, n in entries if d in referenced)
    if live == 0:
        plan.delete[name] = (size, entries)
        plan.bytes_freed += size
    elif live < REPACK_LIVE_FRACTION * sum(n for _d, _o, n in entries):
        plan.repack[name] = (size, entries)
        plan.bytes_freed += sum(n for _d, _o, n in dead)
    else:
        return
    plan.chunks_deleted += len(dead)


def reclassify(plan: GcPlan, referenced: set[bytes]) -> GcPlan:
    """``plan`` restricted by a grown referenced set (phase 2 of GC)."""
    done = GcPlan(plan.chunks_before)
    for name, (size, entries) in [*plan.delete.items(), *plan.repack.items()]:
        classify(done, name, size, entries, referenced)
    return done


class ChunkSession(ABC):
    """One writer's puts. ``flush`` makes every put so far durable and visible."""

    @abstractmethod
    def put(
        self, chunk_digest: bytes, header: BytesLike, payload: BytesLike, *, now: bool = False
    ) -> None:
        """Store the record ``header + payload`` of chunk ``chunk_digest``.

        The record may be buffered until ``flush``; with ``now`` it is written (and the
        blob fsynced and renamed) before this returns, though its directory entry becomes
        durable only at ``flush`` — the same promise as a single ``Backend.put``.
        """

    @abstractmethod
    def flush(self) -> None:
        """Durability barrier; raises if any put of this session failed."""

    def close(self) -> None:  # noqa: B027 - optional
        """Drop records not yet flushed (abort); they never become visible."""


class ChunkStore(ABC):
    """Chunk records by digest, in one backend."""

    def __init__(self, backend: Backend) -> None:
        self.backend = backend

    def refresh(self) -> None:  # noqa: B027 - only PackedChunks caches
        """See chunks stored by other processes (and forget deleted ones)."""

    @abstractmethod
    def contains(self, chunk_digest: bytes) -> bool:
        """Whether the chunk is stored (as of the last ``refresh`` for cached layouts)."""

    @abstractmethod
    def get(self, chunk_digest: bytes) -> bytes:
        """The chunk's record; ``BlobNotFoundError`` if it is not stored."""

    def prefetch(self, chunk_digests: list[bytes]) -> None:  # noqa: B027 - a hint
        """Hint that these chunks will be read soon (a restore reading ahead)."""

    @abstractmethod
    def location(self, chunk_digest: bytes) -> str:
        """The blob name that holds (or would hold) the chunk, for error messages."""

    @abstractmethod
    def session(self) -> ChunkSession:
        """A new write session."""

    @abstractmethod
    def inventory(self) -> Inventory:
        """Every stored chunk and every blob that is not understood (a full scan)."""

    def sizes(self) -> dict[bytes, int]:
        """Stored bytes of every chunk (for accounting; may use a cached view)."""
        return self.inventory().sizes

    @abstractmethod
    def plan_gc(self, referenced: set[bytes], cutoff: float) -> GcPlan:
        """Phase 1 of GC (no lock): what to remove, given the referenced digests.

        Only blobs last modified before ``cutoff`` (epoch seconds) are touched.
        """

    @abstractmethod
    def execute_gc(self, plan: GcPlan, referenced: set[bytes]) -> GcPlan:
        """Phase 2 (under the exclusive GC lock): carry out ``plan``, keeping ``referenced``.

        ``referenced`` includes chunks of manifests completed since the plan. Returns what
        was actually done.
        """


# -- version 1: one blob per chunk ----------------------------------------------------------


class _LooseSession(ChunkSession):
    def __init__(self, backend: Backend) -> None:
        self.backend = backend

    def put(
        self, chunk_digest: bytes, header: BytesLike, payload: BytesLike, *, now: bool = False
    ) -> None:
        self.backend.put(chunk_name(chunk_digest), header, payload)

    def flush(self) -> None:
        self.backend.flush()


class LooseChunks(ChunkStore):
    """Repository version 1: ``chunks/<h0h1>/<hex>``; the backend is the index."""

    def contains(self, chunk_digest: bytes) -> bool:
        return self.backend.has(chunk_name(chunk_digest))

    def get(self, chunk_digest: bytes) -> bytes:
        return self.backend.get(chunk_name(chunk_digest))

    def location(self, chunk_digest: bytes) -> str:
        return chunk_name(chunk_digest)

    def session(self) -> ChunkSession:
        return _LooseSession(self.backend)

    def inventory(self) -> Inventory:
        inv = Inventory()
        for info in self.backend.list("chunks/"):
            d = digest_of_name(info.name)
            if d is None:
                inv.problems.append((info.name, f"not a chunk name: {info.name}"))
            else:
                inv.sizes[d] = info.size
        return inv

    def plan_gc(self, referenced: set[bytes], cutoff: float) -> GcPlan:
        plan = GcPlan()
        for info in self.backend.list("chunks/"):
            plan.chunks_before += 1
            d = digest_of_name(info.name)
            if d is not None and info.mtime < cutoff:
                classify(plan, info.name, info.size, [(d, 0, info.size)], referenced)
        return plan

    def execute_gc(self, plan: GcPlan, referenced: set[bytes]) -> GcPlan:
        done = reclassify(plan, referenced)  # a single-record blob is never repacked
        for name in done.delete:
            self.backend.delete(name)
        self.backend.flush()
        return done


# -- version 2: pack files ------------------------------------------------------------------


class _PackSession(ChunkSession):
    """Appends records to an in-memory pack; a full pack is written by the putting thread.

    Other threads keep appending to a fresh buffer meanwhile, so pack writes (and their
    fsync) overlap with hashing and compression.
    """

    def __init__(self, store: PackedChunks) -> None:
        self.store = store
        self._cond = threading.Condition()
        self._buf: bytearray | None = None
        self._used = 0
        self._entries: list[Entry] = []
        self._sealing = 0
        self._error: BaseException | None = None

    def put(
        self, chunk_digest: bytes, header: BytesLike, payload: BytesLike, *, now: bool = False
    ) -> None:
        h = memoryview(header).cast("B")
        p = memoryview(payload).cast("B")
        n = h.nbytes + p.nbytes
        full = None
        with self._cond:
            if self._error is not None:
                raise self._error
            if self._entries and self._used + n > self.store.pack_size:
                full = self._detach()
            if self._buf is None:
                self._buf = self.store.take_buffer(n)
            off, buf = self._used, self._buf
            buf[off : off + h.nbytes] = h
            buf[off + h.nbytes : off + n] = p
            self._used += n
            self._entries.append((chunk_digest, off, n))
            mine = self._detach() if now else None
        try:
            if full is not None:
                self._seal(*full)
        finally:
            if mine is not None:  # even if ``full`` failed: it must release its buffer
                self._seal(*mine)

    def _detach(self) -> tuple[bytearray, int, list[Entry]]:
        # caller holds self._cond
        assert self._buf is not None
        full = (self._buf, self._used, self._entries)
        self._buf, self._used, self._entries = None, 0, []
        self._sealing += 1
        return full

    def _seal(self, buf: bytearray, used: int, entries: list[Entry]) -> None:
        try:
            with self._cond:
                failed = self._error
            if failed is not None:  # the session is lost already: write nothing more
                raise failed
            index, footer = encode_pack_index(entries)
            name = pack_name(secrets.token_hex(16))
            self.store.backend.put(name, memoryview(buf)[:used], index, footer)
            self.store.add_pack(name, entries)
        except BaseException as exc:
            with self._cond:
                if self._error is None:
                    self._error = exc
            raise
        finally:
            self.store.give_buffer(buf)
            with self._cond:
                self._sealing -= 1
                self._cond.notify_all()

    def flush(self) -> None:
        full = None
        with self._cond:
            if self._error is not None:
                raise self._error
            if self._entries:
                full = self._detach()
        if full is not None:
            self._seal(*full)
        with self._cond:
            while self._sealing:
                self._cond.wait()
            if self._error is not None:
                raise self._error
        self.store.backend.flush()

    def close(self) -> None:
        with self._cond:
            buf, self._buf, self._entries, self._used = self._buf, None, [], 0
        if buf is not None:
            self.store.give_buffer(buf)


class PackedChunks(ChunkStore):
    """Repository version 2: chunk records in pack files of about ``pack_size`` bytes.

    ``max_record``: the largest record a session may put (a chunk plus its header).
    """

    def __init__(self, backend: Backend, pack_size: int, max_record: int) -> None:
        super().__init__(backend)
        self.pack_size = pack_size
        self._capacity = pack_size + max_record
        self._lock = threading.Lock()  # guards the index
        self._refresh_lock = threading.Lock()
        # digest → pack number << 64 | offset << 32 | length (one int: ~100 B per chunk)
        self._index: dict[bytes, int] = {}
        self._packs: list[str] = []
        self._pack_numbers: dict[str, int] = {}
        self._pack_digests: dict[int, list[bytes]] = {}
        # packs added while a refresh lists: not in its listing, yet not vanished
        self._added_meanwhile: set[str] | None = None
        self.unreadable: dict[str, str] = {}
        self._buffers: list[bytearray] = []
        self._loaded_once = False

    # buffers are reused: a fresh 8 MiB bytearray costs 2048 page faults
    def take_buffer(self, need: int) -> bytearray:
        with self._lock:
            if self._buffers:
                return self._buffers.pop()
        return bytearray(max(self._capacity, need))

    def give_buffer(self, buf: bytearray) -> None:
        with self._lock:
            if len(self._buffers) < 4:
                self._buffers.append(buf)

    def add_pack(self, name: str, entries: list[Entry]) -> None:
        """Make a pack's chunks findable (after it was written or read)."""
        with self._lock:
            if name in self._pack_numbers:
                return
            number = len(self._packs)
            self._packs.append(name)
            self._pack_numbers[name] = number
            self._pack_digests[number] = [d for d, _off, _n in entries]
            if self._added_meanwhile is not None:
                self._added_meanwhile.add(name)
            for d, off, n in entries:
                self._index.setdefault(d, number << 64 | off << 32 | n)

    def _forget_packs(self, names: set[str]) -> None:
        # caller holds self._lock. A chunk also stored in another pack (a duplicate) loses
        # its entry here; ``get`` rebuilds the index before calling such a chunk missing.
        for name in names:
            number = self._pack_numbers.pop(name)
            for d in self._pack_digests.pop(number):
                loc = self._index.get(d)
                if loc is not None and loc >> 64 == number:
                    del self._index[d]

    def read_index(self, name: str, size: int) -> list[Entry]:
        """The index of pack ``name`` (``size`` bytes); ``ValueError`` if damaged."""
        tail = self.backend.get_range(name, -min(size, _TAIL_READ), _TAIL_READ)
        need = pack_index_length(tail[-PACK_FOOTER.size :])
        if need > len(tail) and need <= size:
            tail = self.backend.get_range(name, -need, need)
        return decode_pack_index(tail, size)

    def refresh(self, *, rebuild: bool = False) -> None:
        """Forget packs that are gone (GC), read the indexes of new ones.

        ``rebuild``: start from scratch (re-read every pack's index).
        """
        with self._refresh_lock:
            with self._lock:
                self._added_meanwhile = set()
            listed = {i.name: i.size for i in self.backend.list("packs/") if is_pack_name(i.name)}
            with self._lock:
                added, self._added_meanwhile = self._added_meanwhile, None
                if rebuild:
                    self._index, self._packs, self._pack_numbers = {}, [], {}
                    self._pack_digests = {}
                self._forget_packs(self._pack_numbers.keys() - listed.keys() - added)
                todo = sorted(listed.keys() - self._pack_numbers.keys())
            unreadable = {}
            for name in todo:
                try:
                    entries = self.read_index(name, listed[name])
                except BlobNotFoundError:
                    continue  # deleted meanwhile
                except (ValueError, FormatError) as exc:
                    unreadable[name] = str(exc)
                    continue
                self.add_pack(name, entries)
            self.unreadable = unreadable
            self._loaded_once = True

    def _ensure_loaded(self) -> None:
        if not self._loaded_once:
            self.refresh()

    def contains(self, chunk_digest: bytes) -> bool:
        self._ensure_loaded()
        return chunk_digest in self._index

    def locate(self, chunk_digest: bytes) -> tuple[str, int, int] | None:
        """(pack name, record offset, record length) of a chunk, or ``None``."""
        with self._lock:
            loc = self._index.get(chunk_digest)
            if loc is None:
                return None
            return self._packs[loc >> 64], (loc >> 32) & _MASK32, loc & _MASK32

    def get(self, chunk_digest: bytes) -> bytes:
        self._ensure_loaded()
        for attempt in range(3):
            where = self.locate(chunk_digest)
            if where is not None:
                name, off, n = where
                try:
                    return self.backend.get_range(name, off, n)
                except BlobNotFoundError:
                    pass  # GC rewrote the pack: look again
            if attempt < 2:  # new packs first; then every pack, for a duplicate's copy
                self.refresh(rebuild=attempt == 1)
        raise BlobNotFoundError(chunk_name(chunk_digest))

    def prefetch(self, chunk_digests: list[bytes]) -> None:
        self._ensure_loaded()
        spans: dict[str, tuple[int, int]] = {}  # pack → (first byte, end) of the records
        for d in chunk_digests:
            where = self.locate(d)
            if where is not None:
                name, off, n = where
                lo, hi = spans.get(name, (off, off + n))
                spans[name] = (min(lo, off), max(hi, off + n))
        for name, (lo, hi) in spans.items():
            self.backend.prefetch(name, lo, hi - lo)

    def location(self, chunk_digest: bytes) -> str:
        where = self.locate(chunk_digest)
        return where[0] if where is not None else chunk_name(chunk_digest)

    def session(self) -> ChunkSession:
        return _PackSession(self)

    def _scan(self) -> tuple[list[tuple[str, int, float, list[Entry]]], Inventory]:
        inv = Inventory()
        packs = []
        for info in self.backend.list("packs/"):
            if not is_pack_name(info.name):
                inv.problems.append((info.name, f"not a pack name: {info.name}"))
                continue
            try:
                entries = self.read_index(info.name, info.size)
            except BlobNotFoundError:
                continue
            except (ValueError, FormatError) as exc:
                inv.problems.append((info.name, f"unreadable pack index: {exc}"))
                continue
            packs.append((info.name, info.size, info.mtime, entries))
            for d, _off, n in entries:
                inv.sizes.setdefault(d, n)
        return packs, inv

    def inventory(self) -> Inventory:
        return self._scan()[1]

    def sizes(self) -> dict[bytes, int]:
        self.refresh()  # reads only packs that are new since the last call
        with self._lock:
            return {d: loc & _MASK32 for d, loc in self._index.items()}

    def plan_gc(self, referenced: set[bytes], cutoff: float) -> GcPlan:
        packs, _inv = self._scan()  # unreadable packs are never touched
        plan = GcPlan()
        for name, size, mtime, entries in packs:
            plan.chunks_before += len(entries)
            if mtime < cutoff:
                classify(plan, name, size, entries, referenced)
        return plan

    def execute_gc(self, plan: GcPlan, referenced: set[bytes]) -> GcPlan:
        done = reclassify(plan, referenced)
        if done.repack:
            session = self.session()
            copied: set[bytes] = set()
            try:
                for name, (_size, entries) in done.repack.items():
                    blob = self.backend.get(name)
                    for d, off, n in entries:
                        if d in referenced and d not in copied:
                            session.put(d, memoryview(blob)[off : off + n], b"")
                            copied.add(d)
                # the live records are durable in their new packs before the old ones go
                session.flush()
            finally:
                session.close()
        for name in [*done.delete, *done.repack]:
            self.backend.delete(name)
        self.backend.flush()
        self.refresh()
        return done
