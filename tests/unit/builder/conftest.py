"""Session fixtures: the kernel and tiny image, built once into the shared build cache."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from builder_vm import build_cache

from goldsmith.builder import DiskImage, build_tiny


@pytest.fixture(scope="session")
def tiny_image(tmp_path_factory: pytest.TempPathFactory) -> DiskImage:
    """The tiny image (and its kernel), built or reused from the build cache."""
    started = time.monotonic()
    image = build_tiny(build_cache(), tmp_path_factory.mktemp("tiny-out"))
    print(f"tiny image ready in {time.monotonic() - started:.1f}s: {image.path}")
    return image


@pytest.fixture
def work(tmp_path: Path) -> Path:
    return tmp_path
