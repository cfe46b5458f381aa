"""What the instance modules share: states, names, addresses, and small parsers."""

from __future__ import annotations

from typing import Any

from goldsmith.compute.network import loopback_address, private_address
from goldsmith.service.errors import invalid_parameter

#: EC2's instance state codes.
STATE_CODES = {
    "pending": 0,
    "running": 16,
    "shutting-down": 32,
    "terminated": 48,
    "stopping": 64,
    "stopped": 80,
}
SHUTDOWN_BEHAVIORS = ("stop", "terminate")
DEFAULT_INSTANCE_TYPE = "t2.micro"
MAX_USER_DATA = 16 * 1024


def host_name(index: int) -> str:
    """The guest's host name: ``ip-172-31-0-1`` (EC2's resource-name style)."""
    return "ip-" + private_address(index).replace(".", "-")


def private_dns(index: int | None, region: str) -> str:
    if index is None:
        return ""
    suffix = "ec2.internal" if region == "us-east-1" else f"{region}.compute.internal"
    return f"{host_name(index)}.{suffix}"


def public_ip(index: int | None) -> str | None:
    return loopback_address(index) if index is not None else None


def private_ip(index: int | None) -> str | None:
    return private_address(index) if index is not None else None


def state_dict(state: str) -> dict[str, Any]:
    return {"Code": STATE_CODES[state], "Name": state}


def check_bool(value: Any, name: str) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    raise invalid_parameter(f"Invalid value '{value}' for {name}")
