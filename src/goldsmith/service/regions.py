"""Regions and availability zones.

Every standard AWS region name is served unless the admin restricts the set
(``regions`` in the configuration). A region comes into being on its first request: its
catalog row is written then, and its store location is ``<data-dir>/regions/<name>``.
Regions outside the configured set are listed by ``AllRegions`` as ``not-opted-in`` and
refuse requests.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from goldsmith.catalog import regions as rows
from goldsmith.catalog.db import Catalog
from goldsmith.service.context import RequestContext
from goldsmith.service.errors import invalid_parameter
from goldsmith.service.filters import FilterSpec

STANDARD_REGIONS: tuple[str, ...] = (
    "af-south-1", "ap-east-1", "ap-east-2", "ap-northeast-1", "ap-northeast-2",
    "ap-northeast-3", "ap-south-1", "ap-south-2", "ap-southeast-1", "ap-southeast-2",
    "ap-southeast-3", "ap-southeast-4", "ap-southeast-5", "ap-southeast-7", "ca-central-1",
    "ca-west-1", "eu-central-1", "eu-central-2", "eu-north-1", "eu-south-1", "eu-south-2",
    "eu-west-1", "eu-west-2", "eu-west-3", "il-central-1", "me-central-1", "me-south-1",
    "mx-central-1", "sa-east-1", "us-east-1", "us-east-2", "us-west-1", "us-west-2",
)  # fmt: skip

_DIRECTIONS = {"northeast": "ne", "northwest": "nw", "southeast": "se", "southwest": "sw"}
ZONE_LETTERS = "abc"


def zone_id_prefix(region: str) -> str:
    """EC2's short region code used in zone ids: us-east-1 → use1, ap-southeast-2 → apse2."""
    area, direction, number = region.split("-")
    return area + _DIRECTIONS.get(direction, direction[0]) + number


_REGION_FILTERS: FilterSpec[Mapping[str, Any]] = FilterSpec(
    {
        "endpoint": lambda r: r["Endpoint"],
        "region-name": lambda r: r["RegionName"],
        "opt-in-status": lambda r: r["OptInStatus"],
    }
)

_ZONE_FILTERS: FilterSpec[Mapping[str, Any]] = FilterSpec(
    {
        "group-name": lambda z: z["GroupName"],
        "group-long-name": lambda z: z["GroupLongName"],
        "network-border-group": lambda z: z["NetworkBorderGroup"],
        "opt-in-status": lambda z: z["OptInStatus"],
        "region-name": lambda z: z["RegionName"],
        "state": lambda z: z["State"],
        "zone-id": lambda z: z["ZoneId"],
        "zone-name": lambda z: z["ZoneName"],
        "zone-type": lambda z: z["ZoneType"],
        "message": lambda z: [m["Message"] for m in z["Messages"]],
    }
)


class RegionService:
    """Which regions exist and are enabled; DescribeRegions / DescribeAvailabilityZones."""

    def __init__(self, catalog: Catalog, enabled: Sequence[str], endpoint: str) -> None:
        unknown = sorted(set(enabled) - set(STANDARD_REGIONS))
        if unknown:
            raise ValueError(f"unknown region names in configuration: {', '.join(unknown)}")
        self._catalog = catalog
        self._enabled = frozenset(enabled or STANDARD_REGIONS)
        self._endpoint = endpoint
        self._seen: set[str] = set()
        self._lock = threading.Lock()

    @property
    def enabled(self) -> frozenset[str]:
        return self._enabled

    def is_enabled(self, region: str) -> bool:
        return region in self._enabled

    def ensure(self, region: str) -> None:
        """Create the region's catalog row on first use (cheap after the first call)."""
        if region in self._seen:
            return
        with self._lock, self._catalog.begin() as conn:
            rows.ensure_region(conn, region, datetime.now(UTC))
            self._seen.add(region)

    def _region(self, name: str) -> dict[str, Any]:
        status = "opt-in-not-required" if name in self._enabled else "not-opted-in"
        return {"RegionName": name, "Endpoint": self._endpoint, "OptInStatus": status}

    def describe_regions(self, ctx: RequestContext, params: Mapping[str, Any]) -> dict[str, Any]:
        names = list(params.get("RegionNames") or [])
        for name in names:
            if name not in STANDARD_REGIONS:
                raise invalid_parameter(f"Invalid region: {name}")
        listed = names or [
            r for r in STANDARD_REGIONS if params.get("AllRegions") or r in self._enabled
        ]
        regions = _REGION_FILTERS.apply([self._region(n) for n in listed], params.get("Filters"))
        return {"Regions": regions}

    def _zones(self, region: str) -> list[dict[str, Any]]:
        prefix = zone_id_prefix(region)
        return [
            {
                "ZoneName": f"{region}{letter}",
                "ZoneId": f"{prefix}-az{index}",
                "RegionName": region,
                "State": "available",
                "OptInStatus": "opt-in-not-required",
                "Messages": [],
                "GroupName": region,
                "GroupLongName": region,
                "NetworkBorderGroup": region,
                "ZoneType": "availability-zone",
            }
            for index, letter in enumerate(ZONE_LETTERS, start=1)
        ]

    def zone_names(self, region: str) -> list[str]:
        return [z["ZoneName"] for z in self._zones(region)]

    def describe_availability_zones(
        self, ctx: RequestContext, params: Mapping[str, Any]
    ) -> dict[str, Any]:
        zones = self._zones(ctx.region)
        by_name = {z["ZoneName"]: z for z in zones}
        by_id = {z["ZoneId"]: z for z in zones}
        for name in params.get("ZoneNames") or []:
            if name not in by_name:
                raise invalid_parameter(f"The zone '{name}' does not exist.")
        for zone_id in params.get("ZoneIds") or []:
            if zone_id not in by_id:
                raise invalid_parameter(f"The zone id '{zone_id}' does not exist.")
        wanted = set(params.get("ZoneNames") or []) | {
            by_id[i]["ZoneName"] for i in params.get("ZoneIds") or []
        }
        if wanted:
            zones = [z for z in zones if z["ZoneName"] in wanted]
        return {"AvailabilityZones": _ZONE_FILTERS.apply(zones, params.get("Filters"))}
