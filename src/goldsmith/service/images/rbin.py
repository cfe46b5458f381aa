"""The Recycle Bin (``rbin``) API: retention rules for EC2_IMAGE and EBS_SNAPSHOT.

Handlers take and return dicts shaped like botocore's ``rbin`` model (a REST-JSON service,
served at ``/rules``, ``/list-rules`` and ``/tags/{arn}`` by ``api.restjson``); errors use
rbin's codes (``ValidationException``, ``ResourceNotFoundException`` with reason
``RULE_NOT_FOUND``). Rules are per account and region: another account's rule, or one of
another region, does not exist for the caller. Rule tags (TagResource, UntagResource,
ListTagsForResource) address a rule by its ARN. Lock configurations are not supported:
CreateRule with a LockConfiguration, LockRule and UnlockRule are refused (never ignored).

What a rule does (retain deleted images or snapshots) is applied by DeregisterImage and
DeleteSnapshot through :func:`goldsmith.service.retention.retention`.
"""

from __future__ import annotations

import re
import secrets
import string
from collections.abc import Mapping, Sequence
from typing import Any

from goldsmith.catalog import rbin as rows
from goldsmith.catalog.db import Catalog
from goldsmith.service.context import RequestContext
from goldsmith.service.errors import ClientError
from goldsmith.service.images.common import now
from goldsmith.service.retention import retention, rule_applies

__all__ = ["RESOURCE_TYPES", "RecycleBinService", "retention", "rule_applies"]

RESOURCE_TYPES = ("EBS_SNAPSHOT", "EC2_IMAGE")
MAX_RETENTION_DAYS = 365
MAX_TAGS = 50
_ALPHABET = string.ascii_letters + string.digits
_RULE_ID = re.compile(r"^[0-9a-zA-Z]{11}$")
_RULE_ARN = re.compile(r"^arn:[^:]+:rbin:([a-z0-9-]{0,63}):(\d{12}):rule/([0-9a-zA-Z]{11})$")


def _invalid(message: str) -> ClientError:
    return ClientError("ValidationException", message)


class _RuleNotFound(ClientError):
    reason = "RULE_NOT_FOUND"


def _not_found(rule_id: str) -> ClientError:
    return _RuleNotFound("ResourceNotFoundException", f"Rule {rule_id} does not exist.", 404)


def _unsupported_lock(_ctx: RequestContext, _params: Mapping[str, Any]) -> dict[str, Any]:
    raise _invalid("Rule locks are not supported by this server.")


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


def _rule_tags(specs: Any) -> tuple[tuple[str, str], ...]:
    out: dict[str, str] = {}
    for spec in specs or ():
        key = spec.get("Key") if isinstance(spec, Mapping) else None
        if not isinstance(key, str) or not 1 <= len(key) <= 128 or key.startswith("aws:"):
            raise _invalid(f"Tag key {key!r} is not valid.")
        value = spec.get("Value") or ""
        if len(value) > 256:
            raise _invalid(f"The value of tag {key} is longer than 256 characters.")
        out[key] = value
    return tuple(out.items())


def _tags_out(pairs: rows.TagPairs) -> list[dict[str, Any]]:
    return [
        {"ResourceTagKey": k, **({"ResourceTagValue": v} if v is not None else {})}
        for k, v in pairs
    ]


class _PageTokenInvalid(ClientError):
    reason = "INVALID_PAGE_TOKEN"


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
            tags=_rule_tags(params.get("Tags")),
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
        limit = params.get("MaxResults")
        if limit is not None and not 1 <= limit <= 1000:
            raise _invalid("MaxResults must be between 1 and 1000.")
        after = params.get("NextToken")
        if after is not None and not _RULE_ID.match(str(after)):
            raise _PageTokenInvalid("ValidationException", "The NextToken is not valid.")
        if params.get("LockState") not in (None, "unlocked"):
            return {"Rules": []}  # no rule is ever locked here
        wanted = set(_tag_pairs(params.get("ResourceTags")))
        excluded = set(_tag_pairs(params.get("ExcludeResourceTags")))
        with self._catalog.begin() as conn:
            found = rows.list_rules(conn, ctx.region, ctx.account_id, resource_type)
        rules = [
            r
            for r in found
            if wanted <= set(r.resource_tags)
            and excluded <= set(r.exclude_tags)
            and (after is None or r.rule_id > after)
        ]
        token = None
        if limit is not None and len(rules) > limit:
            rules = rules[:limit]
            token = rules[-1].rule_id
        summary = ("Identifier", "Description", "RetentionPeriod", "LockState", "RuleArn")
        return {
            "Rules": [{k: self._render(r)[k] for k in summary} for r in rules],
            "NextToken": token,
        }

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

    # Rule tags -------------------------------------------------------------------------

    def _by_arn(self, ctx: RequestContext, params: Mapping[str, Any]) -> rows.RuleRow:
        arn = str(params.get("ResourceArn") or "")
        match = _RULE_ARN.match(arn)
        if match is None:
            raise _invalid(f"{arn[:100]!r} is not a recycle bin rule ARN.")
        region, account_id, rule_id = match.groups()
        if (region, account_id) != (ctx.region, ctx.account_id):
            raise _not_found(rule_id)
        return self._get(ctx, {"Identifier": rule_id})

    def tag_resource(self, ctx: RequestContext, params: Mapping[str, Any]) -> dict[str, Any]:
        rule = self._by_arn(ctx, params)
        merged = dict(rule.tags)
        merged.update(_rule_tags(params.get("Tags")))
        if len(merged) > MAX_TAGS:
            raise _invalid(f"A rule can have at most {MAX_TAGS} tags.")
        with self._catalog.begin() as conn:
            rows.replace_rule(
                conn, rows.RuleRow(**{**rule.__dict__, "tags": tuple(merged.items())})
            )
        return {}

    def untag_resource(self, ctx: RequestContext, params: Mapping[str, Any]) -> dict[str, Any]:
        rule = self._by_arn(ctx, params)
        gone = set(params.get("TagKeys") or ())
        kept = tuple((k, v) for k, v in rule.tags if k not in gone)
        with self._catalog.begin() as conn:
            rows.replace_rule(conn, rows.RuleRow(**{**rule.__dict__, "tags": kept}))
        return {}

    def list_tags_for_resource(
        self, ctx: RequestContext, params: Mapping[str, Any]
    ) -> dict[str, Any]:
        rule = self._by_arn(ctx, params)
        return {"Tags": [{"Key": k, "Value": v} for k, v in rule.tags]}

    def handlers(self) -> dict[str, Any]:
        """Operation name → handler, for the REST-JSON front door."""
        return {
            "CreateRule": self.create_rule,
            "ListRules": self.list_rules,
            "GetRule": self.get_rule,
            "UpdateRule": self.update_rule,
            "DeleteRule": self.delete_rule,
            "TagResource": self.tag_resource,
            "UntagResource": self.untag_resource,
            "ListTagsForResource": self.list_tags_for_resource,
            "LockRule": _unsupported_lock,
            "UnlockRule": _unsupported_lock,
        }
