"""How far a pending image has got: the progress of the snapshots it maps.

An image has no progress of its own in EC2; a copy's (or a CreateImage's) work is its
snapshots', which DescribeSnapshots reports (``Progress``, e.g. ``"42%"``). A pending image
the caller owns gets ``Progress`` — the least advanced of its snapshots — in the page's data
(and so in the JSON twin the live refresh reads).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from goldsmith.api.console.framework import Console
from goldsmith.service.errors import Ec2Error


def _snapshots(image: dict[str, Any]) -> list[str]:
    mappings = image.get("BlockDeviceMappings") or ()
    return [m["Ebs"]["SnapshotId"] for m in mappings if (m.get("Ebs") or {}).get("SnapshotId")]


def annotate(c: Console, images: Sequence[dict[str, Any]], region: str | None = None) -> None:
    """Set ``Progress`` on the caller's pending ``images`` (in ``region``: default current)."""
    pending = [
        i for i in images if i.get("State") == "pending" and i.get("OwnerId") == c.ctx.account_id
    ]
    wanted = sorted({s for image in pending for s in _snapshots(image)})
    if not wanted:
        return
    try:
        found = c.call("DescribeSnapshots", {"SnapshotIds": wanted}, region=region)
    except Ec2Error:
        return  # a snapshot gone meanwhile: the next refresh shows the image's new state
    percent = {s["SnapshotId"]: _percent(s.get("Progress")) for s in found["Snapshots"]}
    for image in pending:
        values = [percent.get(s, 0) for s in _snapshots(image)]
        if values:
            image["Progress"] = f"{min(values)}%"


def _percent(text: Any) -> int:
    try:
        return int(str(text).rstrip("%"))
    except ValueError:
        return 0
