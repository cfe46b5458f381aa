"""The images table (EC2's "AMIs" page): scopes, search, filters, sorting, paging.

The query string is the whole state of the table, so every view is a link::

    /console/images?scope=shared&q=debian&architecture=arm64&sort=created&dir=desc&page=3

``q`` searches names (``*`` and ``?`` are wildcards; plain text matches anywhere in the
name, case-sensitively like EC2's ``name`` filter). The page asks
:func:`goldsmith.service.console_views.find_images` for one sorted page of ids and renders
them with DescribeImages — the API's own visibility and filter rules throughout.
"""

from __future__ import annotations

from typing import Any, cast

from goldsmith.api.console.framework import Console, Spec, View, page
from goldsmith.api.console.pages import progress
from goldsmith.api.console.pages.image_detail import PAGES as DETAIL_PAGES
from goldsmith.service.console_views import ImageQuery, Scope, Show, find_images
from goldsmith.service.errors import invalid_parameter

SCOPES: dict[str, str] = {
    "owned": "Owned by me",
    "shared": "Shared with me",
    "public": "Public images",
}
#: Query parameter → (EC2 filter name, choices offered in the form).
FILTERS: dict[str, tuple[str, tuple[str, ...]]] = {
    "architecture": ("architecture", ("i386", "x86_64", "arm64")),
    "virtualization": ("virtualization-type", ("hvm", "paravirtual")),
    "root": ("root-device-type", ("ebs", "instance-store")),
    "state": ("state", ("available", "pending", "failed", "disabled")),
}
SHOW = ("hide", "include", "only")
#: How the deprecated/disabled choices read. EC2 hides others' deprecated images by default
#: but always lists the caller's own, which "hide" keeps.
SHOW_LABELS = {
    "deprecated": {"hide": "others' hidden", "include": "included", "only": "only"},
    "disabled": {"hide": "hidden", "include": "included", "only": "only"},
}
SORT_LABELS = {"name": "Name", "created": "Creation date", "id": "Image ID", "state": "State"}
PER_PAGE = (25, 50, 100)


def _int(value: str, default: int) -> int:
    try:
        return int(value)
    except ValueError:
        return default


def _filters(c: Console) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    search = c.arg("q")
    if search:
        wild = "*" in search or "?" in search
        out.append({"Name": "name", "Values": [search if wild else f"*{search}*"]})
    for arg, (name, _choices) in FILTERS.items():
        value = c.arg(arg)
        if value:
            out.append({"Name": name, "Values": [value]})
    tag = c.arg("tag")
    if tag:
        key, _, value = tag.partition("=")
        out.append({"Name": f"tag:{key.strip()}", "Values": [value.strip() or "*"]})
    return out


def image_query(c: Console) -> ImageQuery:
    """The table's query from the URL (unknown values are errors, not silently ignored)."""
    scope = c.arg("scope", "owned")
    if scope not in SCOPES:
        raise invalid_parameter(f"Unknown scope {scope!r}.")
    shows = {name: c.arg(name, "hide") for name in ("deprecated", "disabled")}
    for name, value in shows.items():
        if value not in SHOW:
            raise invalid_parameter(f"Value {value!r} for {name} must be one of {SHOW}.")
    per_page = _int(c.arg("per"), 50)
    return ImageQuery(
        scope=cast(Scope, scope),
        filters=_filters(c),
        deprecated=cast(Show, shows["deprecated"]),
        disabled=cast(Show, shows["disabled"]),
        sort=c.arg("sort", "name"),
        descending=c.arg("dir") == "desc",
        page=_int(c.arg("page"), 1),
        per_page=per_page if per_page in PER_PAGE else 50,
    )


def describe_in_order(c: Console, ids: list[str]) -> list[dict[str, Any]]:
    """DescribeImages of ``ids`` (none → none: an empty ImageIds would mean "all")."""
    if not ids:
        return []
    out = c.call(
        "DescribeImages", {"ImageIds": ids, "IncludeDeprecated": True, "IncludeDisabled": True}
    )
    by_id = {image["ImageId"]: image for image in out["Images"]}
    return [by_id[i] for i in ids if i in by_id]


def list_images(c: Console) -> View:
    query = image_query(c)
    found = find_images(c.services.images, c.ctx, query)
    images = describe_in_order(c, found.ids)
    progress.annotate(c, images)
    data = {
        "Images": images,
        "Total": found.total,
        "Page": query.page,
        "Pages": found.pages(query.per_page),
        "PerPage": query.per_page,
        "Scope": query.scope,
        "Region": c.ctx.region,
    }
    extra = {
        "scopes": SCOPES,
        "filters": FILTERS,
        "show_labels": SHOW_LABELS,
        "sorts": SORT_LABELS,
        "per_pages": PER_PAGE,
        "account": c.ctx.account_id,
    }
    live = any(image.get("State") == "pending" for image in images)
    return View("images.html", "Images", data, nav="images", live=live, extra=extra)


PAGES: list[Spec] = [page("/images", list_images), *DETAIL_PAGES]
