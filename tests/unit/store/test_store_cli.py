"""``goldsmith store`` commands: check, gc, usage, list."""

from __future__ import annotations

import json
from pathlib import Path

from store_helpers import ImageFactory, MiB
from typer.testing import CliRunner

from goldsmith.cli.store_cmd import app
from goldsmith.store import Repository
from goldsmith.store.formats import chunk_name

runner = CliRunner()


def _store(tmp_path: Path, image: ImageFactory) -> Path:
    root = tmp_path / "data" / "regions" / "eu-west-1" / "store"
    repo = Repository.open(root, layout="loose")  # format 1: chunk files to damage
    path, _ = image(2 * MiB, ranges=[(0, 2 * MiB)])
    repo.snapshot_file(path, "snap-1")
    repo.snapshot_file(path, "snap-2", parent="snap-1")
    return root


def test_check_ok_and_damaged(tmp_path: Path, image: ImageFactory) -> None:
    root = _store(tmp_path, image)
    args = ["--data-dir", str(tmp_path / "data"), "--region", "eu-west-1"]
    result = runner.invoke(app, ["check", *args, "--read-data"])
    assert result.exit_code == 0, result.output
    assert "ok" in result.output
    d = Repository.open(root).manifest("snap-1").entries[1]
    (root / chunk_name(d)).write_bytes(b"garbage!!!!!!!!!!!!")
    result = runner.invoke(app, ["check", "--repo", str(root), "--read-data", "--json"])
    assert result.exit_code == 1
    report = json.loads(result.stdout)
    assert report["ok"] is False
    assert report["issues"][0]["affected"] == [["snap-1", 524288], ["snap-2", 524288]]
    assert runner.invoke(app, ["check", "--repo", str(root)]).exit_code == 0


def test_gc_usage_list(tmp_path: Path, image: ImageFactory) -> None:
    root = _store(tmp_path, image)
    result = runner.invoke(app, ["list", "--repo", str(root)])
    assert result.stdout.split() == ["snap-1", "snap-2"]
    result = runner.invoke(app, ["usage", "--repo", str(root), "--json"])
    usage = json.loads(result.stdout)
    assert [s["snapshot_id"] for s in usage["snapshots"]] == ["snap-1", "snap-2"]
    assert usage["logical"] == 4 * MiB
    result = runner.invoke(app, ["usage", "snap-2", "--repo", str(root)])
    assert result.exit_code == 0 and "snap-2" in result.stdout
    Repository.open(root).delete_snapshot("snap-1")
    result = runner.invoke(app, ["gc", "--repo", str(root), "--grace", "0", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["chunks_deleted"] == 0  # snap-2 shares all chunks


def test_missing_store_is_a_clear_error(tmp_path: Path) -> None:
    result = runner.invoke(app, ["check", "--data-dir", str(tmp_path)])
    assert result.exit_code == 1
    assert "no snapshot store" in result.output


def test_region_store_placed_by_region_stores_setting(tmp_path: Path, image: ImageFactory) -> None:
    """``--region`` opens the directory ``region_stores`` names, not the default one."""
    elsewhere = tmp_path / "disk2" / "store"
    repo = Repository.open(elsewhere)
    path, _ = image(1 * MiB, ranges=[(0, 1 * MiB)])
    repo.snapshot_file(path, "snap-away")
    data = tmp_path / "data"
    data.mkdir()
    (data / "goldsmith.toml").write_text(f'[region_stores]\n"eu-west-1" = "{elsewhere}"\n')
    args = ["--data-dir", str(data), "--region", "eu-west-1", "--json"]
    result = runner.invoke(app, ["usage", *args])
    assert result.exit_code == 0, result.output
    assert "snap-away" in result.stdout
    # the default location has no store, and --region of another region says so
    other = runner.invoke(app, ["check", "--data-dir", str(data), "--region", "us-west-2"])
    assert other.exit_code != 0
    assert "no snapshot store" in other.output
