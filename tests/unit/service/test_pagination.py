"""Pagination tokens: complete, stable under inserts, tamper-proof, bound to the query."""

from __future__ import annotations

import pytest

from goldsmith.service.errors import ClientError
from goldsmith.service.pagination import Paginator

P = Paginator(b"k" * 32)


def walk(items: list[str], size: int, params: dict[str, object] | None = None) -> list[list[str]]:
    pages: list[list[str]] = []
    request = dict(params or {}, MaxResults=size)
    while True:
        page, token = P.page(items, key=lambda s: (s,), operation="Op", params=request)
        pages.append(page)
        if token is None:
            return pages
        request["NextToken"] = token


def test_pages_cover_everything_once() -> None:
    items = [f"i{n:03d}" for n in range(23)]
    pages = walk(items, 5)
    assert [len(p) for p in pages] == [5, 5, 5, 5, 3]
    assert [x for page in pages for x in page] == items


def test_exact_multiple_has_no_empty_trailing_page() -> None:
    pages = walk([f"i{n}" for n in range(10)], 5)
    assert [len(p) for p in pages] == [5, 5]


def test_no_max_results_returns_all() -> None:
    page, token = P.page(["a", "b"], key=lambda s: (s,), operation="Op", params={})
    assert (page, token) == (["a", "b"], None)


def test_resume_is_stable_when_items_change() -> None:
    items = [f"i{n:02d}" for n in range(10)]
    first, token = P.page(items, key=lambda s: (s,), operation="Op", params={"MaxResults": 5})
    changed = ["i00a", *items[:3], *items[4:], "i99"]  # insert before cursor, delete after
    second, _ = P.page(
        changed, key=lambda s: (s,), operation="Op", params={"MaxResults": 5, "NextToken": token}
    )
    assert first == items[:5]
    assert second == ["i05", "i06", "i07", "i08", "i09"]


@pytest.mark.parametrize("bad", ["", "abc", "abc.def", "eyJrIjpbXX0.xx"])
def test_garbage_tokens(bad: str) -> None:
    with pytest.raises(ClientError) as info:
        P.decode(bad, "Op", {})
    assert info.value.code == "InvalidPaginationToken"


def test_token_is_bound_to_operation_params_and_secret() -> None:
    token = P.encode(("x",), "Op", {"Filters": [1]})
    assert P.decode(token, "Op", {"Filters": [1], "MaxResults": 9}) == ("x",)
    for op, params in [("Other", {"Filters": [1]}), ("Op", {"Filters": [2]})]:
        with pytest.raises(ClientError):
            P.decode(token, op, params)
    with pytest.raises(ClientError):
        Paginator(b"z" * 32).decode(token, "Op", {"Filters": [1]})


@pytest.mark.parametrize("value", [0, 4, 1001])
def test_max_results_range(value: int) -> None:
    with pytest.raises(ClientError) as info:
        P.page([], key=lambda s: (s,), operation="Op", params={"MaxResults": value})
    assert info.value.code == "InvalidParameterValue"
