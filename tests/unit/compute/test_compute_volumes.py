"""Volumes: overlays over sparse bases, the base cache, and changed-range export."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from goldsmith.compute import VolumeError
from goldsmith.compute.volumes import (
    BaseCache,
    align_ranges,
    changed_ranges,
    create_empty,
    create_overlay,
    export_changed,
    grow,
    virtual_size,
)
from goldsmith.store.repository import Repository

KiB, MiB = 1024, 1024 * 1024
CLUSTER = 64 * KiB


def qemu_io(image: Path, *commands: str) -> None:
    args = ["qemu-io", "-f", "qcow2"]
    for command in commands:
        args += ["-c", command]
    subprocess.run([*args, str(image)], check=True, capture_output=True, timeout=60)


def contents(image: Path, tmp_path: Path) -> bytes:
    """The volume as the guest sees it (qemu-img convert to raw)."""
    out = tmp_path / "contents.raw"
    subprocess.run(
        ["qemu-img", "convert", "-U", "-O", "raw", str(image), str(out)], check=True, timeout=60
    )
    data = out.read_bytes()
    out.unlink()
    return data


@pytest.fixture
def base(tmp_path: Path) -> Path:
    """A sparse 4 MiB raw base with data at 1 MiB and at its last byte."""
    path = tmp_path / "base.raw"
    with path.open("wb") as f:
        f.truncate(4 * MiB)
        f.seek(MiB)
        f.write(b"B" * 100 * KiB)
        f.seek(4 * MiB - 1)
        f.write(b"E")
    return path


def test_overlay_size_rules(base: Path, tmp_path: Path) -> None:
    with pytest.raises(VolumeError, match="smaller than its snapshot"):
        create_overlay(base, tmp_path / "small.qcow2", 2 * MiB)
    create_overlay(base, tmp_path / "same.qcow2")
    assert virtual_size(tmp_path / "same.qcow2") == 4 * MiB
    create_overlay(base, tmp_path / "big.qcow2", 8 * MiB)
    assert virtual_size(tmp_path / "big.qcow2") == 8 * MiB
    with pytest.raises(VolumeError, match="already exists"):
        create_overlay(base, tmp_path / "big.qcow2", 8 * MiB)
    grow(tmp_path / "big.qcow2", 16 * MiB)
    assert virtual_size(tmp_path / "big.qcow2") == 16 * MiB
    with pytest.raises(VolumeError, match="cannot shrink"):
        grow(tmp_path / "big.qcow2", 4 * MiB)
    # A fresh overlay changed nothing, is tiny whatever the base, and reads as the base.
    assert changed_ranges(tmp_path / "same.qcow2") == []
    assert (tmp_path / "same.qcow2").stat().st_size < MiB
    assert contents(tmp_path / "same.qcow2", tmp_path) == base.read_bytes()


def test_changed_ranges_are_exactly_the_written_clusters(base: Path, tmp_path: Path) -> None:
    overlay = tmp_path / "vol.qcow2"
    create_overlay(base, overlay, 8 * MiB)
    before = base.read_bytes()
    qemu_io(
        overlay,
        "write -P 0xab 4096 100",  # inside cluster 0
        "write -P 0xcd 200K 130K",  # clusters 3..5
        "write -z 1M 64K",  # zeroes over base data: a change too
        "write -P 0xef 6M 64K",  # beyond the base's end (the volume is bigger)
    )
    assert changed_ranges(overlay) == [
        (0, CLUSTER),
        (3 * CLUSTER, 3 * CLUSTER),
        (MiB, CLUSTER),
        (6 * MiB, CLUSTER),
    ]
    assert base.read_bytes() == before  # the base is never written


def test_export_writes_current_bytes_at_changed_ranges_only(base: Path, tmp_path: Path) -> None:
    overlay = tmp_path / "vol.qcow2"
    create_overlay(base, overlay, 8 * MiB)
    qemu_io(overlay, "write -P 0xab 4096 100", "write -P 0xcd 1000K 64K", "write -P 0xef 6M 4K")
    dest = tmp_path / "export.raw"
    written = export_changed(overlay, dest, align=CLUSTER)
    assert written == [(0, CLUSTER), (960 * KiB, 2 * CLUSTER), (6 * MiB, CLUSTER)]
    volume = contents(overlay, tmp_path)
    exported = dest.read_bytes()
    assert len(exported) == 8 * MiB
    for offset, length in written:
        assert exported[offset : offset + length] == volume[offset : offset + length]
    outside = bytearray(exported)
    for offset, length in written:
        outside[offset : offset + length] = bytes(length)
    assert not any(outside)  # nothing else was read or written
    assert os.stat(dest).st_blocks * 512 < MiB  # sparse


def test_align_ranges_widens_merges_and_clips() -> None:
    assert align_ranges([(10, 5), (100, 10), (1000, 1)], 512, 600) == [(0, 600)]
    assert align_ranges([(0, 512), (1024, 1)], 512, 4096) == [(0, 512), (1024, 512)]
    assert align_ranges([(4000, 200)], 512, 4096) == [(3584, 512)]
    assert align_ranges([], 512, 4096) == []


def test_incremental_snapshot_through_the_store(tmp_path: Path) -> None:
    """Snapshot → base → overlay → guest writes → export → child snapshot == the volume."""
    repo = Repository.open(tmp_path / "repo")
    source = tmp_path / "source.raw"
    source.write_bytes(os.urandom(3 * MiB) + bytes(MiB))
    repo.snapshot_file(source, "snap-parent")
    cache = BaseCache(tmp_path / "bases")
    base = cache.get("snap-parent", repo.restore)
    overlay = tmp_path / "vol.qcow2"
    create_overlay(base, overlay, 6 * MiB)
    qemu_io(overlay, "write -P 0x11 100K 10K", "write -P 0x22 2M 700K", "write -P 0x33 5M 1K")

    tmp_raw = tmp_path / "changed.raw"
    ranges = export_changed(overlay, tmp_raw, align=repo.chunk_size)
    repo.snapshot_file(tmp_raw, "snap-child", parent="snap-parent", changed_ranges=ranges)
    restored = tmp_path / "restored.raw"
    repo.restore("snap-child", restored)
    assert restored.read_bytes() == contents(overlay, tmp_path)


def test_empty_volume_changed_ranges_are_what_was_written(tmp_path: Path) -> None:
    volume = tmp_path / "empty.qcow2"
    create_empty(volume, 4 * MiB)
    assert changed_ranges(volume) == []
    qemu_io(volume, "write -P 1 1M 1")
    assert changed_ranges(volume) == [(MiB, CLUSTER)]


def test_base_cache_restores_once_under_concurrency(tmp_path: Path) -> None:
    cache = BaseCache(tmp_path / "bases")
    calls: list[str] = []

    def restore(snapshot_id: str, dest: Path) -> None:
        calls.append(snapshot_id)
        time.sleep(0.2)  # long enough for every thread to pile up on the lock
        dest.write_bytes(b"x" * 4096)

    paths: list[Path] = []
    threads = [
        threading.Thread(target=lambda: paths.append(cache.get("snap-1", restore)))
        for _ in range(6)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert calls == ["snap-1"]
    assert set(paths) == {tmp_path / "bases" / "snap-1.raw"}
    assert paths[0].stat().st_mode & 0o222 == 0  # read-only
    assert sorted(p.name for p in (tmp_path / "bases").iterdir() if p.suffix == ".tmp") == []


def test_base_cache_failed_restore_leaves_nothing_and_can_retry(tmp_path: Path) -> None:
    cache = BaseCache(tmp_path / "bases")

    def broken(snapshot_id: str, dest: Path) -> None:
        dest.write_bytes(b"partial")
        raise OSError("chunk missing")

    with pytest.raises(VolumeError, match="chunk missing"):
        cache.get("snap-2", broken)
    assert not cache.path("snap-2").exists()
    assert [p for p in (tmp_path / "bases").iterdir() if p.suffix == ".tmp"] == []
    path = cache.get("snap-2", lambda sid, dest: dest.write_bytes(b"ok"))
    assert path.read_bytes() == b"ok"
    with pytest.raises(VolumeError, match="bad snapshot id"):
        cache.path("../etc")


def test_base_cache_restores_once_across_processes(tmp_path: Path) -> None:
    """Two processes: the flock makes the second wait and reuse the first's base."""
    script = (
        "import sys, time\nfrom pathlib import Path\n"
        "from goldsmith.compute.volumes import BaseCache\n"
        "def restore(sid, dest):\n"
        "    with open(sys.argv[2], 'a') as log: log.write('restore\\n')\n"
        "    time.sleep(0.5); dest.write_bytes(b'base')\n"
        "print(BaseCache(Path(sys.argv[1])).get('snap-3', restore))\n"
    )
    log = tmp_path / "log"
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", script, str(tmp_path / "b"), str(log)], stdout=subprocess.PIPE
        )
        for _ in range(2)
    ]
    outs = [p.communicate(timeout=60)[0] for p in procs]
    assert all(p.returncode == 0 for p in procs)
    assert outs[0] == outs[1]
    assert log.read_text() == "restore\n"


