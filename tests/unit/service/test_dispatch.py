"""Dispatch through the handler table: DryRun and authorization come before any change."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest

from goldsmith.service.context import RequestContext
from goldsmith.service.errors import ClientError, DryRunOperation, PermissionDenied
from goldsmith.service.operations import Operation, dispatch

CTX = RequestContext(account_id="111122223333", region="us-east-1")


def make(calls: list[Mapping[str, Any]], allowed: bool) -> dict[str, Operation]:
    def handler(_ctx: RequestContext, params: Mapping[str, Any]) -> dict[str, Any]:
        calls.append(params)
        return {"Return": True}

    return {"Op": Operation("Op", handler, "test op", lambda _c, _p: allowed)}


def test_allowed_call_runs_the_handler() -> None:
    calls: list[Mapping[str, Any]] = []
    assert dispatch(make(calls, True), CTX, "Op", {"X": 1}) == {"Return": True}
    assert calls == [{"X": 1}]


def test_dry_run_when_allowed_is_dry_run_operation_and_changes_nothing() -> None:
    calls: list[Mapping[str, Any]] = []
    with pytest.raises(DryRunOperation) as info:
        dispatch(make(calls, True), CTX, "Op", {"DryRun": True})
    assert (info.value.code, info.value.status) == ("DryRunOperation", 412)
    assert calls == []


@pytest.mark.parametrize("dry_run", [True, False])
def test_not_allowed_is_unauthorized_operation(dry_run: bool) -> None:
    calls: list[Mapping[str, Any]] = []
    with pytest.raises(PermissionDenied) as info:
        dispatch(make(calls, False), CTX, "Op", {"DryRun": dry_run})
    assert (info.value.code, info.value.status) == ("UnauthorizedOperation", 403)
    assert isinstance(info.value, ClientError)
    assert calls == []
