"""``goldsmith snapshots``: upload and download disks, list, share, delete — an API client.

Every command talks to a running server with boto3, like any other client: disk bytes go
through the EBS direct API (``ebs``), everything else through EC2. ``--endpoint`` (default
http://127.0.0.1:4566), ``--region``, credentials from the AWS environment variables,
``--profile``, or the admin credentials in ``<data-dir>/admin-credentials``.

``upload`` sends only the blocks that hold data (holes are not read, zero blocks are not
sent) and is resumable: its ClientToken is derived from the disk (path, size, mtime) and the
options, so running it again after an interruption finds the same pending snapshot, asks
ListSnapshotBlocks which blocks the server already has, and sends the rest. qcow2 disks are
converted to a sparse raw file with ``qemu-img convert`` first.

``copy`` copies a snapshot into another region (or the same one) and follows the copy with
a live bar — bytes moved / bytes needed and throughput — read from the copy's Progress and
StateMessage (DescribeSnapshots); ``images copy`` uses the same watcher.
"""

from __future__ import annotations

import base64
import hashlib
import os
import re
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import typer
from botocore.exceptions import ClientError
from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)
from rich.table import Table

from goldsmith.cli.api_client import (
    DEFAULT_ENDPOINT,
    Api,
    EndpointOption,
    ProfileOption,
    RegionOption,
)
from goldsmith.cli.common import DataDirOption, JsonOption, fail, print_json
from goldsmith.service.snapshots import COPY_PROGRESS
from goldsmith.store.writer import data_chunks

app = typer.Typer(help="Upload, download, share and delete snapshots.", no_args_is_help=True)

BLOCK = 512 * 1024
GIB = 1024**3
QCOW2_MAGIC = b"QFI\xfb"

SnapArg = Annotated[str, typer.Argument(help="Snapshot id (snap-…).")]


def _checksum(data: bytes) -> str:
    return base64.b64encode(hashlib.sha256(data).digest()).decode()


@contextmanager
def _raw_disk(path: Path) -> Iterator[Path]:
    """``path`` itself if raw, else a sparse raw conversion of the qcow2 image."""
    with open(path, "rb") as f:
        qcow2 = f.read(4) == QCOW2_MAGIC
    if not qcow2:
        yield path
        return
    with tempfile.TemporaryDirectory(prefix="gs-upload-") as tmp:
        raw = Path(tmp) / "disk.raw"
        try:
            subprocess.run(
                ["qemu-img", "convert", "-O", "raw", "-S", "4k", str(path), str(raw)],
                check=True,
                capture_output=True,
            )
        except (OSError, subprocess.CalledProcessError) as exc:
            raise fail(f"cannot convert qcow2 image {path}: {exc}") from exc
        yield raw


def _token(path: Path, extra: str) -> str:
    st = path.stat()
    key = f"{path.resolve()}|{st.st_size}|{st.st_mtime_ns}|{extra}"
    return "gs-upload-" + hashlib.sha256(key.encode()).hexdigest()[:48]


def _pending_blocks(api: Api, snapshot_id: str) -> set[int]:
    """Blocks the server already holds for a pending upload."""
    out: set[int] = set()
    params: dict[str, Any] = {"SnapshotId": snapshot_id, "MaxResults": 10000}
    while True:
        page = api.ebs_call("list_snapshot_blocks", **params)
        out.update(b["BlockIndex"] for b in page["Blocks"])
        if not page.get("NextToken"):
            return out
        params["NextToken"] = page["NextToken"]


def _progress() -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total} blocks"),
        TimeRemainingColumn(),
        console=Console(stderr=True),
        transient=False,
    )


