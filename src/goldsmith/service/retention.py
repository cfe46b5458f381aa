"""Recycle bin retention: does a rule keep a deleted image or snapshot, and for how long.

The rules themselves are managed through the ``rbin`` API (``service.images.rbin``); this
module is what the deleting operations ask — DeregisterImage for ``EC2_IMAGE``,
DeleteSnapshot (and DeregisterImage's DeleteAssociatedSnapshots) for ``EBS_SNAPSHOT`` — so
snapshots do not depend on the images package.

Matching, as in EC2: a tag-level rule (with ``ResourceTags``) retains resources carrying
one of its tags (a tag without value matches any value); a Region-level rule (without)
retains every resource of its type except those carrying one of its ``ExcludeResourceTags``.
When several rules match, the longest retention wins.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta

import sqlalchemy as sa

from goldsmith.catalog import rbin as rows


def rule_applies(rule: rows.RuleRow, tags: Mapping[str, str]) -> bool:
    """True when ``rule`` retains a deleted resource carrying ``tags``."""

    def has(pairs: rows.TagPairs) -> bool:
        return any(k in tags and (v is None or tags[k] == v) for k, v in pairs)

    if rule.resource_tags:
        return has(rule.resource_tags)
    return not has(rule.exclude_tags)


def retention(
    conn: sa.Connection,
    region: str,
    account_id: str,
    resource_type: str,
    tags: Mapping[str, str],
) -> timedelta | None:
    """How long a deleted resource with ``tags`` stays in the owner's bin (None: not binned)."""
    days = [
        r.retention_days
        for r in rows.list_rules(conn, region, account_id, resource_type)
        if rule_applies(r, tags)
    ]
    return timedelta(days=max(days)) if days else None
