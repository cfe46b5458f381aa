"""DescribeImages decided in SQL alone answers exactly as the Python filter pass does.

When every filter of a request has an SQL hook, DescribeImages skips the Python predicate
and cuts pages with ``LIMIT``. These tests run random filter combinations (names and tag
values chosen to trip case-insensitive or wildcard-leaking SQL: mixed case, ``%``, ``_``,
``[``, ``*``, ``?``, backslashes, non-ASCII) with scoping and paging, on SQLite and on a
real PostgreSQL, and require the SQL-only answer to equal the Python-filtered one, dict
for dict, page for page.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from image_helpers import REGION, FakeSnapshots, World

from goldsmith.catalog.db import Catalog
from goldsmith.service.accounts import AccountService
from goldsmith.service.context import RequestContext
from goldsmith.service.images import ImageService
from goldsmith.service.images.describe import decided_in_sql, glob_pattern
from goldsmith.service.operations import Operation
from goldsmith.service.pagination import Paginator
from goldsmith.service.tags import TagService
from unit.catalog.conftest import catalog, postgres_server

__all__ = ["catalog", "postgres_server"]  # fixtures: SQLite and PostgreSQL catalogs

NAMES = [
    "web-01",
    "Web-02",
    "WEB-03",
    "web_04",
    "webX04",
    "db (primary)",
    "db [replica]",
    "a.b/c@d",
    "it's-[x]",
    "base-image",
    "base_image",
    "BASE-IMAGE",
]
TAG_VALUES = ["Prod", "prod", "p%d", "p_d", "pXd", "a*b", "a?b", "x[1]", "back\\slash", "ünï", ""]
PATTERNS = [
    "*",
    "?",
    "web-*",
    "Web-*",
    "WEB*",
    "*-0?",
    "web\\_04",
    "web_04",
    "*_*",
    "*%*",
    "p%d",
    "p_d",
    "p?d",
    "*[*",
    "*[replica]",
    "a\\*b",
    "a\\?b",
    "a*b",
    "*\\\\*",
    "ü*",
    "*Ï",
    "prod",
    "Prod",
    "t*",
    "true",
    "false",
    "*e",
    "*E",
    "*eb-0*",
    "*image",
    "*d",
    "x86_64",
    "arm*",
    "",
]


def _world_on(catalog: Catalog) -> World:
    accounts = AccountService(catalog)
    platform = accounts.create_account(alias="amazon", role="platform").account_id
    tags = TagService(catalog, Paginator(b"k" * 32))
    snapshots = FakeSnapshots()
    images = ImageService(catalog, tags, snapshots, Paginator(b"k" * 32), "amazon")
    operations = {op.name: op for op in images.operations()}
    operations["CreateTags"] = Operation("CreateTags", tags.create_tags, "CreateTags")
    return World(catalog, images, snapshots, accounts, operations, platform)


@pytest.fixture
def populated(catalog: Catalog) -> Iterator[tuple[World, list[RequestContext], list[str]]]:
    """Three accounts' images with tricky names and tags, some public, some shared."""
    world = _world_on(catalog)
    rng = random.Random(7)
    people = [world.account() for _ in range(3)]
    image_ids: list[str] = []
    for n, name in enumerate(NAMES * 2):
        owner = people[n % 3]
        image_id = world.register(
            owner,
            name if n < len(NAMES) else f"{name}-{n}",
            Architecture=rng.choice(["x86_64", "arm64"]),
            Description=rng.choice([None, "Prod build", "prod build", "50% off_"]),
        )
        image_ids.append(image_id)
        tags = [{"Key": "env", "Value": rng.choice(TAG_VALUES)}]
        if rng.random() < 0.5:
            tags.append({"Key": rng.choice(["Team", "team"]), "Value": rng.choice(TAG_VALUES)})
        world.call(owner, "CreateTags", Resources=[image_id], Tags=tags)
        roll = rng.random()
        if roll < 0.3:
            grant: dict[str, Any] = {"Group": "all"}
        elif roll < 0.6:
            grant = {"UserId": rng.choice([p for p in people if p is not owner]).account_id}
        else:
            continue
        world.call(
            owner, "ModifyImageAttribute", ImageId=image_id, LaunchPermission={"Add": [grant]}
        )
    yield world, people, image_ids


def _random_filters(rng: random.Random, image_ids: list[str], world: World) -> list[Any]:
    names = [
        "name",
        "architecture",
        "description",
        "image-id",
        "owner-id",
        "state",
        "is-public",
        "tag:env",
        "tag:Team",
        "tag:team",
        "root-device-name",
        "block-device-mapping.snapshot-id",
        "image-type",
    ]
    filters = []
    for name in rng.sample(names, rng.randint(1, 3)):
        values = rng.sample(PATTERNS, rng.randint(1, 3))
        if name == "image-id":
            values += rng.sample(image_ids, 2)
        elif name == "block-device-mapping.snapshot-id":
            values += [*rng.sample(list(world.snapshots.snapshots), 2), "snap-*"]
        filters.append({"Name": name, "Values": values})
    return filters


