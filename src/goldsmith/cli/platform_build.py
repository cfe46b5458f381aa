"""``goldsmith platform build``: build the platform images and publish them (idempotent).

Builds (or reuses from the build cache) the kernel + ramdisk and the tiny image with
:mod:`goldsmith.builder`, then, for the platform account in each region asked for:

- registers the kernel and ramdisk as public ``aki-``/``ari-`` images and the tiny root as a
  public paravirtual ``ami-`` booted with them, named with the date and the build key
  (``goldsmith-tiny-2025.06.10-<key>``) and tagged ``goldsmith:series`` /
  ``goldsmith:build``;
- skips whatever is already published for the same build key (running it twice publishes
  nothing new);
- deprecates (now) the older versions of each series, which stay launchable as on EC2.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from goldsmith.builder import DiskImage, build_tiny
from goldsmith.catalog import images as image_rows
from goldsmith.service.app import Services
from goldsmith.service.context import RequestContext

SERIES_TAG = "goldsmith:series"
BUILD_TAG = "goldsmith:build"
Say = Callable[[str], None]


@dataclass(frozen=True)
class Published:
    """The ids of one region's current platform images."""

    region: str
    kernel_id: str
    ramdisk_id: str
    tiny_id: str

    def as_dict(self) -> dict[str, str]:
        return {
            "Region": self.region,
            "KernelId": self.kernel_id,
            "RamdiskId": self.ramdisk_id,
            "TinyImageId": self.tiny_id,
        }


def build_artifacts(cache: Path, say: Say) -> DiskImage:
    """Build (or reuse) the tiny image and its kernel/ramdisk into ``cache``."""
    last = [""]

    def progress(message: str, fraction: float) -> None:
        if message != last[0]:
            last[0] = message
            say(f"[{fraction * 100:3.0f}%] {message}")

    return build_tiny(cache, cache / "out", progress)


def _series(services: Services, ctx: RequestContext, series: str) -> list[dict[str, Any]]:
    found = services.images.describer.describe_images(
        ctx,
        {"Owners": ["self"], "Filters": [{"Name": f"tag:{SERIES_TAG}", "Values": [series]}]},
    )
    return list(found["Images"])


def _existing(images: list[dict[str, Any]], key: str) -> str | None:
    for image in images:
        tags = {t["Key"]: t["Value"] for t in image.get("Tags") or []}
        if tags.get(BUILD_TAG) == key:
            return str(image["ImageId"])
    return None


def _finish(services: Services, ctx: RequestContext, image_id: str, series: str, key: str) -> None:
    services.tags.create_tags(
        ctx,
        {
            "Resources": [image_id],
            "Tags": [{"Key": SERIES_TAG, "Value": series}, {"Key": BUILD_TAG, "Value": key}],
        },
    )
    with services.catalog.begin() as conn:
        image_rows.update_image(conn, image_id, is_public=True)


def _deprecate_older(
    services: Services, ctx: RequestContext, images: list[dict[str, Any]], keep: str, say: Say
) -> None:
    for image in images:
        if image["ImageId"] != keep and not image.get("DeprecationTime"):
            services.images.lifecycle.enable_image_deprecation(
                ctx, {"ImageId": image["ImageId"], "DeprecateAt": datetime.now(UTC)}
            )
            say(f"deprecated {image['ImageId']} ({image['Name']})")


def _boot_file(
    services: Services, ctx: RequestContext, path: Path, kind: str, key: str, say: Say
) -> str:
    series = f"goldsmith-{kind}"
    images = _series(services, ctx, series)
    found = _existing(images, key)
    if found is None:
        name = f"{series}-{datetime.now(UTC):%Y.%m.%d}-{key}"
        say(f"{ctx.region}: publishing {kind} {path.name} as {name}")
        row = services.images.register_file(ctx, path, image_type=kind, name=name)
        found = row.image_id
        _finish(services, ctx, found, series, key)
    _deprecate_older(services, ctx, images, found, say)
    return found


def publish_tiny(services: Services, ctx: RequestContext, tiny: DiskImage, say: Say) -> Published:
    """Publish (or find) the kernel, ramdisk and tiny images for ``ctx`` (platform, region)."""
    kernel = tiny.kernel
    assert kernel is not None
    kernel_id = _boot_file(services, ctx, kernel.kernel, "kernel", kernel.key, say)
    ramdisk_id = _boot_file(services, ctx, kernel.ramdisk, "ramdisk", kernel.key, say)
    series = "goldsmith-tiny"
    images = _series(services, ctx, series)
    tiny_id = _existing(images, tiny.key)
    if tiny_id is None:
        name = f"{series}-{datetime.now(UTC):%Y.%m.%d}-{tiny.key}"
        say(f"{ctx.region}: snapshotting the tiny root ({tiny.size >> 20} MiB)")
        snap = services.snapshots.create_from_file(ctx, tiny.path, description=f"{name} root")
        params = {
            "Name": name,
            "Description": tiny.description,
            "Architecture": tiny.architecture,
            "VirtualizationType": "paravirtual",
            "RootDeviceName": tiny.root_device_name,
            "KernelId": kernel_id,
            "RamdiskId": ramdisk_id,
            "BlockDeviceMappings": [
                {"DeviceName": tiny.root_device_name, "Ebs": {"SnapshotId": snap.snapshot_id}}
            ],
        }
        tiny_id = services.images.registry.publish(ctx, params, public=True).image_id
        _finish(services, ctx, tiny_id, series, tiny.key)
        say(f"{ctx.region}: published {tiny_id} ({name}), default user {tiny.default_user}")
    _deprecate_older(services, ctx, images, tiny_id, say)
    return Published(ctx.region, kernel_id, ramdisk_id, tiny_id)
