"""Shared fixtures: the real data folder (optional) and tiny generated georeferenced rasters."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from segdeep.testing import write_geotiff

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


@pytest.fixture
def make_geotiff(tmp_path):
    """Factory fixture: ``make_geotiff(name, array, **profile)`` -> path in tmp_path
    (:func:`segdeep.testing.write_geotiff`: UTM 40N at 0.5 m unless told otherwise)."""

    def make(name, array, **kwargs):
        return write_geotiff(tmp_path / name, array, **kwargs)

    return make


@pytest.fixture(scope="module")
def one_thread():
    """One torch thread for the test: small tensors on a shared 2-core machine, where more threads
    only add OpenMP contention (5x less CPU for the model tests)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
