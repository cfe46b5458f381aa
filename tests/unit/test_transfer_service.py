"""CopyImage / CopySnapshot in the service layer (in process): regions' stores, kernels,
failures, progress; and the ``region_stores`` setting."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from goldsmith.compute import FakeHypervisor
from goldsmith.config import ConfigError, Settings, load_settings
from goldsmith.service.app import Services, build_services
from goldsmith.service.context import RequestContext
from goldsmith.service.errors import ClientError
from goldsmith.service.operations import dispatch
from goldsmith.service.snapshots import COPY_PROGRESS

MiB = 1 << 20
SRC, DST = "us-east-1", "eu-west-1"


@pytest.fixture
def services(tmp_path: Path) -> Iterator[Services]:
    settings = Settings(
        data_dir=tmp_path / "data",
        regions=(SRC, DST, "us-west-2"),
        region_stores={DST: tmp_path / "disk2" / "eu-store"},
    )
    built = build_services(settings, hypervisor=FakeHypervisor())
    yield built
    built.close()


def call(s: Services, ctx: RequestContext, action: str, **params: Any) -> dict[str, Any]:
    return dispatch(s.operations, ctx, action, params)


def code(s: Services, ctx: RequestContext, action: str, **params: Any) -> str:
    with pytest.raises(ClientError) as info:
        call(s, ctx, action, **params)
    return info.value.code


def disk(tmp_path: Path, name: str, mib: int = 3) -> Path:
    path = tmp_path / name
    with path.open("wb") as f:
        f.truncate(16 * MiB)
        f.seek(MiB)
        f.write(os.urandom(mib * MiB))
    return path


def snapshot(s: Services, ctx: RequestContext, path: Path) -> str:
    return s.snapshots.create_from_file(ctx, path, description="test").snapshot_id


def image(s: Services, ctx: RequestContext, snap: str, name: str, **extra: Any) -> str:
    mapping = [{"DeviceName": "/dev/sda1", "Ebs": {"SnapshotId": snap}}]
    out = call(
        s, ctx, "RegisterImage", Name=name, RootDeviceName="/dev/sda1",
        BlockDeviceMappings=mapping, **extra,
    )  # fmt: skip
    return str(out["ImageId"])


def describe(s: Services, ctx: RequestContext, image_id: str) -> dict[str, Any]:
    s.compute.tasks.wait(60)
    return call(s, ctx, "DescribeImages", ImageIds=[image_id])["Images"][0]


def test_region_stores_setting(tmp_path: Path) -> None:
    toml = tmp_path / "g.toml"
    toml.write_text('[region_stores]\n"eu-west-1" = "/mnt/disk2/store"\n')
    settings = load_settings({"data_dir": tmp_path}, config_file=toml, environ={})
    assert settings.region_store("eu-west-1") == Path("/mnt/disk2/store")
    assert settings.region_store("us-east-1") == tmp_path / "regions" / "us-east-1" / "store"
    env = load_settings(
        {"data_dir": tmp_path}, environ={"GOLDSMITH_REGION_STORES": "us-west-2=/a, eu-west-1=/b"}
    )
    assert env.region_store("us-west-2") == Path("/a") and env.region_store("eu-west-1") == Path(
        "/b"
    )
    for bad in ("eu-west-1", "Not A Region=/x"):
        with pytest.raises(ConfigError, match="region_stores"):
            load_settings({"data_dir": tmp_path}, environ={"GOLDSMITH_REGION_STORES": bad})


def test_copy_lands_in_the_configured_store(services: Services, tmp_path: Path) -> None:
    owner = services.accounts.create_account().account_id
    us, eu = RequestContext(owner, SRC), RequestContext(owner, DST)
    source = image(services, us, snapshot(services, us, disk(tmp_path, "a.raw")), "placed")
    copy = call(
        services, eu, "CopyImage", SourceRegion=SRC, SourceImageId=source, Name="placed-copy"
    )
    found = describe(services, eu, copy["ImageId"])
    assert found["State"] == "available"
    snap = found["BlockDeviceMappings"][0]["Ebs"]["SnapshotId"]
    assert (tmp_path / "disk2" / "eu-store" / "snapshots" / snap).is_file()
    assert not (tmp_path / "data" / "regions" / DST / "store").exists()
    (row,) = call(services, eu, "DescribeSnapshots", SnapshotIds=[snap])["Snapshots"]
    moved = COPY_PROGRESS.search(row["StateMessage"])
    assert moved is not None and int(moved.group(1)) == int(moved.group(2)) > 3 * MiB


def test_kernel_and_ramdisk_are_copied_once_then_reused(services: Services, tmp_path: Path) -> None:
    owner = services.accounts.create_account().account_id
    us, eu = RequestContext(owner, SRC), RequestContext(owner, DST)
    kernel = services.images.register_file(
        us, disk(tmp_path, "vmlinuz", 1), image_type="kernel", name="kernel-1"
    ).image_id
    ramdisk = services.images.register_file(
        us, disk(tmp_path, "initrd", 1), image_type="ramdisk", name="initrd-1"
    ).image_id
    root = snapshot(services, us, disk(tmp_path, "root.raw"))
    pv = image(
        services, us, root, "pv-1", VirtualizationType="paravirtual", KernelId=kernel,
        RamdiskId=ramdisk,
    )  # fmt: skip

    first = describe(
        services, eu, call(services, eu, "CopyImage", SourceRegion=SRC, SourceImageId=pv,
                           Name="pv-copy-1")["ImageId"],
    )  # fmt: skip

    assert first["State"] == "available" and first["VirtualizationType"] == "paravirtual"
    assert first["KernelId"] not in (None, kernel) and first["RamdiskId"] not in (None, ramdisk)
    copied_kernel = describe(services, eu, first["KernelId"])
    assert copied_kernel["ImageType"] == "kernel" and copied_kernel["State"] == "available"
    assert copied_kernel["SourceImageId"] == kernel and copied_kernel["Name"] == "kernel-1"
    second = describe(
        services, eu, call(services, eu, "CopyImage", SourceRegion=SRC, SourceImageId=pv,
                           Name="pv-copy-2")["ImageId"],
    )  # fmt: skip
    assert (second["KernelId"], second["RamdiskId"]) == (first["KernelId"], first["RamdiskId"])
    same_region = describe(
        services, us, call(services, us, "CopyImage", SourceRegion=SRC, SourceImageId=pv,
                           Name="pv-copy-3")["ImageId"],
    )  # fmt: skip
    assert (same_region["KernelId"], same_region["RamdiskId"]) == (kernel, ramdisk)


def test_a_failed_copy_fails_the_image_with_a_reason(services: Services, tmp_path: Path) -> None:
    owner = services.accounts.create_account().account_id
    us, eu = RequestContext(owner, SRC), RequestContext(owner, DST)
    snap = snapshot(services, us, disk(tmp_path, "gone.raw"))
    source = image(services, us, snap, "vanishing")
    runner = services.compute.tasks
    scheduled: list[str] = []
    schedule = runner._schedule
    runner._schedule = scheduled.append  # type: ignore[method-assign]  # hold the task back
    try:
        copy = call(
            services, eu, "CopyImage", SourceRegion=SRC, SourceImageId=source, Name="vanishing-copy"
        )
    finally:
        runner._schedule = schedule  # type: ignore[method-assign]
    assert len(scheduled) == 1
    assert describe(services, eu, copy["ImageId"])["State"] == "pending"
    services.snapshots.repository(SRC).delete_snapshot(snap)  # the source data is gone
    assert runner.resume() == 1  # as after a restart

    failed = describe(services, eu, copy["ImageId"])
    assert failed["State"] == "failed"
    assert failed["StateReason"]["Code"] == "Client.InvalidSnapshot.NotFound"
    dest_snap = failed["BlockDeviceMappings"][0]["Ebs"]["SnapshotId"]
    (row,) = call(services, eu, "DescribeSnapshots", SnapshotIds=[dest_snap])["Snapshots"]
    assert row["State"] == "error" and "no longer exists" in row["StateMessage"]
    assert not services.snapshots.repository(DST).exists(dest_snap)
    assert code(services, eu, "RunInstances", ImageId=copy["ImageId"], MinCount=1, MaxCount=1)


def test_copy_snapshot_is_pending_then_completed(services: Services, tmp_path: Path) -> None:
    owner = services.accounts.create_account().account_id
    us, eu = RequestContext(owner, SRC), RequestContext(owner, DST)
    snap = snapshot(services, us, disk(tmp_path, "s.raw"))
    other = RequestContext(services.accounts.create_account().account_id, DST)
    assert code(services, other, "CopySnapshot", SourceRegion=SRC, SourceSnapshotId=snap) == (
        "InvalidSnapshot.NotFound"
    )
    assert code(services, eu, "CopySnapshot", SourceRegion="ap-south-1", SourceSnapshotId=snap) == (
        "InvalidParameterValue"  # a real region, but not served here
    )
    assert code(
        services, eu, "CopySnapshot", SourceRegion=SRC, SourceSnapshotId=snap,
        DestinationRegion="us-west-2",
    ) == "InvalidParameterValue"  # fmt: skip
    out = call(services, eu, "CopySnapshot", SourceRegion=SRC, SourceSnapshotId=snap)
    services.compute.tasks.wait(60)
    (row,) = call(services, eu, "DescribeSnapshots", SnapshotIds=[out["SnapshotId"]])["Snapshots"]
    assert row["State"] == "completed" and row["Progress"] == "100%"
    repo_us, repo_eu = services.snapshots.repository(SRC), services.snapshots.repository(DST)
    assert repo_eu.read(out["SnapshotId"], 0, 16 * MiB) == repo_us.read(snap, 0, 16 * MiB)
