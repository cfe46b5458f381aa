"""The filter engine: wildcards, OR within a filter, AND across filters, tags, errors."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from goldsmith.service.errors import ClientError
from goldsmith.service.filters import FilterSpec, compile_pattern, format_value

Item = dict[str, Any]

SPEC: FilterSpec[Item] = FilterSpec(
    {
        "name": lambda i: i["name"],
        "size": lambda i: i["size"],
        "public": lambda i: i["public"],
        "device": lambda i: i["devices"],
        "created": lambda i: i["created"],
    },
    tags=lambda i: i["tags"],
)

ITEMS: list[Item] = [
    {
        "name": "web-1",
        "size": 8,
        "public": True,
        "devices": ["/dev/sda1", "/dev/sdb"],
        "created": datetime(2026, 11, 1, 12, 0, 0, 123000, tzinfo=UTC),
        "tags": {"env": "prod"},
    },
    {
        "name": "web-2",
        "size": 16,
        "public": False,
        "devices": ["/dev/xvda"],
        "created": datetime(2026, 11, 2, 12, 0, tzinfo=UTC),
        "tags": {"env": "dev", "team": ""},
    },
    {
        "name": "db*1",
        "size": 8,
        "public": False,
        "devices": [],
        "created": datetime(2026, 10, 2, 12, 0, tzinfo=UTC),
        "tags": {},
    },
]


def names(filters: list[dict[str, Any]]) -> list[str]:
    return [i["name"] for i in SPEC.apply(ITEMS, filters)]


def test_no_filters_match_everything() -> None:
    assert names([]) == ["web-1", "web-2", "db*1"]


@pytest.mark.parametrize(
    ("filters", "expected"),
    [
        ([{"Name": "name", "Values": ["web-*"]}], ["web-1", "web-2"]),
        ([{"Name": "name", "Values": ["web-?"]}], ["web-1", "web-2"]),
        ([{"Name": "name", "Values": ["web-"]}], []),
        ([{"Name": "name", "Values": ["WEB-1"]}], []),  # case-sensitive, as EC2
        ([{"Name": "name", "Values": ["db\\*1"]}], ["db*1"]),  # escaped wildcard
        ([{"Name": "name", "Values": ["web-1", "db*"]}], ["web-1", "db*1"]),  # OR
        ([{"Name": "size", "Values": ["8"]}, {"Name": "public", "Values": ["false"]}], ["db*1"]),
        ([{"Name": "device", "Values": ["/dev/sdb"]}], ["web-1"]),  # any of several values
        ([{"Name": "created", "Values": ["2026-11-01T12:00:00.123Z"]}], ["web-1"]),
        ([{"Name": "created", "Values": ["2026-11-*"]}], ["web-1", "web-2"]),
        ([{"Name": "tag:env", "Values": ["prod", "dev"]}], ["web-1", "web-2"]),
        ([{"Name": "tag:team", "Values": [""]}], ["web-2"]),
        ([{"Name": "tag:team", "Values": ["*"]}], ["web-2"]),  # key must exist
        ([{"Name": "tag-key", "Values": ["team"]}], ["web-2"]),
        ([{"Name": "tag-value", "Values": ["pr*"]}], ["web-1"]),
    ],
)
def test_filter_semantics(filters: list[dict[str, Any]], expected: list[str]) -> None:
    assert names(filters) == expected


@pytest.mark.parametrize(
    "filters",
    [
        [{"Name": "colour", "Values": ["red"]}],
        [{"Name": "name", "Values": []}],
        [{"Values": ["x"]}],
        [{"Name": "name", "Values": ["x"] * 201}],
    ],
)
def test_bad_filters_are_errors(filters: list[dict[str, Any]]) -> None:
    with pytest.raises(ClientError) as info:
        SPEC.apply(ITEMS, filters)
    assert info.value.code == "InvalidParameterValue"


def test_tag_filters_need_a_tag_reader() -> None:
    plain: FilterSpec[Item] = FilterSpec({"name": lambda i: i["name"]})
    with pytest.raises(ClientError):
        plain.apply(ITEMS, [{"Name": "tag-key", "Values": ["env"]}])


def test_format_and_patterns() -> None:
    assert format_value(True) == "true"
    assert format_value(datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)) == "2026-01-02T03:04:05.000Z"
    assert compile_pattern("a.b").fullmatch("a.b")
    assert not compile_pattern("a.b").fullmatch("axb")
    assert compile_pattern("a\nb*").fullmatch("a\nbc\nd")


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        (["web-1"], {"web-1"}),
        (["web-*"], {"web-1", "web-2"}),
        (["50%"], {"50%"}),  # a literal % is not a wildcard
        (["50\\*"], {"50*"}),  # an escaped * is literal
        (["a_c"], {"a_c"}),  # a literal _ is not a wildcard
        (["a?c"], {"a_c", "abc"}),
        (["nothing"], set()),
    ],
)
def test_sql_match_is_a_superset_of_the_predicate(values: list[str], expected: set[str]) -> None:
    import sqlalchemy as sa

    from goldsmith.service.filters import sql_match

    engine = sa.create_engine("sqlite://")
    table = sa.Table("t", sa.MetaData(), sa.Column("v", sa.String))
    table.metadata.create_all(engine)
    names = ["web-1", "web-2", "50%", "500", "50*", "a_c", "abc"]
    with engine.begin() as conn:
        conn.execute(table.insert(), [{"v": n} for n in names])
        got = {r.v for r in conn.execute(sa.select(table.c.v).where(sql_match(table.c.v, values)))}
    spec: FilterSpec[str] = FilterSpec({"v": lambda v: v})
    exact = set(spec.apply(names, [{"Name": "v", "Values": values}]))
    assert exact == expected
    assert exact <= got  # pushdown may only narrow, never drop a match
