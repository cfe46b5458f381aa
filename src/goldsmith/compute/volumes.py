"""Volumes as copy-on-write overlays over snapshots, and what CreateSnapshot needs from them.

Layout the service is expected to use::

    bases/<snapshot-id>.raw      sparse raw restore of a snapshot, read-only, shared (BaseCache)
    volumes/<volume-id>.qcow2    qcow2 overlay, backing file = the base (or a plain qcow2)

Launch cost: restoring a snapshot happens once per snapshot (:class:`BaseCache`), and a
volume is then a qcow2 file of a few hundred KiB whatever the image size
(:func:`create_overlay`), so RunInstances does not grow with the image.

Snapshot cost: the overlay's top layer is exactly what the volume changed since its source
snapshot. :func:`changed_ranges` lists it (``qemu-img map``: extents at depth 0 that are
present — data or written zeros); :func:`export_changed` copies the volume's current bytes
at those ranges, widened to whole store chunks, into a sparse raw file of the volume's size,
reading them through ``qemu-nbd`` + :class:`~goldsmith.compute.nbd.NbdClient`. The store then
snapshots that file incrementally::

    ranges = export_changed(overlay, tmp_raw, align=repo.chunk_size)
    repo.snapshot_file(tmp_raw, new_id, parent=source_snapshot, changed_ranges=ranges)

Every byte outside ``ranges`` in ``tmp_raw`` is a hole, and the store promises to read only
chunks touching ``ranges`` (plus those beyond the parent's end, which the volume's
growth made and which are holes = zeros unless written). A running VM's overlay is open in
QEMU with cached metadata: pause the VM first (QMP ``stop`` drains and flushes every disk;
:meth:`Hypervisor.pause`), read with ``force_share=True``, then resume — or stop it
(CreateImage with NoReboot=false shuts the guest down first).
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from goldsmith.compute.errors import VolumeError
from goldsmith.compute.nbd import NbdClient

DEFAULT_ALIGN = 512 * 1024  # the store's default chunk size: export whole chunks
QEMU_IMG_TIMEOUT = 120.0
_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")

Range = tuple[int, int]


def _run(args: list[str], timeout: float = QEMU_IMG_TIMEOUT) -> str:
    try:
        done = subprocess.run(args, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired as exc:
        raise VolumeError(f"{args[0]} timed out after {timeout}s") from exc
    except OSError as exc:
        raise VolumeError(f"cannot run {args[0]}: {exc}") from exc
    if done.returncode != 0:
        raise VolumeError(f"{' '.join(args[:2])} failed: {done.stderr.strip()}")
    return done.stdout


def image_info(path: Path, force_share: bool = False) -> dict[str, Any]:
    """``qemu-img info`` as a dict (``virtual-size``, ``format``, ``backing-filename`` …)."""
    args = ["qemu-img", "info", "--output=json", *(["-U"] if force_share else []), str(path)]
    info: dict[str, Any] = json.loads(_run(args))
    return info


def virtual_size(path: Path, force_share: bool = False) -> int:
    """The size the guest sees, in bytes."""
    return int(image_info(path, force_share)["virtual-size"])


def _create_atomic(path: Path, args: list[str]) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        _run(["qemu-img", "create", "-q", *args[:-1], str(tmp), args[-1]])
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def create_overlay(base: Path, overlay: Path, size: int | None = None) -> None:
    """A qcow2 ``overlay`` over the raw ``base``, of ``size`` bytes (default: the base's).

    ``size`` may exceed the base (EC2: a volume may be larger than its snapshot; the guest
    grows its filesystem); it may not be smaller. The overlay records ``base`` by absolute
    path, so bases must not move while volumes use them.
    """
    base = base.absolute()
    base_size = base.stat().st_size
    size = base_size if size is None else size
    if size < base_size:
        raise VolumeError(f"volume size {size} is smaller than its snapshot ({base_size})")
    if overlay.exists():
        raise VolumeError(f"{overlay} already exists")
    _create_atomic(overlay, ["-f", "qcow2", "-b", str(base), "-F", "raw", str(size)])


def create_empty(path: Path, size: int) -> None:
    """A plain qcow2 volume of ``size`` bytes (CreateVolume without a snapshot)."""
    if path.exists():
        raise VolumeError(f"{path} already exists")
    _create_atomic(path, ["-f", "qcow2", str(size)])


def grow(path: Path, size: int) -> None:
    """Grow a volume to ``size`` bytes (ModifyVolume); shrinking is refused, as on EC2."""
    if size < virtual_size(path):
        raise VolumeError("a volume cannot shrink")
    _run(["qemu-img", "resize", "-q", "-f", "qcow2", str(path), str(size)])


def export_raw(volume: Path, dest: Path, force_share: bool = False) -> Path:
    """The volume's current content as a sparse raw file ``dest`` (``qemu-img convert``).

    Costs what the volume holds, not its size (holes stay holes); used to read files out of
    a volume the guest changed (PV-GRUB boot files).
    """
    tmp = dest.with_name(f".{dest.name}.{os.getpid()}.tmp")
    share = ["-U"] if force_share else []
    try:
        _run(["qemu-img", "convert", *share, "-f", "qcow2", "-O", "raw", str(volume), str(tmp)])
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)
    return dest


def changed_ranges(overlay: Path, force_share: bool = False) -> list[Range]:
    """(offset, length) extents the overlay's top layer holds: what changed since its base.

    Contiguous extents are merged. Written zeros count (they hide base data); unallocated
    space past the base's end does not (it reads as zeros and was never written).
    """
    args = ["qemu-img", "map", "--output=json", "-f", "qcow2"]
    extents = json.loads(_run([*args, *(["-U"] if force_share else []), str(overlay)]))
    out: list[Range] = []
    for extent in extents:
        if extent["depth"] != 0 or not extent.get("present", True):
            continue
        start, length = int(extent["start"]), int(extent["length"])
        if out and out[-1][0] + out[-1][1] == start:
            out[-1] = (out[-1][0], out[-1][1] + length)
        else:
            out.append((start, length))
    return out


def align_ranges(ranges: list[Range], align: int, size: int) -> list[Range]:
    """Widen ranges to multiples of ``align`` (clipped to ``size``) and merge overlaps."""
    out: list[Range] = []
    for offset, length in sorted(ranges):
        start = offset // align * align
        end = min(-(-(offset + length) // align) * align, size)
        if out and start <= out[-1][0] + out[-1][1]:
            prev_start, prev_len = out[-1]
            out[-1] = (prev_start, max(prev_start + prev_len, end) - prev_start)
        elif end > start:
            out.append((start, end - start))
    return out


@contextmanager
def nbd_export(image: Path, fmt: str = "qcow2", force_share: bool = False) -> Iterator[NbdClient]:
    """Serve ``image`` read-only with ``qemu-nbd`` on a private socket; yield a client.

    ``force_share`` reads an image another QEMU process holds open (a paused VM: its
    flushed image cannot change while we read). qemu-nbd 7.2 has no ``--force-share``, so
    the image is opened through ``--image-opts`` with ``file.locking=off`` instead.
    """
    with tempfile.TemporaryDirectory(prefix="gs-nbd-") as tmp:
        sock = Path(tmp) / "nbd.sock"
        args = ["qemu-nbd", "--read-only", "--socket", str(sock)]
        args += ["--export-name", "vol", "--cache", "none", "--aio", "threads"]
        if force_share:
            args += ["--image-opts", _unlocked_image_opts(image, fmt)]
        else:
            args += ["--format", fmt, str(image)]
        proc = subprocess.Popen(
            args,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        try:
            with _connect(proc, sock, image) as client:
                yield client
        finally:
            proc.kill()
            proc.wait()
            if proc.stderr:
                proc.stderr.close()


def _connect(proc: subprocess.Popen[bytes], sock: Path, image: Path) -> NbdClient:
    """Connect to ``proc``'s socket once it listens (qemu-nbd creates the socket file just
    before it calls listen(), so a connection can be refused for a moment)."""
    deadline = time.monotonic() + 10
    while True:
        if sock.exists():
            try:
                return NbdClient(sock, "vol")
            except VolumeError as exc:
                if not isinstance(exc.__cause__, ConnectionRefusedError):
                    raise
        if proc.poll() is not None or time.monotonic() > deadline:
            err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
            raise VolumeError(f"qemu-nbd could not serve {image}: {err.strip()}")
        time.sleep(0.005)


def _unlocked_image_opts(image: Path, fmt: str) -> str:
    """``--image-opts`` for ``image`` without QEMU's image locking (commas doubled, as
    QEMU's option syntax requires inside a value)."""
    filename = str(image.absolute()).replace(",", ",,")
    return f"driver={fmt},file.driver=file,file.filename={filename},file.locking=off"


