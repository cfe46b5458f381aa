"""Encodings of the repository's blobs: config (v1, v2), chunk (v1), manifest (v1), pack (v1).

The byte layouts are specified in docs/design/store.md; this module is their only
implementation. The config may name explicit zstd parameters (``zstd``); they change how
new chunks are compressed, never how any chunk is read (a zstd frame is decodable whatever
parameters made it), so configs with and without them are both version 2.

Decoders raise ``FormatError`` for an unknown version and ``ValueError``
with a short reason for damaged bytes; the repository turns the latter into
``CorruptionError`` naming the snapshot and offset, which only it knows.
"""

from __future__ import annotations

import json
import struct
import threading
import time
import uuid
from dataclasses import dataclass, field

import blake3
import zstandard

from .backend import BytesLike
from .errors import FormatError

#: Repository (config) format written by new repositories: 2 = chunks in pack files.
FORMAT_VERSION = 2
#: Config versions this code reads: 1 = one blob per chunk ("loose"), 2 = packs.
SUPPORTED_VERSIONS = (1, 2)
LAYOUT_LOOSE = "loose"
LAYOUT_PACKS = "packs"
MANIFEST_VERSION = 1
HASH_SIZE = 32
DEFAULT_CHUNK_SIZE = 512 * 1024
DEFAULT_LEVEL = 1
DEFAULT_PACK_SIZE = 8 * 1024 * 1024

#: zstd parameters of new repositories at the default level, chosen by benchmark
#: (docs/design/store.md, "Compression parameters"): level 1's "fast" strategy with a
#: 256 KiB window and 8 K hash buckets instead of 512 KiB / 16 K — 9-10 % faster on real
#: disk data for 2.5 % more stored bytes. Written out in full so a repository compresses
#: the same way whatever libzstd's level tables say.
TUNED_ZSTD: dict[str, int] = {
    "strategy": 1,  # ZSTD_fast
    "window_log": 18,
    "hash_log": 13,
    "chain_log": 13,  # unused by the fast strategy; zstd 1.5 level 1's value
    "search_log": 1,
    "min_match": 7,
    "target_length": 0,  # > 0 would turn off Huffman-coded literals (+15 % size)
}
#: keys (all of them required) and bounds of a config's ``zstd`` parameters
ZSTD_PARAM_RANGES: dict[str, tuple[int, int]] = {
    "strategy": (1, 9),
    "window_log": (10, 27),  # decoders must accept the window: stay within zstd's default
    "hash_log": (6, 30),
    "chain_log": (6, 30),
    "search_log": (1, 30),
    "min_match": (3, 7),
    "target_length": (0, 131072),
}

CHUNK_MAGIC = b"GSCK"
CHUNK_HEADER = struct.Struct("<4sBBHI")
CODEC_RAW = 0
CODEC_ZSTD = 1

MANIFEST_MAGIC = b"GSMF"
MANIFEST_HEAD = struct.Struct("<4sHI")
MANIFEST_ENTRY = struct.Struct("<I32s")

PACK_MAGIC = b"GSPK"
PACK_VERSION = 1
#: index entry: chunk digest, record offset (u64 LE), record length (u32 LE)
PACK_ENTRY = struct.Struct("<32sQI")
#: footer: magic, version (u16), reserved (u16), entry count (u32), BLAKE3 of the entries
PACK_FOOTER = struct.Struct("<4sHHI32s")


def digest(data: BytesLike) -> bytes:
    """BLAKE3-256 of ``data`` (the chunk's identity)."""
    return blake3.blake3(data).digest()


def chunk_name(chunk_digest: bytes) -> str:
    """The blob name of a chunk: ``chunks/<first byte hex>/<hex>``."""
    h = chunk_digest.hex()
    return f"chunks/{h[:2]}/{h}"


def digest_of_name(name: str) -> bytes | None:
    """The digest a chunk blob name stands for, or ``None`` if it is not a chunk name."""
    parts = name.split("/")
    if len(parts) != 3 or parts[0] != "chunks" or len(parts[2]) != 2 * HASH_SIZE:
        return None
    try:
        d = bytes.fromhex(parts[2])
    except ValueError:
        return None
    return d if parts[1] == parts[2][:2] else None


