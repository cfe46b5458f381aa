"""DescribeImages: every scoping parameter applied on its own, most of the work in SQL.

The query is the intersection of independent parts, each one optional:

* visibility (always): the caller's images, public images, and images granted to the
  caller's account, organization or OUs — one indexed ``OR`` of three terms;
* ``ImageIds`` (unknown or invisible ids → ``InvalidAMIID.NotFound``), ``Owners`` (ids,
  ``self``, the platform alias), ``ExecutableUsers`` (ids, ``self``, ``all``);
* ``IncludeDeprecated`` (others' deprecated images hidden unless true; the owner always sees
  its own), ``IncludeDisabled`` (disabled images hidden unless true);
* ``Filters``: the common ones narrow the SQL query (pushdown hooks); the shared
  :class:`FilterSpec` predicate then decides every filter in Python, so a hook can only make
  a query faster, never change its answer;
* ``MaxResults``/``NextToken``: pages in image-id order; rows are streamed in batches and
  tags/mappings fetched per batch, so a page costs about its own size.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.elements import ColumnElement

from goldsmith.catalog import images as rows
from goldsmith.catalog.images import image_block_devices, image_launch_permissions, images
from goldsmith.catalog.schema import tags as tag_table
from goldsmith.catalog.tags import tags_of
from goldsmith.service.context import RequestContext
from goldsmith.service.errors import not_found
from goldsmith.service.filters import FilterSpec, like_pattern, literal_value
from goldsmith.service.images.common import (
    ImageDeps,
    check_image_id,
    now,
    platform_account,
)
from goldsmith.service.images.organizations import Principals, principals_of
from goldsmith.service.images.render import image_dict
from goldsmith.service.pagination import max_results

BATCH = 500
OPERATION = "DescribeImages"


@dataclass(frozen=True)
class ImageView:
    """What filters and rendering see of one image."""

    image: rows.ImageRow
    tags: Mapping[str, str]
    owner_alias: str | None


def _ebs(view: ImageView, get: Callable[[rows.BlockDeviceRow], Any]) -> list[Any]:
    return [get(d) for d in view.image.block_devices if d.snapshot_id or d.volume_size]


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
        "manifest-location": lambda v: image_dict(v.image, {}, v.owner_alias)["ImageLocation"],
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
    construct compiles to TRUE there and the ``LIKE`` beside it does the narrowing.
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
    """``column`` equal to / ``LIKE`` any of the EC2 filter ``values`` (a superset)."""
    terms = []
    for value in values:
        pattern = like_pattern(value)
        if pattern is None:
            terms.append(column == literal_value(value))
            continue
        like = column.like(pattern, escape="\\")
        prefix = _literal_prefix(value)
        terms.append(sa.and_(_PrefixRange(column, prefix), like) if prefix else like)
    return sa.or_(*terms)


def _column_hook(column: Any) -> Callable[[Sequence[str]], Any]:
    return lambda values: match_column(column, values)


def _is_public_hook(values: Sequence[str]) -> Any:
    wanted = {v == "true" for v in values if v in ("true", "false")}
    return images.c.is_public.in_(sorted(wanted)) if wanted else sa.false()


def _snapshot_hook(values: Sequence[str]) -> Any:
    inner = sa.select(image_block_devices.c.image_id).where(
        match_column(image_block_devices.c.snapshot_id, values)
    )
    return images.c.image_id.in_(inner)


def _tag_hook(key: str, values: Sequence[str]) -> Any:
    # An IN over the (region, key, value) index, not a correlated EXISTS per image.
    inner = sa.select(tag_table.c.resource_id).where(
        tag_table.c.key == key, match_column(tag_table.c.value, values)
    )
    return images.c.image_id.in_(inner)


SPEC: FilterSpec[ImageView] = FilterSpec(
    _getters(),
    tags=lambda v: v.tags,
    sql={
        "name": _column_hook(images.c.name),
        "architecture": _column_hook(images.c.architecture),
        "state": _column_hook(images.c.state),
        "image-type": _column_hook(images.c.image_type),
        "image-id": _column_hook(images.c.image_id),
        "owner-id": _column_hook(images.c.account_id),
        "virtualization-type": _column_hook(images.c.virtualization_type),
        "root-device-type": _column_hook(images.c.root_device_type),
        "is-public": _is_public_hook,
        "block-device-mapping.snapshot-id": _snapshot_hook,
    },
    sql_tag=_tag_hook,
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


class Describer:
    """DescribeImages."""

    def __init__(self, deps: ImageDeps) -> None:
        self._deps = deps

    def describe_images(self, ctx: RequestContext, params: Mapping[str, Any]) -> dict[str, Any]:
        ids = list(dict.fromkeys(check_image_id(str(i)) for i in params.get("ImageIds") or []))
        predicate = SPEC.compile(params.get("Filters"))
        pushed = SPEC.pushdown(params.get("Filters"))
        after = self._deps.paginator.decode(params.get("NextToken"), OPERATION, params)
        limit = max_results(params.get("MaxResults"), (5, 1000), None)
        with self._deps.catalog.begin() as conn:
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
            found: list[ImageView] = []
            for view in self._stream(conn, sa.and_(*base, *pushed), platform, alias):
                if predicate(view):
                    found.append(view)
                    if limit is not None and len(found) > limit:
                        break
        token = None
        if limit is not None and len(found) > limit:
            found = found[:limit]
            token = self._deps.paginator.encode((found[-1].image.image_id,), OPERATION, params)
        return {
            "Images": [image_dict(v.image, v.tags, v.owner_alias) for v in found],
            "NextToken": token,
        }

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
    def _stream(
        conn: sa.Connection, condition: Any, platform: str | None, alias: str
    ) -> Iterator[ImageView]:
        # The inner query picks its best index (name, owner, tag, grants); the outer one walks
        # the matching ids in order. One flat query would scan the primary key to avoid a sort.
        matching = sa.select(images.c.image_id).where(condition)
        query = images.select().where(images.c.image_id.in_(matching)).order_by(images.c.image_id)
        result = conn.execute(query)
        while batch := result.fetchmany(BATCH):
            ids = [r.image_id for r in batch]
            devices = rows.block_devices_of(conn, ids)
            tags = tags_of(conn, batch[0].region, ids)
            for r in batch:
                image = rows.image_from(r._mapping, devices.get(r.image_id, ()))
                owner_alias = alias if image.account_id == platform else None
                yield ImageView(image, tags.get(image.image_id, {}), owner_alias)
