"""Compression parameters: tuned zstd parameters in new configs, old configs still honoured."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import zstandard
from store_helpers import CHUNK, ImageFactory, MiB

from goldsmith.store import FormatError, MemoryBackend, Repository
from goldsmith.store.formats import (
    CHUNK_HEADER,
    CODEC_ZSTD,
    TUNED_ZSTD,
    ZSTD_PARAM_RANGES,
    ChunkCodec,
    RepoConfig,
    digest,
)

#: a version-2 config exactly as the code before tuned parameters wrote it
OLD_V2_CONFIG = (
    b'{\n "format": "goldsmith-store",\n "version": 2,\n "chunk_size": 524288,\n'
    b' "hash": "blake3",\n "compression": "zstd",\n "level": 1,\n "created": 1790000000.0,\n'
    b' "id": "0123456789abcdef0123456789abcdef",\n "layout": "packs",\n'
    b' "pack_size": 8388608\n}\n'
)


def _text_chunk(seed: int = 0) -> bytes:
    """Compressible, varied bytes (like text files on a disk), exactly one chunk."""
    words = [f"word{(i * 7919 + seed) % 5003}" for i in range(CHUNK // 4)]
    return " ".join(words).encode()[:CHUNK]


def _window(record: bytes) -> int:
    _magic, _v, codec, _r, _n = CHUNK_HEADER.unpack_from(record)
    assert codec == CODEC_ZSTD
    return int(zstandard.get_frame_parameters(record[CHUNK_HEADER.size :]).window_size)


def test_new_config_names_tuned_parameters_and_roundtrips() -> None:
    config = RepoConfig()
    assert config.zstd_params == TUNED_ZSTD
    doc = json.loads(config.encode())
    assert doc["zstd"] == TUNED_ZSTD and doc["level"] == 1 and doc["version"] == 2
    assert RepoConfig.decode(config.encode()) == config
    # another level means that level's own parameters, not those tuned for level 1
    assert RepoConfig(level=3).zstd_params is None
    assert "zstd" not in json.loads(RepoConfig(level=3).encode())


def test_old_config_without_parameters_keeps_plain_level() -> None:
    old = RepoConfig.decode(OLD_V2_CONFIG)
    assert (old.version, old.level, old.zstd_params) == (2, 1, None)
    assert "zstd" not in json.loads(old.encode())  # re-encoding adds nothing


@pytest.mark.parametrize(
    "zstd",
    [
        "fast",
        {k: v for k, v in TUNED_ZSTD.items() if k != "hash_log"},
        {**TUNED_ZSTD, "window_log": 31},
        {**TUNED_ZSTD, "min_match": "7"},
        {**TUNED_ZSTD, "ldm": 1},
    ],
)
def test_bad_parameters_are_refused(zstd: object) -> None:
    doc = json.loads(OLD_V2_CONFIG)
    with pytest.raises(FormatError):
        RepoConfig.decode(json.dumps({**doc, "zstd": zstd}).encode())


def test_parameter_ranges_cover_exactly_the_tuned_keys() -> None:
    assert set(ZSTD_PARAM_RANGES) == set(TUNED_ZSTD)
    for key, value in TUNED_ZSTD.items():
        lo, hi = ZSTD_PARAM_RANGES[key]
        assert lo <= value <= hi


def test_codec_uses_the_parameters_and_any_codec_decodes() -> None:
    data = _text_chunk()
    tuned, plain = ChunkCodec(params=TUNED_ZSTD), ChunkCodec(level=1)
    t_header, t_payload = tuned.encode(data)
    p_header, p_payload = plain.encode(data)
    t_record, p_record = t_header + bytes(t_payload), p_header + bytes(p_payload)
    assert _window(t_record) == 1 << TUNED_ZSTD["window_log"]
    assert _window(p_record) == CHUNK  # level 1 sizes its window to the whole chunk
    d = digest(data)
    for record in (t_record, p_record):  # decoding never depends on who encoded
        assert plain.decode(record, d) == data
        assert tuned.decode(record, d) == data
        assert ChunkCodec(level=3).decode(record, d) == data


def test_repository_created_now_stores_with_tuned_parameters(image: ImageFactory) -> None:
    repo = Repository(MemoryBackend())
    assert repo.codec.params == TUNED_ZSTD
    path, expected = image(2 * MiB, ranges=[(0, 2 * MiB)])
    repo.snapshot_file(path, "snap-1")
    assert repo.read("snap-1", 0, 2 * MiB) == expected
    again = Repository(repo.backend, create=False)
    assert again.config.zstd_params == TUNED_ZSTD
    assert not again.check(read_data=True).issues


def test_repository_with_old_config_reads_and_writes_as_before(
    image: ImageFactory, tmp_path: Path
) -> None:
    """A store made before tuned parameters: its chunks read, new ones use plain level 1."""
    backend = MemoryBackend()
    backend.put("config", OLD_V2_CONFIG)
    old_style = Repository(backend, create=False)
    assert old_style.codec.params is None and old_style.config.zstd_params is None
    path, expected = image(3 * MiB, ranges=[(0, 3 * MiB)])
    old_style.snapshot_file(path, "snap-old")
    assert backend.get("config") == OLD_V2_CONFIG  # the config blob is never rewritten
    # every record written for this repository is level 1's (window = whole chunk)
    records = [old_style.chunks.get(d) for d in old_style.manifest("snap-old").entries.values()]
    assert records and all(_window(r) == CHUNK for r in records)
    reopened = Repository(backend, create=False)
    assert reopened.read("snap-old", 0, 3 * MiB) == expected
    dest = tmp_path / "restored.raw"
    reopened.restore("snap-old", dest)
    assert dest.read_bytes() == expected
    assert not reopened.check(read_data=True).issues
