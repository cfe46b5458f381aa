"""Copy benchmark: moving a snapshot between two regions' stores, only missing chunks.

Builds the same realistic disk as bench/store.py (a sparse ext4 image, 2 GiB; 256 MiB with
``--quick``, made by ``mkfs.ext4 -d`` from real /usr files), snapshots it into a "source
region" repository, then measures, each figure the median of ``--runs``:

* **full copy**: ``transfer_snapshot`` of the whole snapshot into an empty repository
  (every chunk read, verified — decompressed and hashed — and written, packs fsynced)
  against ``cp -r`` of the source repository's files in the same run (interleaved rounds,
  warm page cache for both). Throughput = stored bytes / seconds; target ≥ 0.8× ``cp -r``.
  ``cp -r`` + ``sync`` of the copied files (durable, like ours) is reported as well.
* **derived copy**: an image derived from the first (a 16 MiB file of real /usr content
  written into its filesystem with ``debugfs``; 2 MiB quick), snapshotted incrementally,
  copied to a destination that already holds the parent. Targets: bytes moved ≤ 1.1× the
  bytes unique to the derived snapshot (its ``incremental`` stored bytes) and time ≤ 10 %
  of the full copy's.

Every run writes into a new destination directory; old ones are removed only at the end
(see bench/store.py on ext4 inode reuse). Output: one JSON object per metric per line.

Usage: ``.venv/bin/python bench/copy.py [--quick] [--runs N] [--workdir DIR]``
Needs Debian packages: e2fsprogs (mkfs.ext4, debugfs).
"""

from __future__ import annotations

import argparse
import itertools
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

# This file is named like the standard library's ``copy``, which ``dataclasses`` imports:
# take its directory off the front of the path before importing the store, and look for
# the bench helpers last.
_HERE = str(Path(__file__).resolve().parent)
sys.path[:] = [p for p in sys.path if p not in ("", _HERE)] + [_HERE]

import store as store_bench  # noqa: E402 - bench/store.py builds the image
from _common import emit  # noqa: E402
from goldsmith.store import Repository  # noqa: E402
from goldsmith.store.transfer import COUNTERS, TransferReport, transfer_snapshot  # noqa: E402

MiB = 1 << 20
GiB = 1 << 30
_fresh = itertools.count()


def fresh(work: Path, kind: str) -> Path:
    return work / f"{kind}-{next(_fresh)}"


def warm(repo_dir: Path) -> None:
    """Read every pack once so both contenders start from a warm page cache."""
    for f in sorted((repo_dir / "packs").iterdir()):
        with open(f, "rb") as handle:
            while handle.read(8 * MiB):
                pass


def timed(fn: Callable[[], object]) -> tuple[float, float]:
    """(wall seconds, CPU seconds) of one call."""
    cpu, start = store_bench.cpu_seconds(), time.perf_counter()
    fn()
    return time.perf_counter() - start, store_bench.cpu_seconds() - cpu


def bench_full(work: Path, src_dir: Path, runs: int) -> float:
    """Full copy vs ``cp -r``; returns our median seconds."""
    source = Repository.open(src_dir, create=False)
    stored = store_bench.chunk_bytes(src_dir)
    ours, ours_cpu, cp, cp_sync = [], [], [], []
    reports: list[TransferReport] = []
    for _ in range(runs):
        warm(src_dir)
        dest = Repository.open(fresh(work, "dest"))

        def copy(dest: Repository = dest) -> None:
            reports.append(transfer_snapshot(source, "snap-base", dest, "snap-base"))

        wall, cpu = timed(copy)
        ours.append(wall)
        ours_cpu.append(cpu)
        warm(src_dir)
        target = fresh(work, "cp")

        def cp_only(target: Path = target) -> None:
            store_bench.run("cp", "-r", str(src_dir), str(target))

        cp.append(timed(cp_only)[0])
        target = fresh(work, "cpsync")

        def cp_and_sync(target: Path = target) -> None:
            store_bench.run("cp", "-r", str(src_dir), str(target))
            store_bench.run("sync", *map(str, (target / "packs").iterdir()))

        warm(src_dir)
        cp_sync.append(timed(cp_and_sync)[0])
    t_ours, t_cp, t_sync = (statistics.median(x) for x in (ours, cp, cp_sync))
    moved = reports[-1].bytes_moved
    emit("copy_full_stored_bytes", moved, "B", stored, None)
    emit("copy_full_throughput", moved / t_ours / 1e9, "GB/s", stored / t_cp / 1e9, ">=0.8")
    emit("copy_full_vs_cp_sync", moved / t_ours / 1e9, "GB/s", stored / t_sync / 1e9, None)
    emit("copy_full_seconds", t_ours, "s")
    emit("copy_full_cpu_seconds", statistics.median(ours_cpu), "s")
    return t_ours


def bench_derived(
    work: Path, src_dir: Path, image: Path, change: int, runs: int, t_full: float
) -> None:
    """Copy a derived snapshot to a destination holding its parent."""
    derived = work / "derived.img"
    store_bench.derive_with_file(image, derived, seed=1, length=change)
    source = Repository.open(src_dir, create=False)
    source.snapshot_file(derived, "snap-derived", parent="snap-base")
    derived.unlink()
    usage = {u.snapshot_id: u for u in source.usage(["snap-base", "snap-derived"]).snapshots}
    unique = usage["snap-derived"].incremental
    times, moved = [], []
    for _ in range(runs):
        dest = Repository.open(fresh(work, "dest"))
        transfer_snapshot(source, "snap-base", dest, "snap-base")
        warm(src_dir)
        before = COUNTERS.snapshot()
        report: list[TransferReport] = []

        def copy(dest: Repository = dest, report: list[TransferReport] = report) -> None:
            report.append(
                transfer_snapshot(source, "snap-derived", dest, "snap-derived", parent="snap-base")
            )

        wall, _cpu = timed(copy)
        after = COUNTERS.snapshot()
        assert after["bytes_moved"] - before["bytes_moved"] == report[0].bytes_moved
        times.append(wall)
        moved.append(report[0].bytes_moved)
    emit("copy_derived_bytes_moved", statistics.median(moved), "B", unique, "<=1.1")
    emit("copy_derived_seconds", statistics.median(times), "s", t_full, "<=0.1")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, under a minute")
    parser.add_argument("--runs", type=int, default=3, help="runs per timed figure (median)")
    parser.add_argument("--workdir", type=Path, default=None, help="scratch directory")
    args = parser.parse_args()
    size, budget, change = (
        (256 * MiB, 80 * MiB, 2 * MiB) if args.quick else (2 * GiB, 750 * MiB, 16 * MiB)
    )
    with tempfile.TemporaryDirectory(prefix="gs-bench-copy-", dir=args.workdir) as tmp:
        work = Path(tmp)
        image, store_bench.USR_IN_IMAGE = store_bench.make_image(work, size, budget)
        src_dir = work / "source"
        Repository.open(src_dir).snapshot_file(image, "snap-base")
        print(
            json.dumps({"image_bytes": size, "stored_bytes": store_bench.chunk_bytes(src_dir)}),
            flush=True,
        )
        t_full = bench_full(work, src_dir, args.runs)
        bench_derived(work, src_dir, image, change, args.runs, t_full)


if __name__ == "__main__":
    main()
