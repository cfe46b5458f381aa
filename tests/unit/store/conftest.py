"""Fixtures for the store tests (helpers live in store_helpers)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from store_helpers import BACKENDS, CHUNK, ImageFactory, MiB, make_backend, write_image

from goldsmith.store.backend import Backend


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    b = make_backend(request.param, tmp_path)
    yield b
    b.close()


@pytest.fixture
def image(tmp_path: Path) -> ImageFactory:
    """Factory: ``image(name, size, ranges, seed=…)`` → (path, expected bytes)."""
    counter = iter(range(1000))

    def make(
        size: int = 4 * MiB,
        ranges: list[tuple[int, int]] | None = None,
        seed: int = 1,
        compressible: bool = True,
    ) -> tuple[Path, bytes]:
        path = tmp_path / f"disk{next(counter)}.raw"
        if ranges is None:
            ranges = [(0, 100_000), (CHUNK * 2 + 1000, CHUNK), (size - 5000, 5000)]
        return path, write_image(path, size, ranges, seed, compressible)

    return make
