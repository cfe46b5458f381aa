"""The one filter engine every Describe call uses.

A :class:`FilterSpec` is a declarative table: filter name → value getter. ``tag:<key>``,
``tag-key`` and ``tag-value`` come for free when the spec knows how to read a resource's
tags. Semantics, as in EC2:

* several values of one filter are OR-ed; several filters are AND-ed;
* values may use ``*`` (any run of characters) and ``?`` (one character); ``\\`` escapes them;
* a getter may return one value or several (a resource matches when any of them does);
  booleans compare as ``true``/``false``, timestamps as ISO 8601 with milliseconds;
* a name the spec does not know is an ``InvalidParameterValue`` error, never a silent match.

Pushdown: a spec may also give SQL hooks (filter name → values → a condition). Hooks only
*narrow* what a query fetches — they must match a superset of what the predicate accepts
(a ``LIKE`` may be case-insensitive, for one) — and the predicate still decides, so a hook
can speed a filter up but never change its meaning.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any, Generic, TypeVar

from goldsmith.service.errors import invalid_parameter

T = TypeVar("T")
Getter = Callable[[T], Any]
Predicate = Callable[[T], bool]
#: values of one filter → a SQL condition (a superset of the predicate's matches).
SqlHook = Callable[[Sequence[str]], Any]
#: tag key (of ``tag:<key>``) and its values → a SQL condition.
SqlTagHook = Callable[[str, Sequence[str]], Any]


def format_value(value: Any) -> str:
    """The string a filter value is compared with."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, datetime):
        utc = value.astimezone(UTC)
        return utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond // 1000:03d}Z"
    return str(value)


@lru_cache(maxsize=4096)
def compile_pattern(pattern: str) -> re.Pattern[str]:
    """Compile an EC2 filter value (``*``, ``?``, ``\\`` escapes) to an anchored regex."""
    out: list[str] = []
    chars = iter(pattern)
    for char in chars:
        if char == "\\":
            out.append(re.escape(next(chars, "\\")))
        elif char == "*":
            out.append(".*")
        elif char == "?":
            out.append(".")
        else:
            out.append(re.escape(char))
    return re.compile("".join(out), re.DOTALL)


def like_pattern(value: str) -> str | None:
    """An EC2 filter value as a SQL ``LIKE`` pattern (escape ``\\``), None if it has no wildcard.

    ``*`` → ``%``, ``?`` → ``_``; literal ``%``, ``_`` and ``\\`` are escaped.
    """
    out: list[str] = []
    wild = False
    chars = iter(value)
    for char in chars:
        if char == "\\":
            escaped = next(chars, "\\")
            out.append("\\" + escaped if escaped in "%_\\" else escaped)
        elif char in "*?":
            wild = True
            out.append("%" if char == "*" else "_")
        else:
            out.append("\\" + char if char in "%_" else char)
    return "".join(out) if wild else None


def literal_value(value: str) -> str:
    """An EC2 filter value without wildcards, its ``\\`` escapes removed."""
    return re.sub(r"\\(.)", r"\1", value, flags=re.DOTALL)


def sql_match(column: Any, values: Sequence[str]) -> Any:
    """A SQL condition true for at least the rows whose ``column`` matches any of ``values``.

    Exact values compare with ``=``; wildcards become ``LIKE`` (case-insensitive on some
    databases: a superset, which is all a pushdown hook promises).
    """
    import sqlalchemy as sa

    terms = []
    for value in values:
        pattern = like_pattern(value)
        terms.append(
            column == literal_value(value) if pattern is None else column.like(pattern, escape="\\")
        )
    return sa.or_(*terms)


def _values_of(raw: Any) -> list[str]:
    if raw is None:
        return []
    if isinstance(raw, (list, tuple, set, frozenset)):
        return [format_value(v) for v in raw if v is not None]
    return [format_value(raw)]


def _any_match(patterns: Sequence[re.Pattern[str]], candidates: Iterable[str]) -> bool:
    return any(p.fullmatch(c) for c in candidates for p in patterns)


@dataclass(frozen=True)
class FilterSpec(Generic[T]):
    """Filters one resource type supports: ``getters`` plus an optional tag reader."""

    getters: Mapping[str, Getter[T]]
    tags: Callable[[T], Mapping[str, str]] | None = None
    sql: Mapping[str, SqlHook] = field(default_factory=dict)
    sql_tag: SqlTagHook | None = None
    names: frozenset[str] = field(init=False)

    def __post_init__(self) -> None:
        extra = {"tag-key", "tag-value"} if self.tags else set()
        object.__setattr__(self, "names", frozenset(self.getters) | extra)

    def _one(self, name: str, patterns: list[re.Pattern[str]]) -> Predicate[T]:
        tags = self.tags
        if tags is not None and name.startswith("tag:"):
            key = name[4:]
            return lambda item: key in (t := tags(item)) and _any_match(patterns, [t[key]])
        if tags is not None and name == "tag-key":
            return lambda item: _any_match(patterns, tags(item).keys())
        if tags is not None and name == "tag-value":
            return lambda item: _any_match(patterns, tags(item).values())
        getter = self.getters.get(name)
        if getter is None:
            raise invalid_parameter(f"The filter '{name}' is invalid")
        return lambda item: _any_match(patterns, _values_of(getter(item)))

    def _checked(self, filters: Sequence[Mapping[str, Any]] | None) -> list[tuple[str, list[str]]]:
        out: list[tuple[str, list[str]]] = []
        for spec in filters or ():
            name = spec.get("Name")
            if not name:
                raise invalid_parameter("The filter name must be a non-empty string")
            values = list(spec.get("Values") or [])
            if not values:
                raise invalid_parameter(f"The filter '{name}' must have at least one value")
            if len(values) > 200:
                raise invalid_parameter(f"The filter '{name}' has too many values (max 200)")
            out.append((str(name), [str(v) for v in values]))
        return out

    def compile(self, filters: Sequence[Mapping[str, Any]] | None) -> Predicate[T]:
        """A predicate for the request's ``Filters`` list (validates every filter first)."""
        predicates = [
            self._one(name, [compile_pattern(v) for v in values])
            for name, values in self._checked(filters)
        ]
        return lambda item: all(p(item) for p in predicates)

    def pushdown(self, filters: Sequence[Mapping[str, Any]] | None) -> list[Any]:
        """SQL conditions narrowing a query for the filters that have hooks (AND them).

        Call :meth:`compile` too: the predicate is what decides (see the module docstring).
        """
        out: list[Any] = []
        for name, values in self._checked(filters):
            if name.startswith("tag:") and self.sql_tag is not None:
                out.append(self.sql_tag(name[4:], values))
            elif name in self.sql:
                out.append(self.sql[name](values))
        return out

    def apply(self, items: Iterable[T], filters: Sequence[Mapping[str, Any]] | None) -> list[T]:
        """The items matching every filter, in their original order."""
        predicate = self.compile(filters)
        return [item for item in items if predicate(item)]