@app.command("upload")
def upload(
    disk: Annotated[Path, typer.Argument(help="Disk image: raw or qcow2.", exists=True)],
    description: Annotated[str, typer.Option("--description", help="Description.")] = "",
    parent: Annotated[
        str | None, typer.Option("--parent", help="Parent snapshot (incremental upload).")
    ] = None,
    tags: Annotated[list[str] | None, typer.Option("--tag", help="KEY=VALUE (repeatable).")] = None,
    restart: Annotated[
        bool, typer.Option("--restart", help="Start a new upload instead of resuming.")
    ] = False,
    workers: Annotated[int, typer.Option("--workers", min=1, max=32, help="Parallel puts.")] = 4,
    endpoint: EndpointOption = DEFAULT_ENDPOINT,
    region: RegionOption = "us-east-1",
    profile: ProfileOption = None,
    data_dir: DataDirOption = None,
    as_json: JsonOption = False,
) -> None:
    """Upload a disk as a new snapshot (resumable; only blocks with data are sent)."""
    api = Api(endpoint, region, profile, data_dir)
    tag_list = []
    for item in tags or []:
        key, sep, value = item.partition("=")
        if not sep:
            raise fail(f"--tag must be KEY=VALUE, got {item!r}")
        tag_list.append({"Key": key, "Value": value})
    salt = os.urandom(8).hex() if restart else ""
    token = _token(disk, f"{description}|{parent}|{tag_list}|{salt}")
    with _raw_disk(disk) as raw:
        size = raw.stat().st_size
        params: dict[str, Any] = {
            "VolumeSize": max(1, -(-size // GIB)),
            "Description": description,
            "ClientToken": token,
            "Timeout": 4320,
        }
        if parent:
            params["ParentSnapshotId"] = parent
        if tag_list:
            params["Tags"] = tag_list
        started = api.ebs_call("start_snapshot", **params)
        snapshot_id = started["SnapshotId"]
        if started["Status"] == "completed":
            _done(snapshot_id, 0, 0, as_json, "already uploaded")
            return
        if started["Status"] != "pending":
            raise fail(f"{snapshot_id} is in state {started['Status']}; use --restart")
        have = _pending_blocks(api, snapshot_id)
        sent = _send(api, raw, size, snapshot_id, have, workers)
        api.ebs_call(
            "complete_snapshot", SnapshotId=snapshot_id, ChangedBlocksCount=len(have | sent)
        )
    _done(snapshot_id, len(sent), len(have), as_json, "uploaded")


def _send(
    api: Api, raw: Path, size: int, snapshot_id: str, have: set[int], workers: int
) -> set[int]:
    """Put every non-zero block of ``raw`` the server does not have; return those sent."""
    sent: set[int] = set()
    lock = threading.Lock()
    fd = os.open(raw, os.O_RDONLY)
    try:
        indexes = [i for i in data_chunks(fd, size, BLOCK) if i not in have]

        def put(index: int) -> None:
            data = os.pread(fd, BLOCK, index * BLOCK).ljust(BLOCK, b"\0")
            if data.count(0) != BLOCK:
                api.ebs_call(
                    "put_snapshot_block",
                    SnapshotId=snapshot_id,
                    BlockIndex=index,
                    BlockData=data,
                    DataLength=BLOCK,
                    Checksum=_checksum(data),
                    ChecksumAlgorithm="SHA256",
                )
                with lock:
                    sent.add(index)
            progress.advance(task)

        with _progress() as progress:
            task = progress.add_task(f"upload {snapshot_id}", total=len(indexes))
            with ThreadPoolExecutor(workers) as pool:
                for future in [pool.submit(put, i) for i in indexes]:
                    future.result()
    finally:
        os.close(fd)
    return sent


def _done(snapshot_id: str, sent: int, kept: int, as_json: bool, verb: str) -> None:
    if as_json:
        print_json({"SnapshotId": snapshot_id, "BlocksSent": sent, "BlocksResumed": kept})
    else:
        typer.echo(f"{snapshot_id} {verb} ({sent} blocks sent, {kept} already there)")


@app.command("download")
def download(
    snapshot_id: SnapArg,
    dest: Annotated[Path, typer.Argument(help="Output file (raw, sparse).")],
    workers: Annotated[int, typer.Option("--workers", min=1, max=32, help="Parallel gets.")] = 4,
    endpoint: EndpointOption = DEFAULT_ENDPOINT,
    region: RegionOption = "us-east-1",
    profile: ProfileOption = None,
    data_dir: DataDirOption = None,
) -> None:
    """Download a snapshot to a sparse raw file (its full volume size)."""
    api = Api(endpoint, region, profile, data_dir)
    blocks: list[dict[str, Any]] = []
    params: dict[str, Any] = {"SnapshotId": snapshot_id, "MaxResults": 10000}
    while True:
        page = api.ebs_call("list_snapshot_blocks", **params)
        blocks += page["Blocks"]
        size = int(page["VolumeSize"]) * GIB
        if not page.get("NextToken"):
            break
        params["NextToken"] = page["NextToken"]
    tmp = dest.with_name(f".{dest.name}.part")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        os.ftruncate(fd, size)

        def get(block: dict[str, Any]) -> None:
            got = api.ebs_call(
                "get_snapshot_block",
                SnapshotId=snapshot_id,
                BlockIndex=block["BlockIndex"],
                BlockToken=block["BlockToken"],
            )
            data = got["BlockData"].read()
            if _checksum(data) != got["Checksum"]:
                raise fail(f"block {block['BlockIndex']}: checksum mismatch")
            os.pwrite(fd, data, block["BlockIndex"] * BLOCK)
            progress.advance(task)

        with _progress() as progress:
            task = progress.add_task(f"download {snapshot_id}", total=len(blocks))
            with ThreadPoolExecutor(workers) as pool:
                for future in [pool.submit(get, b) for b in blocks]:
                    future.result()
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        tmp.unlink(missing_ok=True)
        raise
    os.close(fd)
    tmp.rename(dest)
    typer.echo(f"{snapshot_id} → {dest} ({len(blocks)} blocks, {size} bytes)")


@app.command("list")
def list_snapshots(
    owner: Annotated[
        list[str] | None, typer.Option("--owner", help="self, an account id, or amazon.")
    ] = None,
    filters: Annotated[
        list[str] | None, typer.Option("--filter", help="NAME=VALUE[,VALUE] (repeatable).")
    ] = None,
    endpoint: EndpointOption = DEFAULT_ENDPOINT,
    region: RegionOption = "us-east-1",
    profile: ProfileOption = None,
    data_dir: DataDirOption = None,
    as_json: JsonOption = False,
) -> None:
    """List snapshots you may see (default: your own)."""
    api = Api(endpoint, region, profile, data_dir)
    params: dict[str, Any] = {"OwnerIds": owner or ["self"]}
    specs = []
    for item in filters or []:
        name, sep, values = item.partition("=")
        if not sep:
            raise fail(f"--filter must be NAME=VALUE[,VALUE], got {item!r}")
        specs.append({"Name": name, "Values": values.split(",")})
    if specs:
        params["Filters"] = specs
    snapshots = []
    for page in api.ec2.get_paginator("describe_snapshots").paginate(**params):
        snapshots += page["Snapshots"]
    if as_json:
        print_json(snapshots)
        return
    table = Table("Snapshot", "Owner", "State", "Size (GiB)", "Data", "Started", "Description")
    for s in snapshots:
        table.add_row(
            s["SnapshotId"],
            s.get("OwnerAlias") or s["OwnerId"],
            f"{s['State']} {s.get('Progress', '')}",
            str(s["VolumeSize"]),
            _human(s.get("FullSnapshotSizeInBytes")),
            str(s["StartTime"])[:19],
            s.get("Description", ""),
        )
    Console().print(table)


def _human(value: int | None) -> str:
    if value is None:
        return "-"
    size = float(value)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return str(value)


@app.command("show")
def show(
    snapshot_id: SnapArg,
    endpoint: EndpointOption = DEFAULT_ENDPOINT,
    region: RegionOption = "us-east-1",
    profile: ProfileOption = None,
    data_dir: DataDirOption = None,
) -> None:
    """Show one snapshot in full, with its createVolumePermission when it is yours (JSON)."""
    api = Api(endpoint, region, profile, data_dir)
    (snapshot,) = api.call("describe_snapshots", SnapshotIds=[snapshot_id])["Snapshots"]
    try:
        permissions = api.ec2.describe_snapshot_attribute(
            SnapshotId=snapshot_id, Attribute="createVolumePermission"
        )["CreateVolumePermissions"]
        snapshot["CreateVolumePermissions"] = permissions
    except ClientError:
        pass  # not the owner: the attribute is not readable
    print_json(snapshot)


@app.command("delete")
def delete(
    snapshot_id: SnapArg,
    endpoint: EndpointOption = DEFAULT_ENDPOINT,
    region: RegionOption = "us-east-1",
    profile: ProfileOption = None,
    data_dir: DataDirOption = None,
) -> None:
    """Delete a snapshot (refused while an image uses it)."""
    Api(endpoint, region, profile, data_dir).call("delete_snapshot", SnapshotId=snapshot_id)
    typer.echo(f"{snapshot_id} deleted")


def _modify(
    operation: str,
    snapshot_id: str,
    accounts: list[str] | None,
    public: bool,
    api: Api,
) -> None:
    if not accounts and not public:
        raise fail("give --account ID (repeatable) and/or --public")
    params: dict[str, Any] = {
        "SnapshotId": snapshot_id,
        "Attribute": "createVolumePermission",
        "OperationType": operation,
    }
    if accounts:
        params["UserIds"] = accounts
    if public:
        params["GroupNames"] = ["all"]
    api.call("modify_snapshot_attribute", **params)


AccountsOption = Annotated[
    list[str] | None, typer.Option("--account", help="Account id (repeatable).")
]
PublicOption = Annotated[bool, typer.Option("--public", help="Every account (group all).")]


@app.command("share")
def share(
    snapshot_id: SnapArg,
    accounts: AccountsOption = None,
    public: PublicOption = False,
    endpoint: EndpointOption = DEFAULT_ENDPOINT,
    region: RegionOption = "us-east-1",
    profile: ProfileOption = None,
    data_dir: DataDirOption = None,
) -> None:
    """Let accounts (or everyone) create volumes from, copy and read a snapshot."""
    _modify("add", snapshot_id, accounts, public, Api(endpoint, region, profile, data_dir))
    typer.echo(f"{snapshot_id} shared")


@app.command("unshare")
def unshare(
    snapshot_id: SnapArg,
    accounts: AccountsOption = None,
    public: PublicOption = False,
    endpoint: EndpointOption = DEFAULT_ENDPOINT,
    region: RegionOption = "us-east-1",
    profile: ProfileOption = None,
    data_dir: DataDirOption = None,
) -> None:
    """Withdraw createVolumePermission from accounts (or from everyone)."""
    _modify("remove", snapshot_id, accounts, public, Api(endpoint, region, profile, data_dir))
    typer.echo(f"{snapshot_id} unshared")


# Copies ---------------------------------------------------------------------------------


@dataclass
class CopyStatus:
    """Where copies stand: the summed bytes of their snapshots' StateMessages."""

    states: dict[str, str]
    moved: int = 0
    needed: int = 0
    present: int = 0

    @property
    def done(self) -> bool:
        return all(s != "pending" for s in self.states.values())


def copy_status(api: Api, snapshot_ids: list[str]) -> CopyStatus:
    """DescribeSnapshots of copies → their states and bytes moved / needed / present."""
    found = api.call("describe_snapshots", SnapshotIds=snapshot_ids)["Snapshots"]
    status = CopyStatus({s["SnapshotId"]: s["State"] for s in found})
    for snapshot in found:
        message = snapshot.get("StateMessage") or ""
        moved = COPY_PROGRESS.search(message)
        if moved is not None:
            status.moved += int(moved.group(1))
            status.needed += int(moved.group(2))
        present = re.search(r"(\d+) bytes already present", message)
        if present is not None:
            status.present += int(present.group(1))
    return status


def watch_copy(
    poll: Callable[[], CopyStatus], label: str, *, interval: float = 0.5, quiet: bool = False
) -> CopyStatus:
    """Poll until the copy ends, with a live bar: bytes moved / needed and throughput."""
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=Console(stderr=True), disable=quiet) as bar:
        task = bar.add_task(label, total=None)
        while True:
            status = poll()
            bar.update(task, total=status.needed or None, completed=status.moved)
            if status.done:
                bar.update(task, total=status.needed or 1, completed=status.needed or 1)
                return status
            time.sleep(interval)


def copy_summary(status: CopyStatus, seconds: float) -> str:
    return (
        f"moved {_human(status.moved)} of {_human(status.needed)}, "
        f"{_human(status.present)} already present, {seconds:.1f} s"
    )


@app.command("copy")
def copy(
    snapshot_id: SnapArg,
    to: Annotated[
        str | None, typer.Option("--to", help="Destination region (default: --region).")
    ] = None,
    description: Annotated[
        str | None, typer.Option("--description", help="Description of the copy.")
    ] = None,
    no_wait: Annotated[
        bool, typer.Option("--no-wait", help="Print the new id and return at once.")
    ] = False,
    endpoint: EndpointOption = DEFAULT_ENDPOINT,
    region: RegionOption = "us-east-1",
    profile: ProfileOption = None,
    data_dir: DataDirOption = None,
    as_json: JsonOption = False,
) -> None:
    """Copy a snapshot of --region into --to (only missing chunks move), with progress."""
    dest = Api(endpoint, to or region, profile, data_dir)
    params: dict[str, Any] = {"SourceRegion": region, "SourceSnapshotId": snapshot_id}
    if description:
        params["Description"] = description
    started = time.monotonic()
    new_id = dest.call("copy_snapshot", **params)["SnapshotId"]
    if no_wait:
        typer.echo(new_id)
        return
    status = watch_copy(lambda: copy_status(dest, [new_id]), new_id, quiet=as_json)
    state = status.states.get(new_id, "unknown")
    if as_json:
        print_json(
            {
                "SnapshotId": new_id,
                "State": state,
                "BytesMoved": status.moved,
                "BytesNeeded": status.needed,
                "BytesAlreadyPresent": status.present,
            }
        )
    else:
        summary = copy_summary(status, time.monotonic() - started)
        typer.echo(f"{new_id}: {state} in {to or region} ({summary})")
    if state != "completed":
        raise typer.Exit(1)
