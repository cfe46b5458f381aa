"""The console's navigation: one entry per resource page, in the order they are shown.

An entry whose path no page module serves yet is answered by a "coming soon" page, so the
navigation can list a resource before its pages land.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class NavEntry:
    key: str
    label: str
    path: str


NAV: tuple[NavEntry, ...] = (
    NavEntry("images", "Images (AMIs)", "/console/images"),
    NavEntry("recycle-bin", "Recycle bin", "/console/images/recycle-bin"),
    NavEntry("instances", "Instances", "/console/instances"),
    NavEntry("snapshots", "Snapshots", "/console/snapshots"),
    NavEntry("volumes", "Volumes", "/console/volumes"),
    NavEntry("keypairs", "Key pairs", "/console/keypairs"),
)

HOME = "/console/images"
