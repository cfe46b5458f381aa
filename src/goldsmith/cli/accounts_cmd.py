"""``goldsmith accounts``: create accounts, manage their access keys (admin, offline or live).

These commands open the catalog directly, so they work whether the server is running or
not (SQLite in WAL mode lets both write).
"""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from goldsmith.cli.common import DataDirOption, JsonOption, fail, print_json, settings_from
from goldsmith.service.accounts import (
    AccountError,
    AccountService,
    ConsolePasswords,
    Credentials,
)
from goldsmith.service.app import open_catalog

app = typer.Typer(help="Create accounts and manage their access keys.", no_args_is_help=True)
keys_app = typer.Typer(
    help="List, create, import, deactivate and delete access keys.", no_args_is_help=True
)
app.add_typer(keys_app, name="keys")

KeyIdOption = Annotated[
    str | None,
    typer.Option("--access-key-id", help="Use this access key id instead of generating one."),
]
SecretOption = Annotated[
    str | None,
    typer.Option("--secret-access-key", help="Secret for --access-key-id."),
]


def _service(data_dir: DataDirOption) -> AccountService:
    settings = settings_from(data_dir)
    return AccountService(open_catalog(settings))


def _show(creds: Credentials, as_json: bool) -> None:
    if as_json:
        print_json(creds.__dict__)
        return
    typer.echo(f"account id:        {creds.account_id}")
    typer.echo(f"access key id:     {creds.access_key_id}")
    typer.echo(f"secret access key: {creds.secret_access_key}")


@app.command("create")
def create(
    data_dir: DataDirOption = None,
    account_id: Annotated[
        str | None, typer.Option("--id", help="The 12-digit account id (default: random).")
    ] = None,
    alias: Annotated[str | None, typer.Option("--alias", help="Account alias.")] = None,
    access_key_id: KeyIdOption = None,
    secret: SecretOption = None,
    as_json: JsonOption = False,
) -> None:
    """Create an account with an access key and print its credentials."""
    try:
        creds = _service(data_dir).create_account(
            account_id=account_id,
            alias=alias,
            access_key_id=access_key_id,
            secret_access_key=secret,
        )
    except AccountError as exc:
        raise fail(str(exc)) from exc
    _show(creds, as_json)


@app.command("list")
def list_accounts(data_dir: DataDirOption = None, as_json: JsonOption = False) -> None:
    """List accounts (id, alias, role)."""
    accounts = _service(data_dir).list_accounts()
    if as_json:
        print_json([a.__dict__ for a in accounts])
        return
    for account in accounts:
        typer.echo(f"{account.account_id}  {account.role:<8}  {account.alias or '-'}")


@app.command("console-password")
def console_password(
    account: Annotated[str, typer.Argument(help="The account id (or alias).")],
    data_dir: DataDirOption = None,
    password_stdin: Annotated[
        bool, typer.Option("--password-stdin", help="Read the password from standard input.")
    ] = False,
    clear: Annotated[
        bool, typer.Option("--clear", help="Remove the password (access keys still sign in).")
    ] = False,
) -> None:
    """Set the password ACCOUNT signs in to the web console with (only a hash is kept)."""
    passwords = ConsolePasswords(open_catalog(settings_from(data_dir)))
    account_id = passwords.account_for(account)
    if account_id is None:
        raise fail(f"no account {account}")
    if clear:
        removed = passwords.clear(account_id)
        typer.echo(f"{account_id}: console password {'removed' if removed else 'was not set'}")
        return
    if password_stdin:
        password = sys.stdin.readline().rstrip("\n")
    else:
        password = typer.prompt("Console password", hide_input=True, confirmation_prompt=True)
    try:
        passwords.set(account_id, password)
    except AccountError as exc:
        raise fail(str(exc)) from exc
    typer.echo(f"{account_id}: console password set")


@keys_app.command("list")
def list_keys(
    data_dir: DataDirOption = None,
    account: Annotated[str | None, typer.Option("--account", help="Only this account.")] = None,
    as_json: JsonOption = False,
) -> None:
    """List access keys (never their secrets)."""
    keys = _service(data_dir).list_keys(account)
    rows = [
        {
            "access_key_id": k.access_key_id,
            "account_id": k.account_id,
            "status": k.status,
            "created_at": k.created_at.isoformat(),
        }
        for k in keys
    ]
    if as_json:
        print_json(rows)
        return
    for row in rows:
        typer.echo(f"{row['access_key_id']}  {row['account_id']}  {row['status']}")


@keys_app.command("create")
def create_key(
    account_id: Annotated[str, typer.Argument(help="The account that gets the key.")],
    data_dir: DataDirOption = None,
    access_key_id: KeyIdOption = None,
    secret: SecretOption = None,
    as_json: JsonOption = False,
) -> None:
    """Create (or import, with --access-key-id and --secret-access-key) a key for an account."""
    try:
        creds = _service(data_dir).create_key(account_id, access_key_id, secret)
    except AccountError as exc:
        raise fail(str(exc)) from exc
    _show(creds, as_json)


def _set_active(key_id: str, data_dir: DataDirOption, active: bool) -> None:
    try:
        _service(data_dir).set_key_active(key_id, active)
    except AccountError as exc:
        raise fail(str(exc)) from exc
    typer.echo(f"{key_id}: {'Active' if active else 'Inactive'}")


@keys_app.command("deactivate")
def deactivate(
    key_id: Annotated[str, typer.Argument(help="Access key id.")], data_dir: DataDirOption = None
) -> None:
    """Deactivate a key: requests signed with it fail with AuthFailure."""
    _set_active(key_id, data_dir, False)


@keys_app.command("activate")
def activate(
    key_id: Annotated[str, typer.Argument(help="Access key id.")], data_dir: DataDirOption = None
) -> None:
    """Re-activate a deactivated key."""
    _set_active(key_id, data_dir, True)


@keys_app.command("delete")
def delete(
    key_id: Annotated[str, typer.Argument(help="Access key id.")], data_dir: DataDirOption = None
) -> None:
    """Delete a key for good."""
    try:
        _service(data_dir).delete_key(key_id)
    except AccountError as exc:
        raise fail(str(exc)) from exc
    typer.echo(f"{key_id}: deleted")
