"""Shared test fixtures: where ../shared is, and skipping cleanly where it is absent."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("PYOPENGL_PLATFORM", "egl")

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("CARPOSE_SHARED", REPO.parent / "shared"))


@pytest.fixture(scope="session")
def shared_cars() -> Path:
    cars = SHARED / "cars"
    if not any(cars.glob("*/model.obj")):
        pytest.skip(f"no ShapeNet cars at {cars} (../shared is optional)")
    return cars


@pytest.fixture(scope="session")
def shared_photos() -> Path:
    photos = SHARED / "real" / "nuscenes_front" / "image_2"
    if not any(photos.glob("*.png")):
        pytest.skip(f"no real photos at {photos} (../shared is optional)")
    return photos
