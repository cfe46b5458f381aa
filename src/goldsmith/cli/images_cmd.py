"""``goldsmith images``: find, register, share and retire images — a client of the public API.

Every command except ``register-kernel``/``register-ramdisk`` talks to a running server over
the EC2 API with boto3, exactly like any other client: ``--endpoint`` (default
http://127.0.0.1:4566), ``--region``, and credentials from the AWS environment variables,
``--profile``, or the admin credentials in ``<data-dir>/admin-credentials``. The two
register commands are admin commands: they snapshot a local file straight into the store.

``copy IMAGE --to REGION`` calls CopyImage in the destination region and follows the copy
with a live bar (bytes moved / bytes needed / throughput, from the new image's snapshots).
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Column, Table

from goldsmith.cli.api_client import (
    DEFAULT_ENDPOINT,
    Api,
    EndpointOption,
    ProfileOption,
    RegionOption,
)
from goldsmith.cli.common import (
    DataDirOption,
    JsonOption,
    fail,
    print_json,
    settings_from,
)
from goldsmith.cli.snapshots_cmd import CopyStatus, copy_status, copy_summary, watch_copy

app = typer.Typer(help="Find, register, share and retire images.", no_args_is_help=True)

ImageArg = Annotated[str, typer.Argument(help="Image id (ami-…).")]


def _table(images: list[dict[str, Any]]) -> None:
    # Ids and owners are never cut (they are what the next command needs); other columns
    # wrap, so the table stays whole in a narrow terminal or a pipe (80 columns).
    table = Table(
        Column("Image", no_wrap=True, min_width=21),
        Column("Name", overflow="fold"),
        Column("Owner", no_wrap=True, min_width=12),
        Column("State", overflow="fold"),
        Column("Arch", overflow="fold"),
        Column("Public"),
        Column("Created", overflow="fold"),
        Column("Deprecation", overflow="fold"),
    )
    for image in images:
        table.add_row(
            image["ImageId"],
            image.get("Name", ""),
            image.get("ImageOwnerAlias") or image.get("OwnerId", ""),
            image.get("State", ""),
            image.get("Architecture", ""),
            "yes" if image.get("Public") else "no",
            str(image.get("CreationDate", ""))[:19],
            str(image.get("DeprecationTime") or "")[:19],
        )
    console = Console()
    if not console.is_terminal:
        console = Console(width=200)  # piped: whole rows, one line per image, for grep & co
    console.print(table)


@app.command("list")
def list_images(
    owner: Annotated[
        list[str] | None, typer.Option("--owner", help="self, an account id, or amazon.")
    ] = None,
    name: Annotated[str | None, typer.Option("--name", help="Name (wildcards * ?).")] = None,
    filters: Annotated[
        list[str] | None, typer.Option("--filter", help="NAME=VALUE[,VALUE] (repeatable).")
    ] = None,
    executable_by: Annotated[
        list[str] | None, typer.Option("--executable-by", help="self, all or an account id.")
    ] = None,
    include_deprecated: Annotated[
        bool,
        typer.Option("--include-deprecated", help="Also list deprecated images of other accounts."),
    ] = False,
    include_disabled: Annotated[
        bool, typer.Option("--include-disabled", help="Also list your disabled images.")
    ] = False,
    endpoint: EndpointOption = DEFAULT_ENDPOINT,
    region: RegionOption = "us-east-1",
    profile: ProfileOption = None,
    data_dir: DataDirOption = None,
    as_json: JsonOption = False,
) -> None:
    """List the images you can see (DescribeImages), as a table."""
    params: dict[str, Any] = {
        "IncludeDeprecated": include_deprecated,
        "IncludeDisabled": include_disabled,
    }
    if owner:
        params["Owners"] = owner
    if executable_by:
        params["ExecutableUsers"] = executable_by
    wanted = [{"Name": "name", "Values": [name]}] if name else []
    for spec in filters or []:
        key, _, values = spec.partition("=")
        if not values:
            raise fail(f"--filter wants NAME=VALUE, got {spec!r}")
        wanted.append({"Name": key, "Values": values.split(",")})
    if wanted:
        params["Filters"] = wanted
    api = Api(endpoint, region, profile, data_dir)
    images: list[dict[str, Any]] = []
    for page in api.ec2.get_paginator("describe_images").paginate(**params):
        images += page["Images"]
    images.sort(key=lambda i: (i.get("Name", ""), i["ImageId"]))
    if as_json:
        print_json(images)
    else:
        _table(images)


@app.command("show")
def show(
    image_id: ImageArg,
    endpoint: EndpointOption = DEFAULT_ENDPOINT,
    region: RegionOption = "us-east-1",
    profile: ProfileOption = None,
    data_dir: DataDirOption = None,
) -> None:
    """Show one image in full (JSON)."""
    api = Api(endpoint, region, profile, data_dir)
    images = api.call(
        "describe_images", ImageIds=[image_id], IncludeDeprecated=True, IncludeDisabled=True
    )["Images"]
    print_json(images[0] if images else {})


@app.command("register")
def register(
    name: Annotated[str, typer.Option("--name", help="Image name (3-128 characters).")],
    snapshot: Annotated[str, typer.Option("--snapshot", help="Root snapshot id (snap-…).")],
    root_device: Annotated[
        str, typer.Option("--root-device", help="Root device name.")
    ] = "/dev/xvda",
    architecture: Annotated[
        str, typer.Option("--architecture", help="Architecture (x86_64, arm64, …).")
    ] = "x86_64",
    virtualization: Annotated[
        str, typer.Option("--virtualization-type", help="hvm or paravirtual.")
    ] = "hvm",
    boot_mode: Annotated[
        str | None, typer.Option("--boot-mode", help="legacy-bios, uefi or uefi-preferred.")
    ] = None,
    description: Annotated[
        str | None, typer.Option("--description", help="Description (up to 255 characters).")
    ] = None,
    kernel: Annotated[
        str | None, typer.Option("--kernel", help="Kernel image id (aki-…), for paravirtual.")
    ] = None,
    ramdisk: Annotated[
        str | None, typer.Option("--ramdisk", help="Ramdisk image id (ari-…).")
    ] = None,
    endpoint: EndpointOption = DEFAULT_ENDPOINT,
    region: RegionOption = "us-east-1",
    profile: ProfileOption = None,
    data_dir: DataDirOption = None,
) -> None:
    """Register an EBS-backed image from a snapshot and print its id."""
    params: dict[str, Any] = {
        "Name": name,
        "RootDeviceName": root_device,
        "Architecture": architecture,
        "VirtualizationType": virtualization,
        "BlockDeviceMappings": [{"DeviceName": root_device, "Ebs": {"SnapshotId": snapshot}}],
    }
    if boot_mode:
        params["BootMode"] = boot_mode
    if description:
        params["Description"] = description
    if kernel:
        params["KernelId"] = kernel
    if ramdisk:
        params["RamdiskId"] = ramdisk
    api = Api(endpoint, region, profile, data_dir)
    typer.echo(api.call("register_image", **params)["ImageId"])


def _permission(account: str | None, org: str | None, ou: str | None) -> list[dict[str, str]]:
    out = [{"UserId": a} for a in ([account] if account else [])]
    out += [{"OrganizationArn": org}] if org else []
    out += [{"OrganizationalUnitArn": ou}] if ou else []
    if not out:
        raise fail("give --account, --org-arn or --ou-arn")
    return out


AccountOpt = Annotated[str | None, typer.Option("--account", help="Account id.")]
OrgOpt = Annotated[str | None, typer.Option("--org-arn", help="Organization ARN.")]
OuOpt = Annotated[str | None, typer.Option("--ou-arn", help="Organizational unit ARN.")]


@app.command("share")
def share(
    image_id: ImageArg,
    account: AccountOpt = None,
    org: OrgOpt = None,
    ou: OuOpt = None,
    endpoint: EndpointOption = DEFAULT_ENDPOINT,
    region: RegionOption = "us-east-1",
    profile: ProfileOption = None,
    data_dir: DataDirOption = None,
) -> None:
    """Grant launch permission to an account, organization or OU."""
    api = Api(endpoint, region, profile, data_dir)
    grants = _permission(account, org, ou)
    api.call("modify_image_attribute", ImageId=image_id, LaunchPermission={"Add": grants})
    typer.echo(f"{image_id}: shared")


@app.command("unshare")
def unshare(
    image_id: ImageArg,
    account: AccountOpt = None,
    org: OrgOpt = None,
    ou: OuOpt = None,
    endpoint: EndpointOption = DEFAULT_ENDPOINT,
    region: RegionOption = "us-east-1",
    profile: ProfileOption = None,
    data_dir: DataDirOption = None,
) -> None:
    """Remove a launch permission."""
    api = Api(endpoint, region, profile, data_dir)
    grants = _permission(account, org, ou)
    api.call("modify_image_attribute", ImageId=image_id, LaunchPermission={"Remove": grants})
    typer.echo(f"{image_id}: unshared")


@app.command("make-public")
def make_public(
    image_id: ImageArg,
    private: Annotated[bool, typer.Option("--private", help="Make it private again.")] = False,
    endpoint: EndpointOption = DEFAULT_ENDPOINT,
    region: RegionOption = "us-east-1",
    profile: ProfileOption = None,
    data_dir: DataDirOption = None,
) -> None:
    """Share an image with everyone (or stop, with --private)."""
    api = Api(endpoint, region, profile, data_dir)
    change = {"Remove" if private else "Add": [{"Group": "all"}]}
    api.call("modify_image_attribute", ImageId=image_id, LaunchPermission=change)
    typer.echo(f"{image_id}: {'private' if private else 'public'}")


@app.command("deprecate")
def deprecate(
    image_id: ImageArg,
    at: Annotated[
        str | None, typer.Option("--at", help="ISO 8601 time (default: one minute from now).")
    ] = None,
    cancel: Annotated[bool, typer.Option("--cancel", help="Cancel deprecation.")] = False,
    endpoint: EndpointOption = DEFAULT_ENDPOINT,
    region: RegionOption = "us-east-1",
    profile: ProfileOption = None,
    data_dir: DataDirOption = None,
) -> None:
    """Deprecate an image at a time (or cancel it)."""
    api = Api(endpoint, region, profile, data_dir)
    if cancel:
        api.call("disable_image_deprecation", ImageId=image_id)
        typer.echo(f"{image_id}: deprecation cancelled")
        return
    when = datetime.fromisoformat(at) if at else datetime.now(UTC) + timedelta(minutes=1)
    api.call("enable_image_deprecation", ImageId=image_id, DeprecateAt=when)
    typer.echo(f"{image_id}: deprecated at {when.isoformat()}")


def _simple(action: str, done: str) -> Any:
    def command(
        image_id: ImageArg,
        endpoint: EndpointOption = DEFAULT_ENDPOINT,
        region: RegionOption = "us-east-1",
        profile: ProfileOption = None,
        data_dir: DataDirOption = None,
    ) -> None:
        Api(endpoint, region, profile, data_dir).call(action, ImageId=image_id)
        typer.echo(f"{image_id}: {done}")

    return command


app.command("disable", help="Disable an image (it stops being listed, launched or shared).")(
    _simple("disable_image", "disabled")
)
app.command("enable", help="Re-enable a disabled image.")(_simple("enable_image", "enabled"))
app.command("restore", help="Restore an image from the recycle bin.")(
    _simple("restore_image_from_recycle_bin", "restored")
)


@app.command("deregister")
def deregister(
    image_id: ImageArg,
    delete_snapshots: Annotated[
        bool, typer.Option("--delete-snapshots", help="Also delete its snapshots.")
    ] = False,
    endpoint: EndpointOption = DEFAULT_ENDPOINT,
    region: RegionOption = "us-east-1",
    profile: ProfileOption = None,
    data_dir: DataDirOption = None,
) -> None:
    """Deregister an image (into the recycle bin when a retention rule applies)."""
    api = Api(endpoint, region, profile, data_dir)
    out = api.call("deregister_image", ImageId=image_id, DeleteAssociatedSnapshots=delete_snapshots)
    typer.echo(f"{image_id}: deregistered")
    for result in out.get("DeleteSnapshotResults", []):
        typer.echo(f"  {result['SnapshotId']}: {result['ReturnCode']}")


@app.command("copy")
def copy(
    image_id: ImageArg,
    to: Annotated[str, typer.Option("--to", help="Destination region.")],
    name: Annotated[
        str | None, typer.Option("--name", help="Name of the copy (default: the source's).")
    ] = None,
    description: Annotated[
        str | None, typer.Option("--description", help="Description of the copy.")
    ] = None,
    copy_tags: Annotated[
        bool, typer.Option("--copy-tags", help="Copy the source image's tags too.")
    ] = False,
    no_wait: Annotated[
        bool, typer.Option("--no-wait", help="Print the new id and return at once.")
    ] = False,
    endpoint: EndpointOption = DEFAULT_ENDPOINT,
    region: RegionOption = "us-east-1",
    profile: ProfileOption = None,
    data_dir: DataDirOption = None,
    as_json: JsonOption = False,
) -> None:
    """Copy an image of --region to --to (only missing chunks move), with a progress bar."""
    source = Api(endpoint, region, profile, data_dir)
    dest = Api(endpoint, to, profile, data_dir)
    if name is None:
        found = source.call("describe_images", ImageIds=[image_id], IncludeDeprecated=True)
        name = str(found["Images"][0]["Name"])
    params: dict[str, Any] = {
        "SourceRegion": region,
        "SourceImageId": image_id,
        "Name": name,
        "CopyImageTags": copy_tags,
    }
    if description:
        params["Description"] = description
    started = time.monotonic()
    new_id = str(dest.call("copy_image", **params)["ImageId"])
    if no_wait:
        typer.echo(new_id)
        return
    image: dict[str, Any] = {}

    def poll() -> CopyStatus:
        image.update(dest.call("describe_images", ImageIds=[new_id])["Images"][0])
        snapshots = [
            m["Ebs"]["SnapshotId"]
            for m in image.get("BlockDeviceMappings", [])
            if m.get("Ebs", {}).get("SnapshotId")
        ]
        status = copy_status(dest, snapshots) if snapshots else CopyStatus({})
        status.states[new_id] = image["State"]
        return status

    status = watch_copy(poll, new_id, quiet=as_json)
    state = image.get("State", "unknown")
    reason = (image.get("StateReason") or {}).get("Message")
    if as_json:
        print_json(
            {
                "ImageId": new_id,
                "State": state,
                "StateReason": reason,
                "BytesMoved": status.moved,
                "BytesNeeded": status.needed,
                "BytesAlreadyPresent": status.present,
            }
        )
    else:
        summary = copy_summary(status, time.monotonic() - started)
        typer.echo(f"{new_id}: {state} in {to} ({reason or summary})")
    if state != "available":
        raise typer.Exit(1)


# Admin commands (offline: they open the catalog and the store directly) ---------------------


def _register_file(
    kind: str, path: Path, name: str | None, account: str, region: str, data_dir: Path | None
) -> None:
    from goldsmith.service.app import build_services
    from goldsmith.service.context import RequestContext
    from goldsmith.service.errors import Ec2Error

    if not path.is_file():
        raise fail(f"no such file: {path}")
    services = build_services(settings_from(data_dir))
    try:
        image = services.images.register_file(
            RequestContext(account, region), path, image_type=kind, name=name or path.name
        )
    except Ec2Error as exc:
        raise fail(f"{exc.code}: {exc.message}") from exc
    finally:
        services.close()
    typer.echo(image.image_id)


FileArg = Annotated[Path, typer.Argument(help="The kernel or ramdisk file.")]
NameOpt = Annotated[str | None, typer.Option("--name", help="Image name (default: file name).")]
OwnerOpt = Annotated[str, typer.Option("--account", help="Owner account id.")]
AdminRegion = Annotated[str, typer.Option("--region", help="Region.")]


@app.command("register-kernel")
def register_kernel(
    path: FileArg,
    account: OwnerOpt,
    name: NameOpt = None,
    region: AdminRegion = "us-east-1",
    data_dir: DataDirOption = None,
) -> None:
    """Admin: snapshot a kernel file and register it as a kernel image (aki-…)."""
    _register_file("kernel", path, name, account, region, data_dir)


@app.command("register-ramdisk")
def register_ramdisk(
    path: FileArg,
    account: OwnerOpt,
    name: NameOpt = None,
    region: AdminRegion = "us-east-1",
    data_dir: DataDirOption = None,
) -> None:
    """Admin: snapshot an initramfs file and register it as a ramdisk image (ari-…)."""
    _register_file("ramdisk", path, name, account, region, data_dir)
