"""The one filter engine every Describe call uses.

A :class:`FilterSpec` is a declarative table: filter name → value getter. ``tag:<key>``,
``tag-key`` and ``tag-value`` come for free when the spec knows how to read a resource's
tags. Semantics, as in EC2:

* several values of one filter are OR-ed; several filters are AND-ed;
* values may use ``*`` (any run of characters) and ``?`` (one character); ``\\`` escapes them;
* a getter may return one value or several (a resource matches when any of them does);
  booleans compare as ``true``/``false``, timestamps as ISO 8601 with milliseconds;
* a name the spec does not know is an ``InvalidParameterValue`` error, never a silent match.
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

    def compile(self, filters: Sequence[Mapping[str, Any]] | None) -> Predicate[T]:
        """A predicate for the request's ``Filters`` list (validates every filter first)."""
        predicates: list[Predicate[T]] = []
        for spec in filters or ():
            name = spec.get("Name")
            if not name:
                raise invalid_parameter("The filter name must be a non-empty string")
            values = list(spec.get("Values") or [])
            if not values:
                raise invalid_parameter(f"The filter '{name}' must have at least one value")
            if len(values) > 200:
                raise invalid_parameter(f"The filter '{name}' has too many values (max 200)")
            predicates.append(self._one(name, [compile_pattern(str(v)) for v in values]))
        return lambda item: all(p(item) for p in predicates)

    def apply(self, items: Iterable[T], filters: Sequence[Mapping[str, Any]] | None) -> list[T]:
        """The items matching every filter, in their original order."""
        predicate = self.compile(filters)
        return [item for item in items if predicate(item)]