def pack_name(pack_id: str) -> str:
    """The blob name of a pack: ``packs/<32 hex>`` (flat: ~120 K packs per TB stored)."""
    return f"packs/{pack_id}"


def is_pack_name(name: str) -> bool:
    parts = name.split("/")
    return (
        len(parts) == 2
        and parts[0] == "packs"
        and len(parts[1]) == 32
        and all(c in "0123456789abcdef" for c in parts[1])
    )


class _Unset:
    """Marks a ``RepoConfig.zstd`` left to its default (which depends on ``level``)."""


UNSET = _Unset()


@dataclass(frozen=True, slots=True)
class RepoConfig:
    """The repository's fixed parameters (the ``config`` blob).

    ``version`` 1: every chunk is its own blob (``chunks/``); 2: chunks live in pack files
    (``packs/``) of about ``pack_size`` bytes. ``zstd``: explicit compression parameters
    that replace ``level``'s (``None``: plain ``level``, as every repository created before
    they existed). Left unset, a new config at the default level gets ``TUNED_ZSTD``.
    """

    chunk_size: int = DEFAULT_CHUNK_SIZE
    level: int = DEFAULT_LEVEL
    repo_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    created: float = field(default_factory=time.time)
    version: int = FORMAT_VERSION
    pack_size: int = DEFAULT_PACK_SIZE
    zstd: dict[str, int] | _Unset | None = field(default=UNSET, hash=False)

    def __post_init__(self) -> None:
        if isinstance(self.zstd, _Unset):
            tuned = dict(TUNED_ZSTD) if self.level == DEFAULT_LEVEL else None
            object.__setattr__(self, "zstd", tuned)
        elif self.zstd is not None:
            object.__setattr__(self, "zstd", check_zstd_params(self.zstd))

    @property
    def zstd_params(self) -> dict[str, int] | None:
        """The explicit zstd parameters, or ``None`` for plain ``level``."""
        assert not isinstance(self.zstd, _Unset)  # resolved by __post_init__
        return self.zstd

    @property
    def layout(self) -> str:
        return LAYOUT_LOOSE if self.version == 1 else LAYOUT_PACKS

    def encode(self) -> bytes:
        doc: dict[str, object] = {
            "format": "goldsmith-store",
            "version": self.version,
            "chunk_size": self.chunk_size,
            "hash": "blake3",
            "compression": "zstd",
            "level": self.level,
            "created": self.created,
            "id": self.repo_id,
        }
        if self.version >= 2:
            doc["layout"] = LAYOUT_PACKS
            doc["pack_size"] = self.pack_size
        if self.zstd_params is not None:
            doc["zstd"] = self.zstd_params
        return json.dumps(doc, indent=1).encode() + b"\n"

    @classmethod
    def decode(cls, data: bytes) -> RepoConfig:
        try:
            doc = json.loads(data)
            fmt, version = doc["format"], doc["version"]
        except (ValueError, KeyError, TypeError) as exc:
            raise FormatError(f"unreadable repository config: {exc}") from exc
        if fmt != "goldsmith-store" or version not in SUPPORTED_VERSIONS:
            raise FormatError(f"unsupported repository format {fmt!r} version {version!r}")
        if doc.get("hash") != "blake3" or doc.get("compression") != "zstd":
            raise FormatError("unsupported hash or compression in repository config")
        if version >= 2 and doc.get("layout") != LAYOUT_PACKS:
            raise FormatError(f"unsupported repository layout {doc.get('layout')!r}")
        zstd = doc.get("zstd")
        if zstd is not None and not isinstance(zstd, dict):
            raise FormatError(f"unreadable zstd parameters in repository config: {zstd!r}")
        return cls(
            int(doc["chunk_size"]),
            int(doc["level"]),
            str(doc["id"]),
            float(doc["created"]),
            int(version),
            int(doc.get("pack_size", DEFAULT_PACK_SIZE)),
            zstd,  # absent: None (plain level), never the tuned default
        )


