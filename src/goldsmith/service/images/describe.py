"""DescribeImages: every scoping parameter applied on its own, the work done in SQL.

The query is the intersection of independent parts, each one optional:

* visibility (always): the caller's images, public images, and images granted to the
  caller's account, organization or OUs — one indexed ``OR`` of three terms;
* ``ImageIds`` (unknown or invisible ids → ``InvalidAMIID.NotFound``), ``Owners`` (ids,
  ``self``, the platform alias), ``ExecutableUsers`` (ids, ``self``, ``all``);
* ``IncludeDeprecated`` (others' deprecated images hidden unless true; the owner always sees
  its own), ``IncludeDisabled`` (disabled images hidden unless true);
* ``Filters``: filters with an SQL hook narrow the query. The hooks here are *exact* on
  SQLite and PostgreSQL (case-sensitive ``GLOB``/``LIKE``, see :func:`match_column`), so
  when every filter of a request has one, SQL alone decides and the page is cut with
  ``LIMIT``. Otherwise the shared :class:`FilterSpec` predicate decides every filter in
  Python over the narrowed rows (the hooks still only make that faster);
* ``MaxResults``/``NextToken``: pages in image-id order.

Answers are rendered straight from database rows (:mod:`.render`), with the mappings and
tags of a whole batch fetched in one query each, so a page costs about its own size.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.elements import ColumnElement

from goldsmith.catalog import images as rows
from goldsmith.catalog.images import image_block_devices, image_launch_permissions, images
from goldsmith.catalog.schema import tags as tag_table
from goldsmith.service.context import RequestContext
from goldsmith.service.errors import not_found
from goldsmith.service.filters import (
    FilterSpec,
    compile_pattern,
    format_value,
    like_pattern,
    literal_value,
)
from goldsmith.service.images.common import (
    ImageDeps,
    check_image_id,
    now,
    platform_account,
)
from goldsmith.service.images.organizations import Principals, principals_of
from goldsmith.service.images.render import DEVICE_FIELDS, FIELDS, render_row
from goldsmith.service.pagination import max_results

#: Rows per batch: mappings and tags are fetched per batch (IN lists of this many ids).
BATCH = 1000
OPERATION = "DescribeImages"
#: Dialects whose string comparison makes the hooks below exact (binary / deterministic).
EXACT_DIALECTS = frozenset({"sqlite", "postgresql"})

_ALL_COLUMNS = tuple(c.name for c in images.columns)
# Rendering reads FIELDS; filters in Python read a whole ImageRow. One SELECT serves both:
# FIELDS first (sliced off for rendering), then every other column.
_SELECT = FIELDS + tuple(c for c in _ALL_COLUMNS if c not in FIELDS)
_POSITION = {name: i for i, name in enumerate(_SELECT)}
_BILLING = _POSITION["billing_products"]
_WIDTH = len(FIELDS)


@dataclass(frozen=True)
class ImageView:
    """What filters see of one image."""

    image: rows.ImageRow
    tags: Mapping[str, str]
    owner_alias: str | None


def _ebs(view: ImageView, get: Callable[[rows.BlockDeviceRow], Any]) -> list[Any]:
    return [get(d) for d in view.image.block_devices if d.snapshot_id or d.volume_size]


def _location(view: ImageView) -> str:
    image = view.image
    return image.image_location or f"{view.owner_alias or image.account_id}/{image.name}"


def _getters() -> dict[str, Callable[[ImageView], Any]]:
    none: Callable[[ImageView], Any] = lambda _v: None  # noqa: E731 — a feature without data
    return {
        "architecture": lambda v: v.image.architecture,
        "block-device-mapping.delete-on-termination": lambda v: _ebs(
            v, lambda d: d.delete_on_termination
        ),
        "block-device-mapping.device-name": lambda v: [
            d.device_name for d in v.image.block_devices
        ],
        "block-device-mapping.snapshot-id": lambda v: _ebs(v, lambda d: d.snapshot_id),
        "block-device-mapping.volume-size": lambda v: _ebs(v, lambda d: d.volume_size),
        "block-device-mapping.volume-type": lambda v: _ebs(v, lambda d: d.volume_type),
        "block-device-mapping.encrypted": lambda v: _ebs(v, lambda d: d.encrypted),
        "boot-mode": lambda v: v.image.boot_mode,
        "creation-date": lambda v: v.image.created_at,
        "description": lambda v: v.image.description,
        "ena-support": lambda v: v.image.ena_support,
        "free-tier-eligible": lambda _v: False,
        "hypervisor": lambda v: v.image.hypervisor,
        "image-allowed": none,
        "image-id": lambda v: v.image.image_id,
        "image-type": lambda v: v.image.image_type,
        "image-watermark.source-image-creation-time": none,
        "image-watermark.source-image-id": none,
        "image-watermark.source-image-region": none,
        "image-watermark.watermark-creation-time": none,
        "image-watermark.watermark-key": none,
        "instance-type-specification.supported-instance-type": none,
        "instance-type-specification.unsupported-instance-type": none,
        "is-public": lambda v: v.image.is_public,
        "kernel-id": lambda v: v.image.kernel_id,
        "manifest-location": _location,
        "name": lambda v: v.image.name,
        "owner-alias": lambda v: v.owner_alias,
        "owner-id": lambda v: v.image.account_id,
        "platform": lambda v: v.image.platform,
        "product-code": lambda v: list(v.image.billing_products),
        "product-code.type": lambda v: ["marketplace"] if v.image.billing_products else [],
        "public-ssm-parameter-name": none,
        "ramdisk-id": lambda v: v.image.ramdisk_id,
        "root-device-name": lambda v: v.image.root_device_name,
        "root-device-type": lambda v: v.image.root_device_type,
        "scan-result.critical-fix-available-since": none,
        "scan-result.finding-scan-date": none,
        "scan-result.high-fix-available-since": none,
        "scan-result.highest-finding-severity-label": none,
        "scan-result.informational-fix-available-since": none,
        "scan-result.low-fix-available-since": none,
        "scan-result.medium-fix-available-since": none,
        "source-image-id": lambda v: v.image.source_image_id,
        "source-image-region": lambda v: v.image.source_image_region,
        "source-instance-id": lambda v: v.image.source_instance_id,
        "state": lambda v: v.image.state,
        "state-reason-code": lambda v: v.image.state_reason_code,
        "state-reason-message": lambda v: v.image.state_reason_message,
        "sriov-net-support": lambda v: v.image.sriov_net_support,
        "virtualization-type": lambda v: v.image.virtualization_type,
    }


class _PrefixRange(ColumnElement[bool]):
    """``column`` starts with ``prefix``, as an index-friendly range where that is exact.

    On SQLite (binary collation) ``prefix <= column < prefix + U+10FFFF`` holds exactly for
    strings starting with ``prefix``; elsewhere collations may order differently, so the
    construct compiles to TRUE there and the pattern beside it does the narrowing.
    """

    inherit_cache = True
    type = sa.Boolean()

    def __init__(self, column: Any, prefix: str) -> None:
        self.column = column
        self.prefix = prefix


@compiles(_PrefixRange)
def _prefix_default(element: _PrefixRange, compiler: Any, **kw: Any) -> str:
    return "1 = 1"


@compiles(_PrefixRange, "sqlite")
def _prefix_sqlite(element: _PrefixRange, compiler: Any, **kw: Any) -> str:
    low = sa.literal(element.prefix, sa.String())
    high = sa.literal(element.prefix + "\U0010ffff", sa.String())
    clause = sa.and_(element.column >= low, element.column < high)
    return str(compiler.process(clause, **kw))


class _Wildcard(ColumnElement[bool]):
    """``column`` matches an EC2 filter value with wildcards, case-sensitively.

    PostgreSQL's ``LIKE`` is case-sensitive; SQLite's is not, so there the value becomes a
    ``GLOB`` pattern (case-sensitive, ``*``/``?`` as in EC2, literal ``*?[`` bracketed).
    """

    inherit_cache = True
    type = sa.Boolean()

    def __init__(self, column: Any, value: str) -> None:
        self.column = column
        self.value = value


@compiles(_Wildcard)
def _wildcard_default(element: _Wildcard, compiler: Any, **kw: Any) -> str:
    clause = element.column.like(like_pattern(element.value), escape="\\")
    return str(compiler.process(clause, **kw))


@compiles(_Wildcard, "sqlite")
def _wildcard_sqlite(element: _Wildcard, compiler: Any, **kw: Any) -> str:
    pattern = sa.literal(glob_pattern(element.value), sa.String())
    return str(compiler.process(element.column.op("GLOB")(pattern), **kw))


def glob_pattern(value: str) -> str:
    """An EC2 filter value as an SQLite ``GLOB`` pattern (``\\`` escapes resolved)."""
    out: list[str] = []
    chars = iter(value)
    for char in chars:
        if char == "\\":
            escaped = next(chars, "\\")
            out.append(f"[{escaped}]" if escaped in "*?[" else escaped)
        elif char in "*?":
            out.append(char)
        else:
            out.append("[[]" if char == "[" else char)
    return "".join(out)


def _literal_prefix(value: str) -> str:
    """The characters before the first unescaped wildcard, escapes removed."""
    out: list[str] = []
    chars = iter(value)
    for char in chars:
        if char == "\\":
            out.append(next(chars, "\\"))
        elif char in "*?":
            break
        else:
            out.append(char)
    return "".join(out)


def match_column(column: Any, values: Sequence[str]) -> Any:
    """``column`` matches any of the EC2 filter ``values`` — exactly (see the module doc)."""
    terms = []
    for value in values:
        if like_pattern(value) is None:
            terms.append(column == literal_value(value))
            continue
        match = _Wildcard(column, value)
        prefix = _literal_prefix(value)
        terms.append(sa.and_(_PrefixRange(column, prefix), match) if prefix else match)
    return sa.or_(*terms)


def _column_hook(column: Any) -> Callable[[Sequence[str]], Any]:
    return lambda values: match_column(column, values)


def _is_public_hook(values: Sequence[str]) -> Any:
    # The predicate compares "true"/"false" with each value as a pattern ("t*" matches).
    patterns = [compile_pattern(v) for v in values]
    wanted = [b for b in (False, True) if any(p.fullmatch(format_value(b)) for p in patterns)]
    return images.c.is_public.in_(wanted) if wanted else sa.false()


def _snapshot_hook(values: Sequence[str]) -> Any:
    inner = sa.select(image_block_devices.c.image_id).where(
        match_column(image_block_devices.c.snapshot_id, values)
    )
    return images.c.image_id.in_(inner)


def tag_condition(region: str, key: str, values: Sequence[str], viewer: str) -> Any:
    """Images tagged ``key`` with a value matching ``values`` (exact, as the hooks).

    Tags belong to the account that set them (only an image's owner can): like EC2, other
    accounts neither see an image's tags nor match them with ``tag:`` filters.

    An IN over the covering (region, key, value, resource id) index, not a correlated
    EXISTS per image; it needs the region, so it is applied by the Describer rather than
    through the spec's region-less hooks.
    """
    inner = sa.select(tag_table.c.resource_id).where(
        tag_table.c.region == region,
        tag_table.c.key == key,
        tag_table.c.owner_id == viewer,
        match_column(tag_table.c.value, values),
    )
    return images.c.image_id.in_(inner)


def tag_conditions(
    region: str, filters: Sequence[Mapping[str, Any]] | None, viewer: str
) -> list[Any]:
    """One :func:`tag_condition` per ``tag:<key>`` filter (validated by ``SPEC.compile``)."""
    return [
        tag_condition(region, str(f["Name"])[4:], [str(v) for v in f["Values"]], viewer)
        for f in filters or ()
        if str(f.get("Name")).startswith("tag:")
    ]


# Filters that are plain string columns: the getter returns the column's value (or None,
# which matches nothing in Python as in SQL).
_STRING_COLUMNS = {
    "architecture": images.c.architecture,
    "boot-mode": images.c.boot_mode,
    "description": images.c.description,
    "hypervisor": images.c.hypervisor,
    "image-id": images.c.image_id,
    "image-type": images.c.image_type,
    "kernel-id": images.c.kernel_id,
    "name": images.c.name,
    "owner-id": images.c.account_id,
    "platform": images.c.platform,
    "ramdisk-id": images.c.ramdisk_id,
    "root-device-name": images.c.root_device_name,
    "root-device-type": images.c.root_device_type,
    "source-image-id": images.c.source_image_id,
    "source-image-region": images.c.source_image_region,
    "source-instance-id": images.c.source_instance_id,
    "sriov-net-support": images.c.sriov_net_support,
    "state": images.c.state,
    "state-reason-code": images.c.state_reason_code,
    "state-reason-message": images.c.state_reason_message,
    "virtualization-type": images.c.virtualization_type,
}

SPEC: FilterSpec[ImageView] = FilterSpec(
    _getters(),
    tags=lambda v: v.tags,
    sql={
        **{name: _column_hook(column) for name, column in _STRING_COLUMNS.items()},
        "is-public": _is_public_hook,
        "block-device-mapping.snapshot-id": _snapshot_hook,
    },
)


def decided_in_sql(filters: Sequence[Mapping[str, Any]] | None) -> bool:
    """True when every filter has an exact SQL condition (no Python pass needed)."""
    return all(
        str(f.get("Name")).startswith("tag:") or f.get("Name") in SPEC.sql for f in filters or ()
    )


def granted_ids(region: str, grants: Sequence[tuple[str, str]]) -> Any:
    """A subquery: ids of images with a launch permission naming one of ``grants``."""
    lp = image_launch_permissions
    return sa.select(lp.c.image_id).where(
        lp.c.region == region,
        sa.or_(*[sa.and_(lp.c.kind == k, lp.c.value == v) for k, v in sorted(grants)]),
    )


def visible(region: str, principals: Principals) -> Any:
    """The caller may see: its own, public, or granted (account, organization, OUs)."""
    return sa.or_(
        images.c.account_id == principals.account_id,
        images.c.is_public.is_(True),
        images.c.image_id.in_(granted_ids(region, sorted(principals.grants))),
    )


@dataclass
class _Batch:
    """Rows of one batch with their mapping tuples and tags (by image id)."""

    rows: Sequence[Sequence[Any]]
    devices: dict[str, list[tuple[Any, ...]]]
    tags: dict[str, dict[str, str]]


class Describer:
    """DescribeImages."""

    def __init__(self, deps: ImageDeps) -> None:
        self._deps = deps
        #: Tests set this to compare the Python filter pass with SQL-only answers.
        self.force_python_filters = False

    def describe_images(self, ctx: RequestContext, params: Mapping[str, Any]) -> dict[str, Any]:
        ids = list(dict.fromkeys(check_image_id(str(i)) for i in params.get("ImageIds") or []))
        filters = params.get("Filters")
        predicate = SPEC.compile(filters)  # validates every filter, even when SQL decides
        pushed = SPEC.pushdown(filters) + tag_conditions(ctx.region, filters, ctx.account_id)
        after = self._deps.paginator.decode(params.get("NextToken"), OPERATION, params)
        limit = max_results(params.get("MaxResults"), (5, 1000), None)
        with self._deps.catalog.begin() as conn:
            in_sql = (
                not self.force_python_filters
                and conn.dialect.name in EXACT_DIALECTS
                and decided_in_sql(filters)
            )
            principals = principals_of(conn, ctx.account_id)
            base = [
                images.c.region == ctx.region,
                images.c.recycle_bin_enter.is_(None),
                visible(ctx.region, principals),
            ]
            if ids:
                self._check_ids(conn, ids, base)
                base.append(images.c.image_id.in_(ids))
            base += self._scoping(conn, ctx, principals, params)
            if after is not None:
                base.append(images.c.image_id > after[0])
            platform = platform_account(conn)
            alias = self._deps.platform_alias
            condition = sa.and_(*base, *pushed)
            sql_limit = limit + 1 if in_sql and limit is not None else None
            # Nothing selective to drive from an index (only visibility and states): walk
            # the images in id order and stop at the page's end.
            walk = sql_limit is not None and not (
                ids or pushed or params.get("Owners") or params.get("ExecutableUsers")
            )
            found: list[tuple[Sequence[Any], _Batch]] = []
            for batch in self._batches(
                conn, ctx.region, condition, sql_limit, walk, ctx.account_id
            ):
                for row in batch.rows:
                    if not in_sql:
                        owner_alias = alias if row[1] == platform else None
                        if not predicate(_view(row, batch, owner_alias)):
                            continue
                    found.append((row, batch))
                if limit is not None and len(found) > limit:
                    break
        token = None
        if limit is not None and len(found) > limit:
            found = found[:limit]
            token = self._deps.paginator.encode((found[-1][0][0],), OPERATION, params)
        rendered = [
            render_row(
                row[:_WIDTH],
                batch.devices.get(row[0], ()),
                batch.tags.get(row[0]),
                alias if row[1] == platform else None,
            )
            for row, batch in found
        ]
        # A tuple: final as it is (the encoder leaves None members out by itself).
        return {"Images": tuple(rendered), "NextToken": token}

    @staticmethod
    def _check_ids(conn: sa.Connection, ids: Sequence[str], base: Sequence[Any]) -> None:
        query = sa.select(images.c.image_id).where(*base, images.c.image_id.in_(ids))
        seen = {r.image_id for r in conn.execute(query)}
        missing = [i for i in ids if i not in seen]
        if missing:
            raise not_found(missing[0], f"The image id '[{', '.join(missing)}]' does not exist")

    def _scoping(
        self,
        conn: sa.Connection,
        ctx: RequestContext,
        principals: Principals,
        params: Mapping[str, Any],
    ) -> list[Any]:
        out: list[Any] = []
        owners = params.get("Owners")
        if owners:
            out.append(images.c.account_id.in_(sorted(self._owner_ids(conn, ctx, owners))))
        users = params.get("ExecutableUsers")
        if users:
            out.append(sa.or_(*[self._executable(conn, ctx, principals, u) for u in users]))
        if not params.get("IncludeDeprecated"):
            out.append(
                sa.or_(
                    images.c.account_id == ctx.account_id,
                    images.c.deprecation_time.is_(None),
                    images.c.deprecation_time > now(),
                )
            )
        if not params.get("IncludeDisabled"):
            out.append(images.c.state != "disabled")
        return out

    def _owner_ids(
        self, conn: sa.Connection, ctx: RequestContext, owners: Sequence[str]
    ) -> set[str]:
        out: set[str] = set()
        for owner in owners:
            if owner == "self":
                out.add(ctx.account_id)
            elif owner == self._deps.platform_alias:
                platform = platform_account(conn)
                if platform is not None:
                    out.add(platform)
            elif owner.isdigit():
                out.add(owner)
            # Other aliases (aws-marketplace, aws-backup-vault) own nothing here.
        return out

    @staticmethod
    def _executable(
        conn: sa.Connection, ctx: RequestContext, principals: Principals, user: str
    ) -> Any:
        if user == "all":
            return images.c.is_public.is_(True)
        if user in ("self", ctx.account_id):
            # Shared with the caller: directly, or through its organization or OUs.
            return images.c.image_id.in_(granted_ids(ctx.region, sorted(principals.grants)))
        # Another account: only images shared with that account directly (EC2's rule).
        return images.c.image_id.in_(granted_ids(ctx.region, [("user", user)]))

    @staticmethod
    def _batches(
        conn: sa.Connection,
        region: str,
        condition: Any,
        limit: int | None,
        walk: bool,
        viewer: str,
    ) -> Iterator[_Batch]:
        """Matching rows in id order, in batches with their mappings and tags.

        By default the inner query picks its best index (name, owner, tag, grants) and the
        outer one reads the matching ids in order: one flat query would walk the primary
        key to avoid a sort. With ``walk`` (a page with no selective condition) that walk
        is what is wanted: it stops after ``limit`` matches instead of finding them all.
        """
        columns = [images.c[name] for name in _SELECT]
        if walk:
            where = condition
        else:
            where = images.c.image_id.in_(sa.select(images.c.image_id).where(condition))
        query = sa.select(*columns).where(where).order_by(images.c.image_id)
        if limit is not None:
            query = query.limit(limit)
        result = conn.execute(query)
        while batch := result.fetchmany(BATCH):
            ids = [r[0] for r in batch]
            # Rows are tuples with billing_products decoded (JSON text in the database).
            decoded = [_decoded(r) for r in batch]
            yield _Batch(decoded, _devices(conn, ids), _tags(conn, region, ids, viewer))


def _decoded(row: Sequence[Any]) -> list[Any]:
    values = list(row)
    raw = values[_BILLING]
    values[_BILLING] = () if raw == "[]" else tuple(json.loads(raw))
    return values


def _devices(conn: sa.Connection, ids: Sequence[str]) -> dict[str, list[tuple[Any, ...]]]:
    """Mapping tuples (:data:`DEVICE_FIELDS`) per image id, in registration order."""
    bd = image_block_devices
    query = (
        sa.select(bd.c.image_id, *[bd.c[name] for name in DEVICE_FIELDS])
        .where(bd.c.image_id.in_(ids))
        .order_by(bd.c.image_id, bd.c.position)
    )
    out: dict[str, list[tuple[Any, ...]]] = {}
    # .all(): one fetchall, not a fetchone per row (a page has a thousand or more rows).
    for r in conn.execute(query).all():
        out.setdefault(r[0], []).append(tuple(r)[1:])
    return out


def _tags(
    conn: sa.Connection, region: str, ids: Sequence[str], viewer: str
) -> dict[str, dict[str, str]]:
    """The tags ``viewer`` set on these images (none on other accounts' images)."""
    query = sa.select(tag_table.c.resource_id, tag_table.c.key, tag_table.c.value).where(
        tag_table.c.region == region,
        tag_table.c.resource_id.in_(ids),
        tag_table.c.owner_id == viewer,
    )
    out: dict[str, dict[str, str]] = {}
    for resource_id, key, value in conn.execute(query).all():
        out.setdefault(resource_id, {})[key] = value
    return out


def _view(row: Sequence[Any], batch: _Batch, owner_alias: str | None) -> ImageView:
    """The :class:`ImageView` of one row, for the Python filter pass."""
    values = {name: row[i] for name, i in _POSITION.items()}
    devices = tuple(rows.BlockDeviceRow(*d) for d in batch.devices.get(row[0], ()))
    image = rows.ImageRow(**values, block_devices=devices)
    return ImageView(image, batch.tags.get(row[0], {}), owner_alias)