def _pages(world: World, ctx: RequestContext, params: dict[str, Any]) -> list[Any]:
    """Every page's images (following NextToken), as plain lists."""
    pages, token = [], None
    while True:
        call = dict(params, **({"NextToken": token} if token else {}))
        out = world.call(ctx, "DescribeImages", **call)
        pages.append(list(out["Images"]))
        token = out.get("NextToken")
        if not token:
            return pages


def test_sql_only_answers_equal_python_filtered_answers(
    populated: tuple[World, list[RequestContext], list[str]],
) -> None:
    world, people, image_ids = populated
    describer = world.images.describer
    rng = random.Random(11)
    matched = 0
    for _ in range(60):
        ctx = rng.choice(people)
        params: dict[str, Any] = {"Filters": _random_filters(rng, image_ids, world)}
        if rng.random() < 0.3:
            params["Owners"] = rng.choice([["self"], [people[1].account_id]])
        if rng.random() < 0.2:
            params["ExecutableUsers"] = ["self"]
        if rng.random() < 0.4:
            params["MaxResults"] = 5
        assert decided_in_sql(params["Filters"])
        describer.force_python_filters = False
        in_sql = _pages(world, ctx, params)
        describer.force_python_filters = True
        try:
            in_python = _pages(world, ctx, params)
        finally:
            describer.force_python_filters = False
        assert in_sql == in_python, params
        matched += sum(len(p) for p in in_sql)
    assert matched > 50  # the combinations do match images, not only empty answers


@pytest.mark.parametrize("name", ["name", "description", "tag:env", "architecture"])
def test_each_pattern_alone_matches_as_in_python(
    populated: tuple[World, list[RequestContext], list[str]], name: str
) -> None:
    world, people, _ = populated
    describer = world.images.describer
    for pattern in PATTERNS:
        params = {"Filters": [{"Name": name, "Values": [pattern]}]}
        in_sql = world.call(people[0], "DescribeImages", **params)["Images"]
        describer.force_python_filters = True
        try:
            in_python = world.call(people[0], "DescribeImages", **params)["Images"]
        finally:
            describer.force_python_filters = False
        assert in_sql == in_python, params


def test_filters_are_case_sensitive_and_wildcards_literal(
    populated: tuple[World, list[RequestContext], list[str]],
) -> None:
    world, people, _ = populated
    me = people[0]

    def names(*values: str) -> list[str]:
        found = world.call(me, "DescribeImages", Filters=[{"Name": "name", "Values": values}])
        return sorted(i["Name"] for i in found["Images"])

    visible = {i["Name"] for i in world.call(me, "DescribeImages")["Images"]}
    assert names("web-*") == sorted(n for n in visible if n.startswith("web-"))
    assert all(n.startswith("web_") for n in names("web\\_*"))
    assert "webX04" not in names("web\\_04")
    assert names("*[replica]") == sorted(n for n in visible if n.endswith("[replica]"))
    assert names("*image") == sorted(n for n in visible if n.endswith("image"))


def test_filters_without_exact_hooks_use_the_python_pass() -> None:
    assert decided_in_sql([{"Name": "name", "Values": ["x"]}, {"Name": "tag:a", "Values": ["b"]}])
    assert not decided_in_sql([{"Name": "creation-date", "Values": ["2025*"]}])
    assert not decided_in_sql([{"Name": "tag-key", "Values": ["env"]}])
    assert decided_in_sql(None)


@pytest.mark.parametrize(
    ("value", "glob"),
    [
        ("web-*", "web-*"),
        ("a?c", "a?c"),
        ("a\\*b", "a[*]b"),
        ("a\\?b", "a[?]b"),
        ("x[1]", "x[[]1]"),
        ("back\\\\*", "back\\*"),
        ("50%_", "50%_"),
    ],
)
def test_glob_pattern(value: str, glob: str) -> None:
    assert glob_pattern(value) == glob


def test_unfiltered_pages_walk_in_id_order(tmp_path: Path) -> None:
    """Pages of the walk (no selective condition) join up to the unpaged answer."""
    catalog = Catalog(f"sqlite:///{tmp_path / 'catalog.db'}")
    catalog.migrate()
    try:
        world = _world_on(catalog)
        me, other = world.account(), world.account()
        for n in range(12):
            image_id = world.register(me if n % 2 else other, f"image-{n:02d}")
            if n % 4 == 0:
                world.call(
                    other,
                    "ModifyImageAttribute",
                    ImageId=image_id,
                    LaunchPermission={"Add": [{"Group": "all"}]},
                )
        everything = world.ids(me)
        assert everything == sorted(everything) and len(everything) == 9
        paged = [i["ImageId"] for page in _pages(world, me, {"MaxResults": 5}) for i in page]
        assert paged == everything
    finally:
        catalog.dispose()


def test_region_is_respected(populated: tuple[World, list[RequestContext], list[str]]) -> None:
    world, people, _ = populated
    elsewhere = RequestContext(people[0].account_id, "eu-west-1")
    assert REGION != "eu-west-1"
    assert world.call(elsewhere, "DescribeImages")["Images"] == ()
    tagged = [{"Name": "tag:env", "Values": ["*"]}]
    assert world.call(elsewhere, "DescribeImages", Filters=tagged)["Images"] == ()
    assert len(world.call(people[0], "DescribeImages", Filters=tagged)["Images"]) > 0
