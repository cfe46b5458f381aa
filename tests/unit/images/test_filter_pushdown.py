"""The filter engine's SQL pushdown: LIKE translation, and hooks narrowing (never deciding)."""

from __future__ import annotations

from typing import Any

import pytest
import sqlalchemy as sa

from goldsmith.service.filters import FilterSpec, like_pattern, literal_value


@pytest.mark.parametrize(
    ("value", "pattern"),
    [
        ("web-*", "web-%"),
        ("a?c", "a_c"),
        ("plain", None),
        ("100%", None),
        ("50%*", "50\\%%"),
        ("a_*", "a\\_%"),
        ("\\*literal*", "*literal%"),
        ("back\\\\*", "back\\\\%"),
    ],
)
def test_like_pattern(value: str, pattern: str | None) -> None:
    assert like_pattern(value) == pattern


def test_literal_value_drops_escapes() -> None:
    assert literal_value("a\\*b\\?c") == "a*b?c"
    assert literal_value("plain") == "plain"


def test_pushdown_matches_superset_and_predicate_decides() -> None:
    """On SQLite LIKE ignores case; the predicate (case-sensitive, as EC2) still decides."""
    engine = sa.create_engine("sqlite://")
    meta = sa.MetaData()
    table = sa.Table("t", meta, sa.Column("name", sa.String))
    meta.create_all(engine)
    names = ["web-1", "WEB-2", "db%1", "db_1", "dbx1"]

    def hook(values: Any) -> Any:
        terms = [
            table.c.name.like(p, escape="\\")
            if (p := like_pattern(v))
            else table.c.name == literal_value(v)
            for v in values
        ]
        return sa.or_(*terms)

    spec: FilterSpec[str] = FilterSpec({"name": lambda n: n}, sql={"name": hook})
    with engine.begin() as conn:
        conn.execute(table.insert(), [{"name": n} for n in names])
        for values, expect in (
            (["web-*"], ["web-1"]),
            (["db_?"], ["db_1"]),
            (["db\\_1"], ["db_1"]),
        ):
            filters = [{"Name": "name", "Values": values}]
            query = sa.select(table.c.name).where(*spec.pushdown(filters))
            fetched = [r.name for r in conn.execute(query)]
            predicate = spec.compile(filters)
            assert set(expect) <= set(fetched)
            assert [n for n in fetched if predicate(n)] == expect
    # Filters without a hook are not pushed down, and unknown names still fail in compile.
    assert spec.pushdown([{"Name": "other", "Values": ["x"]}]) == []