def test_export_of_an_image_a_qemu_process_holds_open(base: Path, tmp_path: Path) -> None:
    """A paused VM keeps its image locked; ``force_share`` still exports it (qemu-nbd 7.2
    has no ``--force-share``: the image is opened with ``file.locking=off``)."""
    overlay = tmp_path / "vol,with,commas.qcow2"  # commas need escaping in --image-opts
    create_overlay(base, overlay, 8 * MiB)
    qemu_io(overlay, "write -P 0x5a 2M 64K")
    holder = subprocess.Popen(
        [
            "qemu-system-x86_64",
            *("-machine", "none", "-nodefaults", "-display", "none", "-S"),
            *("-drive", f"file={str(overlay).replace(',', ',,')},if=none,format=qcow2,id=d0"),
        ],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        # Wait until QEMU has taken its write lock (a plain, locking open then fails).
        deadline = time.monotonic() + 30
        while True:
            probe = subprocess.run(
                ["qemu-img", "info", str(overlay)], check=False, capture_output=True, timeout=30
            )
            if probe.returncode != 0:
                break
            assert holder.poll() is None and time.monotonic() < deadline
            time.sleep(0.05)
        with pytest.raises(VolumeError):
            export_changed(overlay, tmp_path / "locked.raw", align=CLUSTER)
        dest = tmp_path / "shared.raw"
        written = export_changed(overlay, dest, align=CLUSTER, force_share=True)
        assert written == [(2 * MiB, CLUSTER)]
        assert dest.read_bytes()[2 * MiB : 2 * MiB + CLUSTER] == b"\x5a" * CLUSTER
    finally:
        holder.kill()
        holder.wait()
