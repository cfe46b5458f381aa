"""``goldsmith platform build``: build the platform images and publish them (idempotent).

Builds (or reuses from the build cache) the kernel + ramdisk, the tiny image and the Debian 12
server image with :mod:`goldsmith.builder`, then, for the platform account in each region
asked for:

- registers the kernel and ramdisk as public ``aki-``/``ari-`` images, the tiny root as a
  public paravirtual ``ami-`` booted with them, and the Debian disk as a public ``hvm`` ``ami-``
  with BootMode ``uefi``, each named with the date and the build key
  (``goldsmith-tiny-2025.06.10-<key>``, ``goldsmith-debian-12-2025.06.10-<key>``) and tagged
  ``goldsmith:series`` / ``goldsmith:build``;
- skips whatever is already published for the same build key (running it twice publishes
  nothing new);
- deprecates (now) the older versions of each series, which stay launchable as on EC2.

:func:`build_and_publish` is the whole thing; ``goldsmith platform build`` and the first
start of ``goldsmith serve`` (:func:`needs_build`, in a background thread) both call it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from goldsmith.builder import DiskImage, build_debian, build_tiny
from goldsmith.catalog import accounts as account_rows
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
    debian_id: str | None = None

    def as_dict(self) -> dict[str, str]:
        out = {
            "Region": self.region,
            "KernelId": self.kernel_id,
            "RamdiskId": self.ramdisk_id,
            "TinyImageId": self.tiny_id,
        }
        if self.debian_id is not None:
            out["DebianImageId"] = self.debian_id
        return out


@dataclass(frozen=True)
class Artifacts:
    """The built disks: the tiny image (with its kernel/ramdisk) and the Debian server."""

    tiny: DiskImage
    debian: DiskImage | None


def _progress(say: Say, prefix: str) -> Callable[[str, float], None]:
    last = [""]

    def progress(message: str, fraction: float) -> None:
        if message != last[0]:
            last[0] = message
            say(f"[{prefix} {fraction * 100:3.0f}%] {message}")

    return progress


def build_artifacts(cache: Path, say: Say, *, debian: bool = True) -> Artifacts:
    """Build (or reuse) the tiny image with its kernel/ramdisk and the Debian disk."""
    tiny = build_tiny(cache, cache / "out", _progress(say, "tiny"))
    server = build_debian(cache, cache / "out", _progress(say, "debian")) if debian else None
    return Artifacts(tiny, server)


def platform_account(services: Services) -> str | None:
    """The platform account's id (None before the first start created it)."""
    with services.catalog.begin() as conn:
        found = account_rows.accounts_with_role(conn, "platform")
    return found[0].account_id if found else None


def needs_build(services: Services, region: str) -> bool:
    """True when the platform account has no current (non-deprecated) image in ``region``."""
    account = platform_account(services)
    if account is None:
        return False
    found = services.images.describer.describe_images(
        RequestContext(account, region), {"Owners": ["self"]}
    )
    now = datetime.now(UTC)
    for image in found["Images"]:
        deprecation = image.get("DeprecationTime")
        if image.get("ImageType", "machine") == "machine" and (
            not deprecation or _when(deprecation) > now
        ):
            return False
    return True


def _when(value: Any) -> datetime:
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    return datetime.fromisoformat(str(value).replace("Z", "+00:00"))


def build_and_publish(
    services: Services, cache: Path, regions: list[str], say: Say, *, debian: bool = True
) -> list[Published]:
    """Build (or reuse) every platform image and publish it in each of ``regions``."""
    account = platform_account(services)
    if account is None:
        raise RuntimeError("no platform account yet: start the server once (goldsmith serve)")
    built = build_artifacts(cache, say, debian=debian)
    out = []
    for region in regions:
        ctx = RequestContext(account, region)
        published = publish_tiny(services, ctx, built.tiny, say)
        if built.debian is not None:
            debian_id = publish_debian(services, ctx, built.debian, say)
            published = Published(
                region, published.kernel_id, published.ramdisk_id, published.tiny_id, debian_id
            )
        out.append(published)
    return out


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


def publish_debian(services: Services, ctx: RequestContext, disk: DiskImage, say: Say) -> str:
    """Publish (or find) the Debian 12 server image (hvm, BootMode uefi) for ``ctx``."""
    series = "goldsmith-debian-12"
    images = _series(services, ctx, series)
    image_id = _existing(images, disk.key)
    if image_id is None:
        name = f"{series}-{datetime.now(UTC):%Y.%m.%d}-{disk.key}"
        say(f"{ctx.region}: snapshotting the Debian 12 disk ({disk.size >> 20} MiB)")
        snap = services.snapshots.create_from_file(ctx, disk.path, description=f"{name} root")
        params = {
            "Name": name,
            "Description": disk.description,
            "Architecture": disk.architecture,
            "VirtualizationType": disk.virtualization,
            "BootMode": disk.boot_mode,
            "EnaSupport": True,
            "RootDeviceName": disk.root_device_name,
            "BlockDeviceMappings": [
                {"DeviceName": disk.root_device_name, "Ebs": {"SnapshotId": snap.snapshot_id}}
            ],
        }
        image_id = services.images.registry.publish(ctx, params, public=True).image_id
        _finish(services, ctx, image_id, series, disk.key)
        say(f"{ctx.region}: published {image_id} ({name}), default user {disk.default_user}")
    _deprecate_older(services, ctx, images, image_id, say)
    return image_id
