"""``goldsmith platform``: admin commands for the platform account and image publishing.

``publish`` snapshots a root disk file and registers it as a public image owned by the
platform account (alias ``amazon`` by default), so ``DescribeImages Owners=["amazon"]`` finds
it. ``snapshot`` stores a local disk file as a completed snapshot of any account.
``allow-billing`` lets an account register images with BillingProducts. These commands open
the catalog and the chunk store directly (the server may be running).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer

from goldsmith.catalog import accounts as account_rows
from goldsmith.cli.common import DataDirOption, JsonOption, fail, print_json, settings_from
from goldsmith.service.app import Services, build_services
from goldsmith.service.context import RequestContext
from goldsmith.service.errors import Ec2Error

app = typer.Typer(help="Publish platform images; admin image settings.", no_args_is_help=True)

RegionOpt = Annotated[str, typer.Option("--region", help="Region.")]


@contextmanager
def _services(data_dir: Path | None) -> Iterator[Services]:
    services = build_services(settings_from(data_dir))
    try:
        yield services
    except Ec2Error as exc:
        raise fail(f"{exc.code}: {exc.message}") from exc
    finally:
        services.close()


def _platform_account(services: Services) -> str:
    with services.catalog.begin() as conn:
        found = account_rows.accounts_with_role(conn, "platform")
    if not found:
        raise fail("no platform account yet: start the server once (goldsmith serve)")
    return found[0].account_id


@app.command("publish")
def publish(
    name: Annotated[str, typer.Option("--name", help="Image name.")],
    root: Annotated[Path, typer.Option("--root", help="Root disk file (raw or qcow2).")],
    description: Annotated[
        str | None, typer.Option("--description", help="Description (up to 255 characters).")
    ] = None,
    architecture: Annotated[
        str, typer.Option("--architecture", help="Architecture (x86_64, arm64, …).")
    ] = "x86_64",
    virtualization: Annotated[
        str, typer.Option("--virtualization-type", help="hvm or paravirtual.")
    ] = "hvm",
    boot_mode: Annotated[
        str | None, typer.Option("--boot-mode", help="legacy-bios, uefi or uefi-preferred.")
    ] = None,
    root_device: Annotated[
        str, typer.Option("--root-device", help="Root device name.")
    ] = "/dev/xvda",
    private: Annotated[bool, typer.Option("--private", help="Do not make it public.")] = False,
    region: RegionOpt = "us-east-1",
    data_dir: DataDirOption = None,
    as_json: JsonOption = False,
) -> None:
    """Snapshot ROOT and register it as a (public) image of the platform account."""
    if not root.is_file():
        raise fail(f"no such file: {root}")
    with _services(data_dir) as services:
        ctx = RequestContext(_platform_account(services), region)
        snapshot = services.snapshots.create_from_file(ctx, root, description=f"{name} root")
        params = {
            "Name": name,
            "Description": description,
            "Architecture": architecture,
            "VirtualizationType": virtualization,
            "BootMode": boot_mode,
            "RootDeviceName": root_device,
            "BlockDeviceMappings": [
                {"DeviceName": root_device, "Ebs": {"SnapshotId": snapshot.snapshot_id}}
            ],
        }
        image = services.images.registry.publish(ctx, params, public=not private)
    if as_json:
        print_json({"ImageId": image.image_id, "SnapshotId": snapshot.snapshot_id})
    else:
        typer.echo(image.image_id)


@app.command("build")
def build(
    cache: Annotated[
        Path | None,
        typer.Option(
            "--cache",
            envvar="GOLDSMITH_BUILD_CACHE",
            help="Build cache (packages, artifacts). Default: <data-dir>/cache.",
            show_default=False,
        ),
    ] = None,
    regions: Annotated[
        list[str] | None, typer.Option("--region", help="Region(s) to publish in.")
    ] = None,
    debian: Annotated[
        bool,
        typer.Option("--debian/--no-debian", help="Also build the Debian 12 server image."),
    ] = True,
    data_dir: DataDirOption = None,
    as_json: JsonOption = False,
) -> None:
    """Build the kernel/ramdisk, tiny and Debian 12 images from Debian packages; publish them.

    Idempotent: a build already published is reused; older versions are deprecated.
    """
    from goldsmith.cli.platform_build import build_and_publish

    settings = settings_from(data_dir)
    cache_dir = cache or settings.data_dir / "cache"
    say = (lambda _m: None) if as_json else typer.echo
    with _services(data_dir) as services:
        _platform_account(services)
        published = build_and_publish(
            services, cache_dir, regions or [settings.default_region], say, debian=debian
        )
    out = [item.as_dict() for item in published]
    if as_json:
        print_json(out if len(out) != 1 else out[0])
    else:
        for item in out:
            typer.echo(f"{item['Region']}: tiny image {item['TinyImageId']}")
            if "DebianImageId" in item:
                typer.echo(f"{item['Region']}: Debian 12 image {item['DebianImageId']}")


@app.command("snapshot")
def snapshot(
    path: Annotated[Path, typer.Argument(help="Disk file (raw or qcow2).")],
    account: Annotated[str, typer.Option("--account", help="Owner account id.")],
    description: Annotated[
        str, typer.Option("--description", help="Description (up to 255 characters).")
    ] = "",
    region: RegionOpt = "us-east-1",
    data_dir: DataDirOption = None,
) -> None:
    """Store a local disk file as a completed snapshot of ACCOUNT; print its id."""
    if not path.is_file():
        raise fail(f"no such file: {path}")
    with _services(data_dir) as services:
        row = services.snapshots.create_from_file(
            RequestContext(account, region), path, description=description
        )
    typer.echo(row.snapshot_id)


@app.command("allow-billing")
def allow_billing(
    account: Annotated[str, typer.Argument(help="Account id.")],
    revoke: Annotated[bool, typer.Option("--revoke", help="Withdraw the permission.")] = False,
    data_dir: DataDirOption = None,
) -> None:
    """Allow an account to register images with BillingProducts (or --revoke)."""
    with _services(data_dir) as services:
        services.images.registry.set_billing_allowed(account, not revoke)
    typer.echo(f"{account}: billing products {'not ' if revoke else ''}allowed")
