"""The Recycle Bin (``rbin``) API: retention rules for EC2_IMAGE and EBS_SNAPSHOT.

Handlers take and return dicts shaped like botocore's ``rbin`` model (a REST-JSON service);
errors use rbin's codes (``ValidationException``, ``ResourceNotFoundException``). Rules are
per account and region. Lock configurations are not supported (refused, not ignored).
"""

from __future__ import annotations

import secrets
import string
from collections.abc import Mapping, Sequence
from typing import Any

from goldsmith.catalog import rbin as rows
from goldsmith.catalog.db import Catalog
from goldsmith.service.context import RequestContext
from goldsmith.service.errors import ClientError
from goldsmith.service.images.common import now

RESOURCE_TYPES = ("EBS_SNAPSHOT", "EC2_IMAGE")
MAX_RETENTION_DAYS = 365
_ALPHABET = string.ascii_letters + string.digits


def _invalid(message: str) -> ClientError:
    return ClientError("ValidationException", message)


def _not_found(rule_id: str) -> ClientError:
    return ClientError("ResourceNotFoundException", f"Rule {rule_id} does not exist.")


def _retention(spec: Any) -> int:
    if not isinstance(spec, Mapping):
        raise _invalid("RetentionPeriod is required.")
    if spec.get("RetentionPeriodUnit") != "DAYS":
        raise _invalid("RetentionPeriodUnit must be DAYS.")
    value = spec.get("RetentionPeriodValue")
    if not isinstance(value, int) or not 1 <= value <= MAX_RETENTION_DAYS:
        raise _invalid(f"RetentionPeriodValue must be between 1 and {MAX_RETENTION_DAYS}.")
    return value


def _tag_pairs(specs: Sequence[Mapping[str, Any]] | None) -> rows.TagPairs:
    out: list[tuple[str, str | None]] = []
    for spec in specs or ():
        key = spec.get("ResourceTagKey")
        if not isinstance(key, str) or not key:
            raise _invalid("ResourceTagKey is required.")
        out.append((key, spec.get("ResourceTagValue")))
    return tuple(out)


def _tags_out(pairs: rows.TagPairs) -> list[dict[str, Any]]:
    return [
        {"ResourceTagKey": k, **({"ResourceTagValue": v} if v is not None else {})}
        for k, v in pairs
    ]


class RecycleBinService:
    """CreateRule, ListRules, GetRule, UpdateRule, DeleteRule."""

    def __init__(self, catalog: Catalog) -> None:
        self._catalog = catalog

    @staticmethod
    def _render(rule: rows.RuleRow) -> dict[str, Any]:
        return {
            "Identifier": rule.rule_id,
            "Description": rule.description,
            "ResourceType": rule.resource_type,
            "RetentionPeriod": {
                "RetentionPeriodValue": rule.retention_days,
                "RetentionPeriodUnit": "DAYS",
            },
            "ResourceTags": _tags_out(rule.resource_tags),
            "ExcludeResourceTags": _tags_out(rule.exclude_tags),
            "Tags": [{"Key": k, "Value": v} for k, v in rule.tags],
            "Status": "available",
            "LockState": "unlocked",
            "RuleArn": f"arn:aws:rbin:{rule.region}:{rule.account_id}:rule/{rule.rule_id}",
        }

    @staticmethod
    def _checked(resource_type: Any, resource_tags: rows.TagPairs, exclude: rows.TagPairs) -> str:
        if resource_type not in RESOURCE_TYPES:
            raise _invalid(f"ResourceType must be one of {', '.join(RESOURCE_TYPES)}.")
        if resource_tags and exclude:
            raise _invalid("ResourceTags and ExcludeResourceTags cannot be used together.")
        return str(resource_type)

    def create_rule(self, ctx: RequestContext, params: Mapping[str, Any]) -> dict[str, Any]:
        if params.get("LockConfiguration"):
            raise _invalid("Rule locks are not supported by this server.")
        resource_tags = _tag_pairs(params.get("ResourceTags"))
        exclude = _tag_pairs(params.get("ExcludeResourceTags"))
        rule = rows.RuleRow(
            rule_id="".join(secrets.choice(_ALPHABET) for _ in range(11)),
            region=ctx.region,
            account_id=ctx.account_id,
            resource_type=self._checked(params.get("ResourceType"), resource_tags, exclude),
            description=params.get("Description"),
            retention_days=_retention(params.get("RetentionPeriod")),
            resource_tags=resource_tags,
            exclude_tags=exclude,
            tags=tuple((t["Key"], t.get("Value") or "") for t in params.get("Tags") or []),
            created_at=now(),
        )
        with self._catalog.begin() as conn:
            rows.insert_rule(conn, rule)
        return self._render(rule)

    def _get(self, ctx: RequestContext, params: Mapping[str, Any]) -> rows.RuleRow:
        rule_id = str(params.get("Identifier") or "")
        with self._catalog.begin() as conn:
            rule = rows.get_rule(conn, ctx.region, ctx.account_id, rule_id)
        if rule is None:
            raise _not_found(rule_id)
        return rule

    def get_rule(self, ctx: RequestContext, params: Mapping[str, Any]) -> dict[str, Any]:
        return self._render(self._get(ctx, params))

    def list_rules(self, ctx: RequestContext, params: Mapping[str, Any]) -> dict[str, Any]:
        resource_type = params.get("ResourceType")
        if resource_type not in RESOURCE_TYPES:
            raise _invalid(f"ResourceType must be one of {', '.join(RESOURCE_TYPES)}.")
        wanted = set(_tag_pairs(params.get("ResourceTags")))
        with self._catalog.begin() as conn:
            found = rows.list_rules(conn, ctx.region, ctx.account_id, resource_type)
        rules = [r for r in found if wanted <= set(r.resource_tags)]
        summary = ("Identifier", "Description", "RetentionPeriod", "LockState", "RuleArn")
        return {"Rules": [{k: self._render(r)[k] for k in summary} for r in rules]}

    def update_rule(self, ctx: RequestContext, params: Mapping[str, Any]) -> dict[str, Any]:
        rule = self._get(ctx, params)
        resource_tags = (
            _tag_pairs(params["ResourceTags"])
            if params.get("ResourceTags") is not None
            else rule.resource_tags
        )
        exclude = (
            _tag_pairs(params["ExcludeResourceTags"])
            if params.get("ExcludeResourceTags") is not None
            else rule.exclude_tags
        )
        updated = rows.RuleRow(
            **{
                **rule.__dict__,
                "resource_type": self._checked(
                    params.get("ResourceType") or rule.resource_type, resource_tags, exclude
                ),
                "description": params.get("Description", rule.description),
                "retention_days": (
                    _retention(params["RetentionPeriod"])
                    if params.get("RetentionPeriod") is not None
                    else rule.retention_days
                ),
                "resource_tags": resource_tags,
                "exclude_tags": exclude,
            }
        )
        with self._catalog.begin() as conn:
            rows.replace_rule(conn, updated)
        return self._render(updated)

    def delete_rule(self, ctx: RequestContext, params: Mapping[str, Any]) -> dict[str, Any]:
        rule = self._get(ctx, params)
        with self._catalog.begin() as conn:
            rows.delete_rule(conn, rule.rule_id)
        return {}

    def handlers(self) -> dict[str, Any]:
        """Operation name → handler, for the REST-JSON front door."""
        return {
            "CreateRule": self.create_rule,
            "ListRules": self.list_rules,
            "GetRule": self.get_rule,
            "UpdateRule": self.update_rule,
            "DeleteRule": self.delete_rule,
        }
