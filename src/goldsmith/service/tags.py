"""Tags on every resource type: CreateTags, DeleteTags, DescribeTags, TagSpecifications.

Resource types register a :class:`ResourceKind` (id prefix, EC2 resource type, owner
lookup), so CreateTags knows whether a resource exists and who owns it, for every type
Goldsmith has now or adds later. Limits as EC2: 50 tags per resource, keys 1–128 and values
0–256 characters, the ``aws:`` prefix reserved.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from goldsmith.catalog import tags as rows
from goldsmith.catalog.db import Catalog
from goldsmith.catalog.schema import tags as tag_table
from goldsmith.service.context import RequestContext
from goldsmith.service.errors import ClientError, invalid_parameter, not_found
from goldsmith.service.filters import FilterSpec, sql_match
from goldsmith.service.ids import prefix_of
from goldsmith.service.pagination import Paginator

MAX_TAGS = 50
MAX_KEY = 128
MAX_VALUE = 256
MAX_RESOURCES = 1000

OwnerLookup = Callable[[sa.Connection, str, str], str | None]


@dataclass(frozen=True)
class ResourceKind:
    """A taggable resource type: ``owner_of(conn, region, id)`` → owner account or None."""

    prefix: str
    resource_type: str
    owner_of: OwnerLookup


_TAG_FILTERS: FilterSpec[rows.TagRow] = FilterSpec(
    {
        "key": lambda t: t.key,
        "value": lambda t: t.value,
        "resource-id": lambda t: t.resource_id,
        "resource-type": lambda t: t.resource_type,
    },
    tags=lambda t: {t.key: t.value},
    sql={
        "key": lambda values: sql_match(tag_table.c.key, values),
        "value": lambda values: sql_match(tag_table.c.value, values),
        "resource-id": lambda values: sql_match(tag_table.c.resource_id, values),
        "resource-type": lambda values: sql_match(tag_table.c.resource_type, values),
    },
    sql_tag=lambda key, values: sa.and_(
        tag_table.c.key == key, sql_match(tag_table.c.value, values)
    ),
)


def _check_tag(key: Any, value: Any) -> tuple[str, str]:
    if not isinstance(key, str) or not 1 <= len(key) <= MAX_KEY:
        raise invalid_parameter(
            f"Tag key must be between 1 and {MAX_KEY} characters, got {str(key)[:140]!r}"
        )
    if key.lower().startswith("aws:"):
        raise invalid_parameter(
            f"Tag keys starting with 'aws:' are reserved for internal use: {key}"
        )
    value = "" if value is None else value
    if not isinstance(value, str) or len(value) > MAX_VALUE:
        raise invalid_parameter(f"Tag value for key '{key}' exceeds {MAX_VALUE} characters")
    return key, value


def validate_tags(tags: Iterable[Mapping[str, Any]]) -> dict[str, str]:
    """Checked ``{key: value}`` from a ``[{"Key", "Value"}]`` list (later duplicates win)."""
    return dict(_check_tag(t.get("Key"), t.get("Value")) for t in tags)


def _limit_exceeded() -> ClientError:
    return ClientError(
        "TagLimitExceeded",
        f"The maximum number of tags for a resource ({MAX_TAGS}) has been reached.",
    )


class TagService:
    """Tag storage and the three tag operations, for every registered resource kind."""

    def __init__(self, catalog: Catalog, paginator: Paginator) -> None:
        self._catalog = catalog
        self._paginator = paginator
        self._kinds: dict[str, ResourceKind] = {}

    def register(self, kind: ResourceKind) -> None:
        self._kinds[kind.prefix] = kind

    def _owned_kind(self, conn: sa.Connection, ctx: RequestContext, rid: str) -> ResourceKind:
        prefix = prefix_of(rid) if isinstance(rid, str) else None
        kind = self._kinds.get(prefix or "")
        if kind is None:
            raise ClientError("InvalidID", f"The ID '{rid}' is not valid")
        if kind.owner_of(conn, ctx.region, rid) != ctx.account_id:
            raise not_found(rid)
        return kind

    def _resources(self, params: Mapping[str, Any]) -> list[str]:
        resources = list(params.get("Resources") or [])
        if not resources:
            raise ClientError(
                "MissingParameter", "The request must contain the parameter resourceIdSet"
            )
        if len(resources) > MAX_RESOURCES:
            raise invalid_parameter(f"Too many resources ({len(resources)} > {MAX_RESOURCES})")
        return resources

    def create_tags(self, ctx: RequestContext, params: Mapping[str, Any]) -> dict[str, Any]:
        resources = self._resources(params)
        values = validate_tags(params.get("Tags") or [])
        if len(values) > MAX_TAGS:
            raise _limit_exceeded()
        with self._catalog.begin() as conn:
            for rid in resources:
                kind = self._owned_kind(conn, ctx, rid)
                self.set_tags(conn, ctx, kind.resource_type, rid, values)
        return {}

    def set_tags(
        self,
        conn: sa.Connection,
        ctx: RequestContext,
        resource_type: str,
        resource_id: str,
        values: Mapping[str, str],
    ) -> None:
        """Add/overwrite tags on one resource inside the caller's transaction."""
        existing = rows.tags_of(conn, ctx.region, [resource_id]).get(resource_id, {})
        if len(existing.keys() | values.keys()) > MAX_TAGS:
            raise _limit_exceeded()
        rows.set_tags(conn, ctx.region, resource_id, resource_type, ctx.account_id, values)

    def delete_tags(self, ctx: RequestContext, params: Mapping[str, Any]) -> dict[str, Any]:
        resources = self._resources(params)
        given = params.get("Tags")
        keys: list[tuple[str, str | None]] | None = None
        if given:
            keys = []
            for tag in given:
                key = tag.get("Key")
                if not isinstance(key, str) or not key:
                    raise invalid_parameter("Tag key must be a non-empty string")
                keys.append((key, tag.get("Value")))
        with self._catalog.begin() as conn:
            for rid in resources:
                self._owned_kind(conn, ctx, rid)
                rows.delete_tags(conn, ctx.region, rid, keys)
        return {}

    def describe_tags(self, ctx: RequestContext, params: Mapping[str, Any]) -> dict[str, Any]:
        predicate = _TAG_FILTERS.compile(params.get("Filters"))
        narrowed = _TAG_FILTERS.pushdown(params.get("Filters"))
        after = self._paginator.decode(params.get("NextToken"), "DescribeTags", params)
        with self._catalog.begin() as conn:
            listed = rows.list_tags(conn, ctx.region, ctx.account_id, after, narrowed)
            stream = (t for t in listed if predicate(t))
            page, token = self._paginator.page(
                stream,
                key=lambda t: (t.resource_id, t.key),
                operation="DescribeTags",
                params=params,
            )
        tags = [
            {
                "ResourceId": t.resource_id,
                "ResourceType": t.resource_type,
                "Key": t.key,
                "Value": t.value,
            }
            for t in page
        ]
        return {"Tags": tags, "NextToken": token}

    def tags_of(
        self, conn: sa.Connection, region: str, ids: Iterable[str]
    ) -> dict[str, dict[str, str]]:
        return rows.tags_of(conn, region, ids)

    def forget(self, conn: sa.Connection, region: str, resource_id: str) -> None:
        """Drop every tag of a deleted resource."""
        rows.delete_tags(conn, region, resource_id, None)


def tag_list(values: Mapping[str, str]) -> list[dict[str, str]]:
    """``{key: value}`` → EC2's ``[{"Key", "Value"}]`` (sorted by key for stable output)."""
    return [{"Key": k, "Value": v} for k, v in sorted(values.items())]


def specified_tags(specs: Sequence[Mapping[str, Any]] | None, resource_type: str) -> dict[str, str]:
    """The tags a create call's ``TagSpecifications`` give ``resource_type``.

    A specification for a resource type the operation does not create is an error.
    """
    out: dict[str, str] = {}
    for spec in specs or ():
        kind = spec.get("ResourceType")
        if kind != resource_type:
            raise invalid_parameter(
                f"'{kind}' is not a valid taggable resource type for this operation."
            )
        out.update(validate_tags(spec.get("Tags") or []))
    if len(out) > MAX_TAGS:
        raise _limit_exceeded()
    return out
