"""``goldsmith store``: verify, garbage-collect and account a region's snapshot store.

The store of region R lives in ``<data-dir>/regions/R/store``; ``--repo`` names a repository
directory directly. These commands work while the server runs (GC follows the store's lock
protocol, so concurrent snapshots stay safe).
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Annotated

import typer
from rich.progress import BarColumn, DownloadColumn, Progress, TimeRemainingColumn

from goldsmith.cli.common import DataDirOption, JsonOption, fail, print_json, settings_from
from goldsmith.store import Repository, StoreError

app = typer.Typer(
    help="Verify, garbage-collect and report usage of a snapshot store.", no_args_is_help=True
)

RegionOption = Annotated[
    str, typer.Option("--region", help="Region whose store to open.", show_default=True)
]
RepoOption = Annotated[
    Path | None,
    typer.Option("--repo", help="Open this repository directory instead.", show_default=False),
]


def repo_path(data_dir: Path | None, region: str, repo: Path | None) -> Path:
    """The repository directory the options name: ``--repo``, else the region's store as the
    configuration places it (``region_stores`` in the data directory's goldsmith.toml)."""
    if repo is not None:
        return repo
    return settings_from(data_dir).region_store(region)


def _open(data_dir: Path | None, region: str, repo: Path | None) -> Repository:
    path = repo_path(data_dir, region, repo)
    if not (path / "config").is_file():
        raise fail(f"no snapshot store at {path}")
    try:
        return Repository.open(path, create=False)
    except StoreError as exc:
        raise fail(str(exc)) from exc


def _human(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1024
    return f"{n} B"  # pragma: no cover - loop always returns


@app.command("check")
def check(
    data_dir: DataDirOption = None,
    region: RegionOption = "us-east-1",
    repo: RepoOption = None,
    read_data: Annotated[
        bool, typer.Option("--read-data", help="Also read and re-hash every chunk.")
    ] = False,
    as_json: JsonOption = False,
) -> None:
    """Check manifests and chunk references; exit 1 when anything is damaged."""
    repository = _open(data_dir, region, repo)
    try:
        if read_data and not as_json:
            with Progress(
                "[progress.description]{task.description}",
                BarColumn(),
                DownloadColumn(),
                TimeRemainingColumn(),
            ) as bar:
                task = bar.add_task("reading chunks", total=None)
                report = repository.check(
                    read_data=True,
                    progress=lambda done, total: bar.update(task, completed=done, total=total),
                )
        else:
            report = repository.check(read_data=read_data)
    except StoreError as exc:
        raise fail(str(exc)) from exc
    if as_json:
        print_json({**asdict(report), "ok": report.ok})
    else:
        typer.echo(
            f"{report.snapshots} snapshots, {report.chunks} chunks "
            f"({report.unreferenced_chunks} unreferenced)"
            + (f", {report.chunks_read} chunks read" if read_data else "")
        )
        for issue in report.issues:
            typer.echo(f"{issue.kind}: {issue.message}", err=True)
        typer.echo("ok" if report.ok else f"{len(report.issues)} problem(s) found")
    if not report.ok:
        raise typer.Exit(1)


@app.command("gc")
def gc(
    data_dir: DataDirOption = None,
    region: RegionOption = "us-east-1",
    repo: RepoOption = None,
    grace: Annotated[
        float,
        typer.Option("--grace", help="Keep unreferenced chunks younger than this (seconds)."),
    ] = 3600.0,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Only report what would be deleted.")
    ] = False,
    as_json: JsonOption = False,
) -> None:
    """Delete chunks that no snapshot references (safe while snapshots are being taken)."""
    repository = _open(data_dir, region, repo)
    try:
        report = repository.gc(grace=grace, dry_run=dry_run)
    except StoreError as exc:
        raise fail(str(exc)) from exc
    if as_json:
        print_json(asdict(report))
        return
    verb = "would delete" if dry_run else "deleted"
    typer.echo(
        f"{verb} {report.chunks_deleted} of {report.chunks_before} chunks "
        f"({_human(report.bytes_freed)}); {report.snapshots} snapshots kept"
    )


@app.command("usage")
def usage(
    snapshot_ids: Annotated[
        list[str] | None,
        typer.Argument(
            help="Snapshots to account for together (default: all).", show_default=False
        ),
    ] = None,
    data_dir: DataDirOption = None,
    region: RegionOption = "us-east-1",
    repo: RepoOption = None,
    as_json: JsonOption = False,
) -> None:
    """Logical, stored and unique bytes per snapshot, and the total stored (billed) bytes."""
    repository = _open(data_dir, region, repo)
    try:
        report = repository.usage(snapshot_ids or None)
    except (StoreError, ValueError) as exc:
        raise fail(str(exc)) from exc
    if as_json:
        print_json(asdict(report))
        return
    typer.echo(f"{'snapshot':<28} {'logical':>11} {'data':>11} {'stored':>11} {'unique':>11}")
    for s in report.snapshots:
        typer.echo(
            f"{s.snapshot_id:<28} {_human(s.logical):>11} {_human(s.data):>11} "
            f"{_human(s.stored):>11} {_human(s.unique):>11}"
        )
    typer.echo(f"total: logical {_human(report.logical)}, stored {_human(report.stored)}")


@app.command("list")
def list_snapshots(
    data_dir: DataDirOption = None,
    region: RegionOption = "us-east-1",
    repo: RepoOption = None,
) -> None:
    """List the ids of the snapshots in the store."""
    for sid in _open(data_dir, region, repo).list_snapshots():
        typer.echo(sid)
