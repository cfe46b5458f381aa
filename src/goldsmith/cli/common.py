"""Options and helpers shared by the CLI's commands."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from goldsmith.config import ConfigError, Settings, load_settings

DataDirOption = Annotated[
    Path | None,
    typer.Option(
        "--data-dir",
        envvar="GOLDSMITH_DATA_DIR",
        help="Data directory (catalog, chunk stores). Default: ./data.",
        show_default=False,
    ),
]
ConfigOption = Annotated[
    Path | None,
    typer.Option("--config", help="TOML configuration file.", show_default=False),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]

CREDENTIALS_FILE = "admin-credentials"


def settings_from(data_dir: Path | None, config: Path | None = None, **flags: Any) -> Settings:
    """Resolve settings or exit with a clear message."""
    try:
        return load_settings({"data_dir": data_dir, **flags}, config_file=config)
    except ConfigError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc


def fail(message: str, code: int = 1) -> typer.Exit:
    """Print ``message`` to stderr and return the Exit to raise."""
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(code)


def print_json(value: Any) -> None:
    typer.echo(json.dumps(value, indent=2, default=str))
