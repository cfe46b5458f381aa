"""``goldsmith serve``: run the server in the foreground.

On the first start it creates the platform and admin accounts, prints the admin's
credentials once and stores them in ``<data-dir>/admin-credentials`` (mode 0600, in the
format of ``~/.aws/credentials``). ``--self-check`` makes one signed DescribeRegions call
against the running server with those credentials and prints the result.

When the platform account has no current image in the default region (a fresh data
directory), the platform images are built and published in a background thread, with
progress lines in the log, while the API serves (``platform_build_on_start``;
``--no-platform-build`` or ``GOLDSMITH_PLATFORM_BUILD_ON_START=0`` turns it off). The build
cache is ``$GOLDSMITH_BUILD_CACHE`` or ``<data-dir>/cache``.
"""

from __future__ import annotations

import gc
import logging
import os
import threading
import time
from pathlib import Path
from typing import Annotated

import typer
import uvicorn

from goldsmith.api.app import create_app
from goldsmith.api.imds import start_metadata_server
from goldsmith.cli.common import CREDENTIALS_FILE, ConfigOption, DataDirOption, settings_from
from goldsmith.service.accounts import Credentials
from goldsmith.service.app import Services, build_services
from goldsmith.service.instances import ImdsTarget

#: How often the server deletes recycle bin entries whose retention has ended.
RECYCLE_BIN_SWEEP_SECONDS = 300.0
HOUSEKEEPING_SECONDS = 2.0
EBS_WRITER_IDLE_SECONDS = 5.0


def write_credentials(path: Path, creds: Credentials, endpoint: str, region: str) -> None:
    """Store credentials with mode 0600, created atomically (never world-readable)."""
    text = (
        "[goldsmith]\n"
        f"aws_access_key_id = {creds.access_key_id}\n"
        f"aws_secret_access_key = {creds.secret_access_key}\n"
        f"# account id: {creds.account_id}\n# endpoint: {endpoint}\n# region: {region}\n"
    )
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
    tmp.replace(path)


def read_credentials(path: Path) -> tuple[str, str] | None:
    """(access key id, secret) from a credentials file written by :func:`write_credentials`."""
    if not path.exists():
        return None
    values = dict(line.split(" = ", 1) for line in path.read_text().splitlines() if " = " in line)
    try:
        return values["aws_access_key_id"], values["aws_secret_access_key"]
    except KeyError:
        return None


def _self_check(server: uvicorn.Server, endpoint: str, creds_file: Path, region: str) -> None:
    import botocore.session

    deadline = time.monotonic() + 30
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    creds = read_credentials(creds_file)
    if not server.started or creds is None:
        typer.echo("self-check: skipped (server not started or no admin credentials)", err=True)
        return
    client = botocore.session.get_session().create_client(
        "ec2",
        region_name=region,
        endpoint_url=endpoint,
        aws_access_key_id=creds[0],
        aws_secret_access_key=creds[1],
    )
    regions = client.describe_regions()["Regions"]
    typer.echo(f"self-check: DescribeRegions answered {len(regions)} regions — the API works")


def _housekeeping(services: Services, stop: threading.Event) -> None:
    """Periodic chores until ``stop`` is set; a failed chore is retried next time.

    Idle EBS upload writers are closed within seconds (they hold store locks GC waits
    for); expired recycle bin entries are purged every few minutes.
    """
    log = logging.getLogger("goldsmith.housekeeping")
    last_sweep = time.monotonic()
    while not stop.wait(HOUSEKEEPING_SECONDS):
        try:
            services.ebs.release_idle(EBS_WRITER_IDLE_SECONDS)
            if time.monotonic() - last_sweep >= RECYCLE_BIN_SWEEP_SECONDS:
                last_sweep = time.monotonic()
                purged = services.sweep_recycle_bin()
                if purged:
                    log.info("recycle bin sweep: %d expired resources deleted", purged)
        except Exception:
            log.exception("housekeeping failed")


