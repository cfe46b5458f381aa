"""The handler table: every EC2 operation Goldsmith supports, and how one is dispatched.

A handler is a function from the operation's input dict (member names as in botocore's
model) to its output dict; the API layer decodes and encodes the wire format around it.
The supported-operations page in docs/ is generated from this table.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from goldsmith.service.context import RequestContext
from goldsmith.service.errors import DryRunOperation, unauthorized

Handler = Callable[[RequestContext, Mapping[str, Any]], dict[str, Any]]
Authorizer = Callable[[RequestContext, Mapping[str, Any]], bool]


def anyone(_ctx: RequestContext, _params: Mapping[str, Any]) -> bool:
    """Every authenticated account may call the operation (on what it may see)."""
    return True


@dataclass(frozen=True)
class Operation:
    """One supported EC2 operation: its handler, a one-line summary, who may call it."""

    name: str
    handler: Handler
    summary: str
    authorize: Authorizer = anyone


def dispatch(
    operations: Mapping[str, Operation],
    ctx: RequestContext,
    action: str,
    params: Mapping[str, Any],
) -> dict[str, Any]:
    """Run ``action``; DryRun answers DryRunOperation or UnauthorizedOperation instead.

    ``action`` must be in ``operations`` (the API layer answers InvalidAction otherwise).
    """
    operation = operations[action]
    if not operation.authorize(ctx, params):
        raise unauthorized(action)
    if params.get("DryRun"):
        raise DryRunOperation()
    return operation.handler(ctx, params)
