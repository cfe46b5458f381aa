"""Jinja2 environment of the console: package templates, autoescaping, small filters."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any
from urllib.parse import urlencode

import jinja2


def fmt_time(value: Any) -> str:
    """A timestamp as ``YYYY-MM-DD HH:MM UTC`` (strings from the service passed through)."""
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M UTC")
    if isinstance(value, str) and len(value) >= 16 and value[10] == "T":
        return value[:10] + " " + value[11:16] + " UTC"
    return "" if value is None else str(value)


def with_query(base: str, query: Mapping[str, str], **changes: Any) -> str:
    """``base`` with ``query`` updated by ``changes`` (None or '' removes a parameter)."""
    merged = {**query, **{k: v for k, v in changes.items()}}
    kept = {k: str(v) for k, v in merged.items() if v not in (None, "")}
    return f"{base}?{urlencode(kept)}" if kept else base


def tag_value(tags: Any, key: str) -> str:
    """The value of tag ``key`` in an EC2 ``Tags`` list ('' when absent)."""
    for tag in tags or ():
        if tag.get("Key") == key:
            return str(tag.get("Value", ""))
    return ""


def build_environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("goldsmith.api.console", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["time"] = fmt_time
    env.filters["tag"] = tag_value
    env.globals["with_query"] = with_query
    return env
