"""Generated reference pages match the code, and every CLI command has help."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from goldsmith.cli.docs_cmd import pages
from goldsmith.cli.main import app

DOCS = Path(__file__).resolve().parents[3] / "docs"


def test_generated_pages_are_current() -> None:
    for name, text in pages().items():
        committed = (DOCS / name).read_text()
        assert committed == text, f"docs/{name} is stale: run `goldsmith docs generate`"


def _walk(command: Any, path: str) -> list[tuple[str, Any]]:
    found = [(path, command)]
    for name, sub in getattr(command, "commands", {}).items():
        found += _walk(sub, f"{path} {name}")
    return found


def test_every_command_and_option_has_help() -> None:
    for path, command in _walk(typer.main.get_command(app), "goldsmith"):
        assert (command.help or "").strip(), f"{path} has no help"
        for param in command.params:
            assert getattr(param, "help", None), f"{path} {param.name} has no help"


def test_supported_operations_page_lists_the_handler_table() -> None:
    text = (DOCS / "operations.md").read_text()
    for op in ("DescribeRegions", "CreateKeyPair", "DescribeTags"):
        assert f"`{op}`" in text
