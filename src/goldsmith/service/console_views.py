"""Sorted, counted pages of images for the console — DescribeImages' rules, another order.

DescribeImages pages in image-id order with opaque tokens, as EC2 does; a console table
needs "sort by name or creation date, page 37 of 2,000, 80,000 in all". This module answers
that with one COUNT and one ``ORDER BY … LIMIT/OFFSET`` over exactly the conditions
DescribeImages builds — visibility (:func:`describe.visible`), the filter table's SQL hooks
(``SPEC``), tag conditions and the deprecated/disabled scoping (``Describer._scoping``) —
never a second implementation of any of those rules. It returns image ids only; the
console renders them with DescribeImages(ImageIds=…), which checks visibility once more.

Only filters whose SQL hook is exact are accepted (every filter the console offers has
one), so SQL alone decides and a page costs an index walk, not a scan in Python.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import sqlalchemy as sa

from goldsmith.catalog import regions as region_rows
from goldsmith.catalog.db import Catalog
from goldsmith.catalog.images import images
from goldsmith.service.context import RequestContext
from goldsmith.service.errors import invalid_parameter
from goldsmith.service.images import ImageService
from goldsmith.service.images.common import now
from goldsmith.service.images.describe import SPEC, decided_in_sql, tag_conditions, visible
from goldsmith.service.images.organizations import principals_of

Scope = Literal["owned", "shared", "public"]
Show = Literal["hide", "include", "only"]

#: Sort keys → column (ties broken by image id, so pages never overlap).
SORTS: dict[str, Any] = {
    "name": images.c.name,
    "created": images.c.created_at,
    "id": images.c.image_id,
    "state": images.c.state,
}
MAX_PER_PAGE = 200


@dataclass(frozen=True)
class ImageQuery:
    """What the images table shows: a scope, EC2 filters, deprecated/disabled, order, page."""

    scope: Scope = "owned"
    filters: Sequence[Mapping[str, Any]] = field(default_factory=tuple)
    deprecated: Show = "hide"
    disabled: Show = "hide"
    sort: str = "name"
    descending: bool = False
    page: int = 1
    per_page: int = 50


@dataclass(frozen=True)
class ImagePage:
    """Image ids of one page, in order, and how many images match in all."""

    ids: list[str]
    total: int

    def pages(self, per_page: int) -> int:
        return max(1, -(-self.total // per_page))


def _scope_params(query: ImageQuery) -> dict[str, Any]:
    """The DescribeImages parameters that mean the same as the query's scope and switches."""
    params: dict[str, Any] = {
        "IncludeDeprecated": query.deprecated != "hide",
        "IncludeDisabled": query.disabled != "hide",
    }
    if query.scope == "owned":
        params["Owners"] = ["self"]
    elif query.scope == "shared":
        params["ExecutableUsers"] = ["self"]
    else:
        params["ExecutableUsers"] = ["all"]
    return params


def _extra(ctx: RequestContext, query: ImageQuery) -> list[Any]:
    """Conditions of the console's own views (not permission rules: those come from above)."""
    out: list[Any] = []
    if query.scope == "shared":
        # "Shared with me" lists others' private images granted to me, as EC2's console does.
        out += [images.c.account_id != ctx.account_id, images.c.is_public.is_(False)]
    if query.deprecated == "only":
        out.append(images.c.deprecation_time <= now())
    if query.disabled == "only":
        out.append(images.c.state == "disabled")
    return out


def find_images(service: ImageService, ctx: RequestContext, query: ImageQuery) -> ImagePage:
    """One sorted page of the images ``ctx``'s account may see that match ``query``."""
    filters = list(query.filters)
    SPEC.compile(filters)  # validates names and values exactly as DescribeImages does
    if not decided_in_sql(filters):
        raise invalid_parameter("The console's image table only takes filters decided in SQL.")
    column = SORTS.get(query.sort)
    if column is None:
        raise invalid_parameter(f"Unknown sort key {query.sort!r}.")
    per_page = min(max(1, query.per_page), MAX_PER_PAGE)
    page = max(1, query.page)
    params = {**_scope_params(query), "Filters": filters}
    deps = service.deps
    with deps.catalog.begin() as conn:
        principals = principals_of(conn, ctx.account_id)
        conditions = [
            images.c.region == ctx.region,
            images.c.recycle_bin_enter.is_(None),
            visible(ctx.region, principals),
            *SPEC.pushdown(filters),
            *tag_conditions(ctx.region, filters, ctx.account_id),
            # The same scoping DescribeImages applies (owners, executable users, switches).
            *service.describer._scoping(conn, ctx, principals, params),
            *_extra(ctx, query),
        ]
        where = sa.and_(*conditions)
        count = sa.select(sa.func.count()).select_from(images).where(where)
        total = int(conn.execute(count).scalar_one())
        order = (
            [column.desc(), images.c.image_id.desc()]
            if query.descending
            else [column, images.c.image_id]
        )
        query_ids = (
            sa.select(images.c.image_id)
            .where(where)
            .order_by(*order)
            .limit(per_page)
            .offset((page - 1) * per_page)
        )
        return ImagePage([str(i) for i in conn.execute(query_ids).scalars()], total)


def regions_in_use(catalog: Catalog, enabled: frozenset[str]) -> list[str]:
    """The enabled regions that hold anything (a region's row appears on its first use).

    Pages that look across regions (an image's copies) ask only these, instead of every
    region the server could serve.
    """
    with catalog.begin() as conn:
        return sorted(set(region_rows.used_regions(conn)) & enabled)
