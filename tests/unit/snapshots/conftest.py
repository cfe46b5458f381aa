"""Snapshot service fixtures: every service on a temporary data directory."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from snapshot_helpers import REGION

from goldsmith.config import Settings
from goldsmith.service.app import Services, build_services


@pytest.fixture
def services(tmp_path: Path) -> Iterator[Services]:
    built = build_services(Settings(data_dir=tmp_path, regions=(REGION,)))
    yield built
    built.close()