def export_changed(
    overlay: Path,
    dest: Path,
    ranges: list[Range] | None = None,
    *,
    align: int = DEFAULT_ALIGN,
    force_share: bool = False,
) -> list[Range]:
    """Write the volume's bytes at its changed ranges into a sparse raw ``dest``.

    ``ranges`` defaults to :func:`changed_ranges`; they are widened to ``align`` (pass the
    store's chunk size) so that every chunk the store reads is complete. ``dest`` gets the
    volume's virtual size; all-zero blocks stay holes. Returns the aligned ranges written —
    pass them as ``changed_ranges`` to ``Repository.snapshot_file``.
    """
    size = virtual_size(overlay, force_share)
    if ranges is None:
        ranges = changed_ranges(overlay, force_share)
    aligned = align_ranges(ranges, align, size)
    tmp = dest.with_name(f".{dest.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    try:
        os.ftruncate(fd, size)
        with nbd_export(overlay, force_share=force_share) as nbd:
            for offset, length in aligned:
                _copy_range(nbd, fd, offset, length)
        os.fsync(fd)
        os.close(fd)
        fd = -1
        os.replace(tmp, dest)
    finally:
        if fd >= 0:
            os.close(fd)
        tmp.unlink(missing_ok=True)
    return aligned


def _copy_range(nbd: NbdClient, fd: int, offset: int, length: int) -> None:
    step = 1024 * 1024
    zero = bytes(step)
    end = offset + length
    while offset < end:
        n = min(step, end - offset)
        data = nbd.read(offset, n)
        if data != zero[:n]:  # leave zeros as holes
            os.pwrite(fd, data, offset)
        offset += n


class BaseCache:
    """Read-only raw restores of snapshots, each made once (``bases/<snapshot-id>.raw``).

    :meth:`get` calls the caller's ``restore(snapshot_id, dest)`` at most once per snapshot,
    even with concurrent callers in several threads or processes (a per-snapshot ``flock``),
    into a temporary file that is renamed into place only when complete; a failed restore
    leaves nothing behind and may be retried.
    """

    def __init__(self, root: Path) -> None:
        self.root = root
        self.root.mkdir(parents=True, exist_ok=True)
        self._locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()

    def path(self, snapshot_id: str) -> Path:
        """Where the base of ``snapshot_id`` lives (whether or not it exists yet)."""
        if not _ID_RE.match(snapshot_id):
            raise VolumeError(f"bad snapshot id {snapshot_id!r}")
        return self.root / f"{snapshot_id}.raw"

    def get(self, snapshot_id: str, restore: Callable[[str, Path], None]) -> Path:
        """The base of ``snapshot_id``, restoring it first when it is not cached."""
        final = self.path(snapshot_id)
        if final.exists():
            return final
        with self._guard:
            lock = self._locks.setdefault(snapshot_id, threading.Lock())
        with lock, (self.root / f".{snapshot_id}.lock").open("a") as lockfile:
            fcntl.flock(lockfile, fcntl.LOCK_EX)
            if final.exists():  # another thread or process restored it meanwhile
                return final
            tmp = self.root / f".{snapshot_id}.{os.getpid()}.{threading.get_ident()}.tmp"
            try:
                restore(snapshot_id, tmp)
                if not tmp.exists():
                    raise VolumeError(f"restore of {snapshot_id} produced no file")
                with tmp.open("rb+") as f:
                    os.fsync(f.fileno())
                tmp.chmod(0o444)
                os.replace(tmp, final)
            except VolumeError:
                raise
            except Exception as exc:
                raise VolumeError(f"restoring {snapshot_id} failed: {exc}") from exc
            finally:
                tmp.unlink(missing_ok=True)
        return final

    def evict(self, snapshot_id: str) -> None:
        """Delete a cached base (the caller checks that no volume still uses it)."""
        self.path(snapshot_id).unlink(missing_ok=True)
