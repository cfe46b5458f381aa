"""One conformance suite that every backend passes."""

from __future__ import annotations

import errno
import os
import random
import threading
from pathlib import Path

import pytest
from store_helpers import MiB

from goldsmith.store.backend import Backend
from goldsmith.store.errors import BlobNotFoundError
from goldsmith.store.local import LocalBackend


def test_put_get_roundtrip(backend: Backend) -> None:
    backend.put("chunks/ab/abc", b"hello ", bytearray(b"world"), memoryview(b"!"))
    assert backend.get("chunks/ab/abc") == b"hello world!"


def test_put_empty_blob(backend: Backend) -> None:
    backend.put("e")
    assert backend.get("e") == b""
    assert backend.has("e")


def test_get_missing_raises_not_found(backend: Backend) -> None:
    with pytest.raises(BlobNotFoundError) as info:
        backend.get("snapshots/nope")
    assert info.value.name == "snapshots/nope"


def test_put_replaces_atomically(backend: Backend) -> None:
    backend.put("locks/x", b"one")
    backend.put("locks/x", b"two")
    assert backend.get("locks/x") == b"two"
    assert [i.name for i in backend.list("locks/")] == ["locks/x"]


def test_has_many_is_batched_subset(backend: Backend) -> None:
    backend.put("a/1", b"x")
    backend.put("a/2", b"y")
    assert backend.has_many(["a/1", "a/2", "a/3", "b/1"]) == {"a/1", "a/2"}
    assert backend.has_many([]) == set()
    assert not backend.has("a/3")


def test_list_by_prefix_with_sizes(backend: Backend) -> None:
    backend.put("chunks/00/00aa", b"12345")
    backend.put("chunks/01/01bb", b"1")
    backend.put("snapshots/snap-1", b"m")
    listed = {i.name: i.size for i in backend.list("chunks/")}
    assert listed == {"chunks/00/00aa": 5, "chunks/01/01bb": 1}
    assert {i.name for i in backend.list("chunks/01")} == {"chunks/01/01bb"}
    assert {i.name for i in backend.list()} == {
        "chunks/00/00aa",
        "chunks/01/01bb",
        "snapshots/snap-1",
    }
    assert list(backend.list("nothing/")) == []
    assert all(i.mtime > 0 for i in backend.list())


def test_delete_is_idempotent(backend: Backend) -> None:
    backend.put("x/y", b"1")
    backend.delete("x/y")
    backend.delete("x/y")
    assert not backend.has("x/y")
    with pytest.raises(BlobNotFoundError):
        backend.get("x/y")


@pytest.mark.parametrize(
    "bad", ["", "/abs", "a/../b", "../x", "a//b", ".tmp-x", "a/.hidden", "sp ace"]
)
def test_invalid_names_rejected(backend: Backend, bad: str) -> None:
    with pytest.raises(ValueError):
        backend.put(bad, b"x")


def test_flush_and_purge_are_safe(backend: Backend) -> None:
    backend.put("a/b", b"1")
    backend.flush()
    assert backend.purge_incomplete(0) == 0
    assert backend.get("a/b") == b"1"


def test_concurrent_puts_of_same_name(backend: Backend) -> None:
    data = b"z" * 100_000

    def put() -> None:
        for _ in range(20):
            backend.put("chunks/zz/same", data)

    threads = [threading.Thread(target=put) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert backend.get("chunks/zz/same") == data
    assert [i.name for i in backend.list()] == ["chunks/zz/same"]


def test_local_interrupted_put_is_invisible_and_purged(tmp_path: Path) -> None:
    b = LocalBackend(tmp_path)
    b.put("chunks/aa/x", b"ok")
    (tmp_path / "chunks" / "aa" / ".tmp-deadbeef").write_bytes(b"partial")
    assert {i.name for i in b.list()} == {"chunks/aa/x"}
    assert b.purge_incomplete(3600) == 0
    assert b.purge_incomplete(0) == 1
    assert not (tmp_path / "chunks" / "aa" / ".tmp-deadbeef").exists()


def test_local_disk_full_leaves_no_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import errno
    import os

    from goldsmith.store.errors import StoreFullError

    b = LocalBackend(tmp_path)
    real_write = os.write

    def full(fd: int, data: object) -> int:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "write", full)
    with pytest.raises(StoreFullError):
        b.put("chunks/aa/x", b"data")
    monkeypatch.setattr(os, "write", real_write)
    assert list(b.list()) == []
    assert [p.name for p in (tmp_path / "chunks" / "aa").iterdir()] == []


