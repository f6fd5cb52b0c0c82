"""Shared fixtures: the real data folder (optional) and tiny generated georeferenced rasters."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasterio.transform import from_origin

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("SEGDEEP_SHARED_DATA", REPO.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The real data folder beside the checkout; tests using it skip when it is absent."""
    if not (SHARED_DATA / "dubai").is_dir():
        pytest.skip(f"real data not found at {SHARED_DATA} (set SEGDEEP_SHARED_DATA); users don't have it")
    return SHARED_DATA


@pytest.fixture(scope="session")
def dubai(shared_data) -> Path:
    return shared_data / "dubai"


@pytest.fixture(scope="session")
def georef(shared_data) -> Path:
    path = shared_data / "georef"
    if not path.is_dir():
        pytest.skip(f"real georeferenced rasters not found at {path}")
    return path


def write_geotiff(path, array, *, crs="EPSG:32640", transform=None, nodata=None, **extra) -> Path:
    """Write a small GeoTIFF (bands x H x W, or H x W) at 0.5 m in UTM 40N unless told otherwise."""
    array = np.asarray(array)
    if array.ndim == 2:
        array = array[None]
    transform = transform or from_origin(300000.0, 2780000.0, 0.5, 0.5)
    profile = dict(driver="GTiff", width=array.shape[2], height=array.shape[1], count=array.shape[0],
                   dtype=array.dtype, crs=crs, transform=transform, nodata=nodata, **extra)
    with rasterio.open(path, "w", **profile) as ds:
        ds.write(array)
    return Path(path)


@pytest.fixture
def make_geotiff(tmp_path):
    """Factory fixture: ``make_geotiff(name, array, **profile)`` -> path in tmp_path."""

    def make(name, array, **kwargs):
        return write_geotiff(tmp_path / name, array, **kwargs)

    return make