def check_zstd_params(params: dict[str, int]) -> dict[str, int]:
    """A copy of ``params`` if it names every key of ``ZSTD_PARAM_RANGES`` within bounds.

    Raises ``FormatError`` otherwise: a config with parameters this code does not know
    could mean a compression this code would not reproduce.
    """
    if set(params) != set(ZSTD_PARAM_RANGES):
        raise FormatError(f"zstd parameters must be exactly {sorted(ZSTD_PARAM_RANGES)}")
    out = {}
    for key, (lo, hi) in ZSTD_PARAM_RANGES.items():
        value = params[key]
        if not isinstance(value, int) or isinstance(value, bool) or not lo <= value <= hi:
            raise FormatError(f"zstd parameter {key}={value!r} outside {lo}..{hi}")
        out[key] = value
    return out


class ChunkCodec:
    """Encodes and decodes chunk blobs; thread-safe (one zstd context per thread).

    ``params``: explicit zstd parameters (``RepoConfig.zstd_params``) instead of ``level``.
    They affect only encoding; ``decode`` reads chunks made with any parameters.
    """

    def __init__(self, level: int = DEFAULT_LEVEL, params: dict[str, int] | None = None) -> None:
        self.level = level
        self.params = check_zstd_params(params) if params is not None else None
        self._local = threading.local()

    def _cctx(self) -> zstandard.ZstdCompressor:
        # one compressor per thread, reused: its context (tables, buffers) is allocated once
        c = getattr(self._local, "c", None)
        if c is None:
            if self.params is None:
                c = zstandard.ZstdCompressor(level=self.level)
            else:
                cp = zstandard.ZstdCompressionParameters(**self.params)
                c = zstandard.ZstdCompressor(compression_params=cp)
            self._local.c = c
        return c

    def _dctx(self) -> zstandard.ZstdDecompressor:
        d = getattr(self._local, "d", None)
        if d is None:
            d = self._local.d = zstandard.ZstdDecompressor()
        return d

    def encode(self, data: BytesLike) -> tuple[bytes, BytesLike]:
        """Return (header, payload) of the blob for ``data``; raw if zstd saves < 1/32."""
        n = memoryview(data).nbytes
        packed = self._cctx().compress(data)
        if len(packed) < n - (n >> 5):
            return CHUNK_HEADER.pack(CHUNK_MAGIC, 1, CODEC_ZSTD, 0, n), packed
        return CHUNK_HEADER.pack(CHUNK_MAGIC, 1, CODEC_RAW, 0, n), data

    def decode(self, blob: bytes, expected: bytes) -> bytes:
        """Return the chunk's bytes, verified against digest ``expected``.

        Raises ``ValueError`` (reason) for a damaged blob, ``FormatError`` for a newer version.
        """
        if len(blob) < CHUNK_HEADER.size:
            raise ValueError(f"truncated chunk ({len(blob)} bytes)")
        magic, version, codec, _reserved, raw_len = CHUNK_HEADER.unpack_from(blob)
        if magic != CHUNK_MAGIC:
            raise ValueError("bad chunk magic")
        if version != 1:
            raise FormatError(f"unsupported chunk version {version}")
        payload = memoryview(blob)[CHUNK_HEADER.size :]
        if codec == CODEC_RAW:
            data = bytes(payload)
        elif codec == CODEC_ZSTD:
            try:
                data = self._dctx().decompress(payload, max_output_size=raw_len)
            except zstandard.ZstdError as exc:
                raise ValueError(f"undecodable chunk ({exc})") from None
        else:
            raise ValueError(f"unknown chunk codec {codec}")
        if len(data) != raw_len:
            raise ValueError(f"chunk length {len(data)} != {raw_len}")
        if digest(data) != expected:
            raise ValueError("chunk hash mismatch")
        return data