def test_get_range_and_prefetch(backend: Backend) -> None:
    backend.put("packs/p", b"0123456789")
    assert backend.get_range("packs/p", 2, 3) == b"234"
    assert backend.get_range("packs/p", -4, 4) == b"6789"  # suffix range
    assert backend.get_range("packs/p", -40, 40) == b"0123456789"  # longer than the blob
    assert backend.get_range("packs/p", 8, 10) == b"89"  # cut at the end
    assert backend.get_range("packs/p", 10, 5) == b""
    backend.prefetch("packs/p", 0, 10)  # a hint: no effect on content, no error
    backend.prefetch("packs/missing", 0, 10)
    with pytest.raises(BlobNotFoundError):
        backend.get_range("packs/missing", 0, 1)


def test_local_large_blob_is_durable_and_readable_after_uncaching(tmp_path: Path) -> None:
    b = LocalBackend(tmp_path, uncache_from=1024)
    data = bytes(range(256)) * 64  # 16 KiB: dropped from the page cache after its fsync
    b.put("packs/big", data[:5000], memoryview(data)[5000:])
    assert b.get("packs/big") == data
    assert b.get_range("packs/big", 1000, 3000) == data[1000:4000]


def _big_parts() -> tuple[bytes, list[bytes | memoryview]]:
    """A blob of 2 MiB + 5000 bytes (not block-aligned) in three parts, like a pack."""
    data = random.Random(7).randbytes(2 * MiB + 5000)
    return data, [data[:100], memoryview(data)[100 : 2 * MiB + 4000], data[2 * MiB + 4000 :]]


def _open_flags(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Record the flags of every os.open of a temp file."""
    seen: list[int] = []
    real_open = os.open

    def spy(path: str, flags: int, *args: int, **kwargs: object) -> int:
        if os.path.basename(path).startswith(".tmp-"):
            seen.append(flags)
        return real_open(path, flags, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(os, "open", spy)
    return seen


def test_local_large_blob_written_direct(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    flags = _open_flags(monkeypatch)
    b = LocalBackend(tmp_path)
    data, parts = _big_parts()
    b.put("packs/big", *parts)
    b.put("packs/small", b"tiny")  # below uncache_from: through the page cache
    assert [bool(f & os.O_DIRECT) for f in flags] == [True, False]
    assert b.direct
    assert (tmp_path / "packs" / "big").stat().st_size == len(data)  # padding truncated
    assert b.get("packs/big") == data
    assert b.get_range("packs/big", -5000, 5000) == data[-5000:]
    assert b.get("packs/small") == b"tiny"
    assert [p.name for p in (tmp_path / "packs").iterdir() if p.name.startswith(".")] == []


def test_local_without_o_direct_falls_back(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real_open = os.open

    def no_direct(path: str, flags: int, *args: int, **kwargs: object) -> int:
        if flags & os.O_DIRECT:
            raise OSError(errno.EINVAL, "Invalid argument")  # as tmpfs before Linux 6.6
        return real_open(path, flags, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(os, "open", no_direct)
    b = LocalBackend(tmp_path)
    data, parts = _big_parts()
    b.put("packs/big", *parts)
    assert not b.direct  # not tried again
    b.put("packs/big2", *parts)
    assert b.get("packs/big") == data and b.get("packs/big2") == data
    assert sorted(i.name for i in b.list()) == ["packs/big", "packs/big2"]


@pytest.mark.parametrize("fault", ["short", "einval", "enospc"])
def test_local_direct_write_faults(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fault: str
) -> None:
    """A short write finishes buffered; EINVAL restarts buffered; a full disk is clean."""
    from goldsmith.store.errors import StoreFullError

    real_pwrite = os.pwrite
    calls = [0]

    def faulty(fd: int, data: memoryview, offset: int) -> int:
        calls[0] += 1
        if calls[0] == 2:  # the second MiB
            if fault == "short":
                return real_pwrite(fd, data[:8192], offset)  # stays aligned
            raise OSError(errno.EINVAL if fault == "einval" else errno.ENOSPC, fault)
        return real_pwrite(fd, data, offset)

    monkeypatch.setattr(os, "pwrite", faulty)
    b = LocalBackend(tmp_path)
    data, parts = _big_parts()
    if fault == "enospc":
        with pytest.raises(StoreFullError):
            b.put("packs/big", *parts)
        assert list(b.list()) == []
        assert list((tmp_path / "packs").iterdir()) == []  # the temp file is gone too
        return
    b.put("packs/big", *parts)
    assert b.get("packs/big") == data
    assert b.direct == (fault == "short")
