"""The ``goldsmith`` command: server, admin and operator commands."""

from __future__ import annotations

import os

import typer

from goldsmith import __version__
from goldsmith.cli import (
    accounts_cmd,
    docs_cmd,
    images_cmd,
    instances_cmd,
    orgs_cmd,
    platform_cmd,
    serve_cmd,
    snapshots_cmd,
    store_cmd,
)

app = typer.Typer(
    help="Goldsmith: a self-hosted machine-image service that speaks EC2.",
    no_args_is_help=True,
    add_completion=False,
)
app.command("serve")(serve_cmd.serve)
app.add_typer(accounts_cmd.app, name="accounts")
app.add_typer(docs_cmd.app, name="docs")
app.add_typer(store_cmd.app, name="store")
app.add_typer(images_cmd.app, name="images")
app.add_typer(instances_cmd.app, name="instances")
app.command("run")(instances_cmd.run)
app.command("ssh")(instances_cmd.ssh)
app.command("console")(instances_cmd.console)
app.command("create-image")(instances_cmd.create_image)
app.add_typer(snapshots_cmd.app, name="snapshots")
app.add_typer(orgs_cmd.app, name="orgs")
app.add_typer(platform_cmd.app, name="platform")


@app.command("version")
def version() -> None:
    """Print Goldsmith's version."""
    typer.echo(__version__)


def main() -> None:
    # Catalogs, chunk stores and credentials are private to the account running Goldsmith.
    os.umask(0o077)
    app()
