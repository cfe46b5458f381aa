"""Volume files on this host: cached snapshot bases, qcow2 overlays, incremental export.

Layout under ``<data-dir>/regions/<region>/``::

    bases/<snapshot-id>.raw     read-only restore of a snapshot, made once (compute.BaseCache)
    volumes/<volume-id>.qcow2   the volume: an overlay over its snapshot's base, or plain qcow2
    tmp/                        sparse exports on their way into the store

Bases are never evicted while Goldsmith runs: an overlay records its base by path, and a
volume outlives the image and even the snapshot it came from (as on EC2).

Snapshots of a volume are incremental against the volume's source snapshot: the overlay's
top layer is exactly what changed since then (:func:`goldsmith.compute.volumes.export_changed`),
and the store reads only those chunks. When the source snapshot is gone from the store (or
the volume had none), the whole volume is exported instead.
"""

from __future__ import annotations

import os
import shutil
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from goldsmith.compute.volumes import (
    BaseCache,
    changed_ranges,
    create_empty,
    create_overlay,
    export_changed,
    export_raw,
    virtual_size,
)
from goldsmith.config import Settings
from goldsmith.service.snapshots import SnapshotService

GIB = 1024**3


class VolumeFiles:
    """Where volumes live and how they are made, snapshotted and removed."""

    def __init__(self, settings: Settings, snapshots: SnapshotService) -> None:
        self._settings = settings
        self._snapshots = snapshots
        self._caches: dict[str, BaseCache] = {}
        self._lock = threading.Lock()

    def region_dir(self, region: str) -> Path:
        return self._settings.region_dir(region)

    def path(self, region: str, volume_id: str) -> Path:
        return self.region_dir(region) / "volumes" / f"{volume_id}.qcow2"

    def run_dir(self, region: str, instance_id: str) -> Path:
        return (self.region_dir(region) / "instances" / instance_id).absolute()

    def _cache(self, region: str) -> BaseCache:
        with self._lock:
            cache = self._caches.get(region)
            if cache is None:
                cache = BaseCache(self.region_dir(region) / "bases")
                self._caches[region] = cache
            return cache

    def base(self, region: str, snapshot_id: str) -> Path:
        """The snapshot restored as a raw file (restored on first use, then cached)."""
        repo = self._snapshots.repository(region)
        return self._cache(region).get(snapshot_id, repo.restore)

    def create(self, region: str, volume_id: str, snapshot_id: str | None, size_gib: int) -> Path:
        """Make the volume's file unless it exists (idempotent: launches may be retried)."""
        path = self.path(region, volume_id)
        if path.exists():
            return path
        path.parent.mkdir(parents=True, exist_ok=True)
        size = size_gib * GIB
        if snapshot_id is None:
            create_empty(path, size)
        else:
            base = self.base(region, snapshot_id)
            create_overlay(base, path, max(size, base.stat().st_size))
        return path

    @contextmanager
    def raw_view(self, region: str, volume_id: str, snapshot_id: str | None) -> Iterator[Path]:
        """The volume's current content as a raw file, for reading (PV-GRUB boot files).

        A volume the guest has not written yet is exactly its snapshot: its cached base is
        used as it is (a first launch costs nothing more). Otherwise the volume is exported
        to a temporary sparse raw file, removed afterwards.
        """
        path = self.path(region, volume_id)
        if snapshot_id is not None and not changed_ranges(path, True):
            yield self.base(region, snapshot_id)
            return
        tmp_dir = self.region_dir(region) / "tmp"
        tmp_dir.mkdir(parents=True, exist_ok=True)
        tmp = tmp_dir / f"{volume_id}.boot.raw"
        try:
            yield export_raw(path, tmp, force_share=True)
        finally:
            tmp.unlink(missing_ok=True)

    def delete(self, region: str, volume_id: str) -> None:
        self.path(region, volume_id).unlink(missing_ok=True)

    def size(self, region: str, volume_id: str) -> int:
        return virtual_size(self.path(region, volume_id), force_share=True)

    def snapshot(
        self,
        region: str,
        volume_id: str,
        source_snapshot: str | None,
        new_snapshot_id: str,
        *,
        force_share: bool = False,
    ) -> None:
        """Write the volume's current content to the store as ``new_snapshot_id``.

        The VM must not write meanwhile (stopped, or paused with ``force_share``).
        """
        repo = self._snapshots.repository(region)
        path = self.path(region, volume_id)
        tmp_dir = self.region_dir(region) / "tmp"
        tmp_dir.mkdir(parents=True, exist_ok=True)
        tmp = tmp_dir / f"{new_snapshot_id}.raw"
        parent = source_snapshot if source_snapshot and repo.exists(source_snapshot) else None
        try:
            if parent is not None:
                ranges = export_changed(
                    path,
                    tmp,
                    changed_ranges(path, True),
                    align=repo.chunk_size,
                    force_share=force_share,
                )
                repo.snapshot_file(tmp, new_snapshot_id, parent=parent, changed_ranges=ranges)
            else:
                full = [(0, virtual_size(path, force_share=True))]
                export_changed(path, tmp, full, align=repo.chunk_size, force_share=force_share)
                repo.snapshot_file(tmp, new_snapshot_id)
        finally:
            tmp.unlink(missing_ok=True)

    def link_into(self, source: Path, dest: Path) -> Path:
        """Hard-link (or copy) a cached file into an instance's run directory."""
        dest.parent.mkdir(parents=True, exist_ok=True)
        if dest.exists():
            return dest
        try:
            os.link(source, dest)
        except OSError:
            shutil.copyfile(source, dest)
        return dest
