"""Shared bench output: one JSON object per metric, the format every bench script prints.

``{"metric", "value", "unit", "baseline", "ratio", "target", "ok"}`` — ``ratio`` is
value / baseline when a baseline was measured in the same run; ``target`` is a string such
as ``">=2.5"`` or ``"<=50"`` checked against the ratio (default when there is a baseline) or
the value (``on="value"``).
"""

from __future__ import annotations

import json
from typing import Literal


def emit(
    metric: str,
    value: float,
    unit: str,
    baseline: float | None = None,
    target: str | None = None,
    on: Literal["ratio", "value"] | None = None,
) -> None:
    """Print one metric line."""
    ratio = value / baseline if baseline else None
    ok = None
    if target is not None:
        op, limit = target[:2], float(target[2:])
        checked = value if on == "value" or ratio is None else ratio
        ok = checked >= limit if op == ">=" else checked <= limit
    print(
        json.dumps(
            {
                "metric": metric,
                "value": round(value, 4),
                "unit": unit,
                "baseline": None if baseline is None else round(baseline, 4),
                "ratio": None if ratio is None else round(ratio, 4),
                "target": target,
                "ok": ok,
            }
        ),
        flush=True,
    )