def _platform_build(services: Services, cache: Path, region: str) -> None:
    """Build and publish the platform images (first start); failures are logged, not fatal."""
    from goldsmith.cli.platform_build import build_and_publish

    log = logging.getLogger("goldsmith.platform")
    started = time.monotonic()
    log.info(
        "platform build: no platform images in %s yet; building them (cache %s)", region, cache
    )
    try:
        published = build_and_publish(
            services, cache, [region], lambda m: log.info("platform build: %s", m)
        )
    except Exception:
        log.exception("platform build failed (retry with: goldsmith platform build)")
        return
    ids = ", ".join(v for k, v in published[0].as_dict().items() if k.endswith("ImageId"))
    log.info("platform build: done in %.0f s: %s", time.monotonic() - started, ids)


def serve(
    data_dir: DataDirOption = None,
    host: Annotated[
        str | None, typer.Option("--host", help="Bind address (default 127.0.0.1).")
    ] = None,
    port: Annotated[int | None, typer.Option("--port", help="Port (default 4566).")] = None,
    config: ConfigOption = None,
    self_check: Annotated[
        bool, typer.Option("--self-check", help="Call DescribeRegions once the server is up.")
    ] = False,
    log_level: Annotated[str, typer.Option("--log-level", help="Log level.")] = "info",
    no_platform_build: Annotated[
        bool,
        typer.Option(
            "--no-platform-build",
            help="Do not build the platform images on start when there are none.",
        ),
    ] = False,
) -> None:
    """Run the Goldsmith server (EC2 API) in the foreground."""
    build_flag = False if no_platform_build else None
    settings = settings_from(
        data_dir, config, host=host, port=port, platform_build_on_start=build_flag
    )
    logging.basicConfig(
        level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    logging.getLogger("alembic").setLevel(logging.WARNING)
    settings.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    services = build_services(settings)
    # Everything built so far (service model, codec tables, catalog metadata) lives for the
    # whole process: move it out of the collector's sight, and collect young objects less
    # often, so a full collection does not stall a request every dozen large responses.
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 20, 20)
    endpoint = f"http://{settings.host}:{settings.port}"
    creds_file = settings.data_dir / CREDENTIALS_FILE
    created = services.accounts.bootstrap()
    typer.echo(f"Goldsmith serving the EC2 API at {endpoint}")
    typer.echo(f"data directory: {settings.data_dir}")
    if created is not None:
        write_credentials(creds_file, created, endpoint, settings.default_region)
        typer.echo("First start: created the admin account. Its credentials (shown once):")
        typer.echo(f"  account id:            {created.account_id}")
        typer.echo(f"  AWS_ACCESS_KEY_ID={created.access_key_id}")
        typer.echo(f"  AWS_SECRET_ACCESS_KEY={created.secret_access_key}")
        typer.echo(f"  (also saved with mode 0600 in {creds_file})")
    else:
        typer.echo(f"admin credentials: {creds_file}")
    typer.echo(
        f"try: aws --endpoint-url {endpoint} --region {settings.default_region} "
        "ec2 describe-regions"
    )
    server = uvicorn.Server(
        uvicorn.Config(
            create_app(services),
            host=settings.host,
            port=settings.port,
            log_level=log_level,
            access_log=False,
            lifespan="off",
        )
    )
    # The instance metadata server, then the instance manager (adopts running VMs).
    imds_host = "127.0.0.1"
    imds_port = services.compute.metadata_port(services.catalog, imds_host)
    imds = start_metadata_server(services.compute.metadata, imds_host, imds_port)
    services.compute.start(ImdsTarget(imds_host, imds_port))
    typer.echo(f"instance metadata service: {imds_host}:{imds_port} (169.254.169.254 in guests)")
    if self_check:
        threading.Thread(
            target=_self_check,
            args=(server, endpoint, creds_file, settings.default_region),
            daemon=True,
        ).start()
    if settings.platform_build_on_start:
        from goldsmith.cli.platform_build import needs_build

        if needs_build(services, settings.default_region):
            cache = Path(os.environ.get("GOLDSMITH_BUILD_CACHE") or settings.data_dir / "cache")
            typer.echo("building the platform images in the background (log: goldsmith.platform)")
            threading.Thread(
                target=_platform_build,
                args=(services, cache, settings.default_region),
                name="platform-build",
                daemon=True,
            ).start()
    stop_sweeping = threading.Event()
    threading.Thread(target=_housekeeping, args=(services, stop_sweeping), daemon=True).start()
    try:
        server.run()
    finally:
        stop_sweeping.set()
        imds.should_exit = True
        services.close()
