"""``goldsmith orgs``: organizations and OUs for image sharing (admin, offline or live).

Image launch permissions may name an organization or an OU by ARN; these commands say which
accounts are in which. They open the catalog directly, like ``goldsmith accounts``.
"""

from __future__ import annotations

from typing import Annotated, Any

import typer

from goldsmith.cli.common import DataDirOption, JsonOption, fail, print_json, settings_from
from goldsmith.service.app import open_catalog
from goldsmith.service.images.organizations import OrganizationError, OrganizationService

app = typer.Typer(help="Organizations and OUs (for sharing images).", no_args_is_help=True)


def _service(data_dir: DataDirOption) -> OrganizationService:
    return OrganizationService(open_catalog(settings_from(data_dir)))


@app.command("create")
def create(
    management: Annotated[str, typer.Argument(help="The management account id.")],
    data_dir: DataDirOption = None,
    as_json: JsonOption = False,
) -> None:
    """Create an organization managed by (and containing) an account."""
    try:
        org = _service(data_dir).create_organization(management)
    except OrganizationError as exc:
        raise fail(str(exc)) from exc
    if as_json:
        print_json({"org_id": org.org_id, "arn": org.arn})
    else:
        typer.echo(f"{org.org_id}  {org.arn}")


@app.command("create-ou")
def create_ou(
    org_id: Annotated[str, typer.Argument(help="Organization id (o-…).")],
    name: Annotated[str, typer.Argument(help="OU name.")],
    parent: Annotated[str | None, typer.Option("--parent", help="Parent OU id.")] = None,
    data_dir: DataDirOption = None,
    as_json: JsonOption = False,
) -> None:
    """Create an OU under the root or under --parent."""
    try:
        ou = _service(data_dir).create_ou(org_id, name, parent)
    except OrganizationError as exc:
        raise fail(str(exc)) from exc
    if as_json:
        print_json({"ou_id": ou.ou_id, "arn": ou.arn})
    else:
        typer.echo(f"{ou.ou_id}  {ou.arn}")


@app.command("place")
def place(
    account: Annotated[str, typer.Argument(help="Account id.")],
    org_id: Annotated[str, typer.Argument(help="Organization id.")],
    ou: Annotated[str | None, typer.Option("--ou", help="OU id (default: the root).")] = None,
    data_dir: DataDirOption = None,
) -> None:
    """Put an account in an organization (at its root, or in an OU)."""
    try:
        _service(data_dir).place(account, org_id, ou)
    except OrganizationError as exc:
        raise fail(str(exc)) from exc
    typer.echo(f"{account}: in {ou or org_id}")


@app.command("remove")
def remove(
    account: Annotated[str, typer.Argument(help="Account id.")], data_dir: DataDirOption = None
) -> None:
    """Take an account out of its organization."""
    try:
        _service(data_dir).remove(account)
    except OrganizationError as exc:
        raise fail(str(exc)) from exc
    typer.echo(f"{account}: removed")


@app.command("list")
def list_orgs(data_dir: DataDirOption = None, as_json: JsonOption = False) -> None:
    """List organizations, their OUs and members."""
    service = _service(data_dir)
    out: list[dict[str, Any]] = []
    for org in service.list_organizations():
        _, ous, members = service.describe(org.org_id)
        out.append(
            {
                "org_id": org.org_id,
                "arn": org.arn,
                "ous": [{"ou_id": o.ou_id, "name": o.name, "parent": o.parent_id} for o in ous],
                "members": [{"account_id": m.account_id, "ou_id": m.ou_id} for m in members],
            }
        )
    if as_json:
        print_json(out)
        return
    for org_out in out:
        typer.echo(f"{org_out['org_id']}  {org_out['arn']}")
        for ou_out in org_out["ous"]:
            typer.echo(f"  ou {ou_out['ou_id']}  {ou_out['name']}  parent={ou_out['parent']}")
        for member in org_out["members"]:
            typer.echo(f"  account {member['account_id']}  ou={member['ou_id'] or '-'}")