@dataclass(frozen=True, slots=True)
class Manifest:
    """A snapshot: its size, parent and the digest of every non-zero chunk by index."""

    snapshot_id: str
    parent: str | None
    size: int
    chunk_size: int
    created: float
    entries: dict[int, bytes]

    @property
    def chunk_count(self) -> int:
        """Number of chunk slots (zero ones included) covering ``size``."""
        return -(-self.size // self.chunk_size)

    def chunk_length(self, index: int) -> int:
        """Bytes in chunk ``index`` (the last one may be short)."""
        return min(self.chunk_size, self.size - index * self.chunk_size)

    def encode(self) -> bytes:
        header = json.dumps(
            {
                "snapshot_id": self.snapshot_id,
                "parent": self.parent,
                "size": self.size,
                "chunk_size": self.chunk_size,
                "hash": "blake3",
                "created": self.created,
                "entries": len(self.entries),
            },
            sort_keys=True,
        ).encode()
        parts = [MANIFEST_HEAD.pack(MANIFEST_MAGIC, MANIFEST_VERSION, len(header)), header]
        parts.extend(MANIFEST_ENTRY.pack(i, self.entries[i]) for i in sorted(self.entries))
        body = b"".join(parts)
        return body + digest(body)

    @classmethod
    def decode(cls, blob: bytes) -> Manifest:
        """Parse a manifest; ``ValueError`` if damaged, ``FormatError`` if too new."""
        if len(blob) < MANIFEST_HEAD.size + HASH_SIZE:
            raise ValueError(f"truncated manifest ({len(blob)} bytes)")
        body, trailer = blob[:-HASH_SIZE], blob[-HASH_SIZE:]
        magic, version, hlen = MANIFEST_HEAD.unpack_from(body)
        if magic != MANIFEST_MAGIC:
            raise ValueError("bad manifest magic")
        if version != MANIFEST_VERSION:
            raise FormatError(f"unsupported manifest version {version}")
        if digest(body) != trailer:
            raise ValueError("manifest checksum mismatch (truncated or altered)")
        start = MANIFEST_HEAD.size + hlen
        try:
            h = json.loads(body[MANIFEST_HEAD.size : start])
            count = int(h["entries"])
        except (ValueError, KeyError, TypeError) as exc:
            raise ValueError(f"bad manifest header: {exc}") from None
        if len(body) - start != count * MANIFEST_ENTRY.size:
            raise ValueError("manifest entry table has the wrong length")
        entries = dict(MANIFEST_ENTRY.iter_unpack(body[start:]))
        return cls(
            str(h["snapshot_id"]),
            h["parent"],
            int(h["size"]),
            int(h["chunk_size"]),
            float(h["created"]),
            entries,
        )


def encode_pack_index(entries: list[tuple[bytes, int, int]]) -> tuple[bytes, bytes]:
    """The (index, footer) that follow a pack's records; ``entries``: (digest, offset, len)."""
    index = b"".join(PACK_ENTRY.pack(d, off, n) for d, off, n in entries)
    return index, PACK_FOOTER.pack(PACK_MAGIC, PACK_VERSION, 0, len(entries), digest(index))


def pack_index_length(footer: bytes) -> int:
    """Bytes of index + footer at the end of a pack, from its last ``PACK_FOOTER.size`` bytes.

    Raises ``ValueError`` for a damaged footer, ``FormatError`` for a newer pack version.
    """
    if len(footer) < PACK_FOOTER.size:
        raise ValueError(f"truncated pack ({len(footer)} bytes)")
    magic, version, _reserved, count, _check = PACK_FOOTER.unpack_from(
        footer, len(footer) - PACK_FOOTER.size
    )
    if magic != PACK_MAGIC:
        raise ValueError("bad pack footer magic (truncated or altered)")
    if version != PACK_VERSION:
        raise FormatError(f"unsupported pack version {version}")
    return int(count) * PACK_ENTRY.size + PACK_FOOTER.size


def decode_pack_index(tail: bytes, pack_size: int) -> list[tuple[bytes, int, int]]:
    """Parse a pack's index from its tail (at least ``pack_index_length`` bytes).

    ``pack_size`` is the whole pack's length: every record must lie before the index.
    """
    need = pack_index_length(tail[-PACK_FOOTER.size :])
    if len(tail) < need or pack_size < need:
        raise ValueError("pack shorter than its index")
    _magic, _v, _r, _count, check = PACK_FOOTER.unpack_from(tail, len(tail) - PACK_FOOTER.size)
    index = tail[len(tail) - need : len(tail) - PACK_FOOTER.size]
    if digest(index) != check:
        raise ValueError("pack index checksum mismatch (truncated or altered)")
    limit = pack_size - need
    entries = list(PACK_ENTRY.iter_unpack(index))
    for _d, off, n in entries:
        if off + n > limit:
            raise ValueError("pack index points beyond the records")
    return entries
