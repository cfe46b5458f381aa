"""Resource ids in EC2's form: ``<prefix>-<17 lowercase hex digits>``."""

from __future__ import annotations

import re
import secrets

from goldsmith.service.errors import malformed

_ID_RE = re.compile(r"^([a-z]+)-([0-9a-f]{8}|[0-9a-f]{17})$")


def new_id(prefix: str) -> str:
    """A fresh random id such as ``key-0a1b2c3d4e5f60718``."""
    return f"{prefix}-{secrets.token_hex(9)[:17]}"


def check_id(resource_id: str, prefix: str) -> str:
    """Return ``resource_id`` if it is a well-formed ``prefix`` id, else raise ``.Malformed``."""
    match = _ID_RE.match(resource_id)
    if not match or match.group(1) != prefix:
        raise malformed(resource_id, prefix)
    return resource_id


def prefix_of(resource_id: str) -> str | None:
    """The id's resource prefix (``ami``, ``snap``, …) or None when it is not an EC2 id."""
    match = _ID_RE.match(resource_id)
    return match.group(1) if match else None
