"""Fixtures for the napari plugin tests: a tiny model bundle and small georeferenced rasters.

These tests need a display: pytest-xvfb starts Xvfb (see ../shared/guides/napari-headless.md).
"""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("napari")
pytest.importorskip("pytestqt")

SIZE = 96  # pixels: small images keep the suite quick on a shared CPU


@pytest.hookimpl(tryfirst=True, hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """Keep each phase's report on the test item: napari's viewer fixture reads ``rep_call``."""
    outcome = yield
    report = outcome.get_result()
    setattr(item, f"rep_{report.when}", report)


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    """Plugin outputs and generated data go to the test's folder, not ~/.cache."""
    monkeypatch.setenv("SEGDEEP_CACHE", str(tmp_path / "cache"))


@pytest.fixture(scope="session")
def tiny_bundle(tmp_path_factory):
    """A small U-Net (random weights, fixed seed) saved as a segdeep bundle with the Dubai classes."""
    import torch
    from segdeep.classes import DUBAI_CLASSES
    from segdeep.models.bundle import ModelCard, save_bundle
    from segdeep.models.registry import create_model

    torch.manual_seed(0)
    card = ModelCard(architecture="unet", name="tiny test unet", classes=list(DUBAI_CLASSES),
                     kwargs={"base_channels": 4, "depth": 3}, tile_size=64, gsd=0.5)
    model = create_model("unet", num_classes=card.num_classes, in_channels=3, base_channels=4, depth=3)
    return save_bundle(model, card, tmp_path_factory.mktemp("bundle") / "tiny.safetensors")


def scene_arrays(size: int = SIZE, seed: int = 0):
    """A small RGB image (3 x size x size uint8) with two classes of texture, and its labels."""
    rng = np.random.default_rng(seed)
    labels = np.full((size, size), 1, np.uint8)  # land
    labels[size // 4: size // 2, size // 4: 3 * size // 4] = 0  # a building
    labels[:, size - size // 6:] = 2  # a road
    colours = {0: (60, 60, 150), 1: (200, 170, 120), 2: (90, 90, 90)}
    image = np.zeros((3, size, size), np.uint8)
    for k, rgb in colours.items():
        for b in range(3):
            image[b][labels == k] = rgb[b]
    image = np.clip(image.astype(int) + rng.integers(-10, 10, image.shape), 0, 255).astype(np.uint8)
    return image, labels


@pytest.fixture
def scene(make_geotiff):
    """(image path, labels path) of a small georeferenced RGB scene in UTM 40N at 0.5 m."""
    from rasterio.enums import ColorInterp

    image, labels = scene_arrays()
    img = make_geotiff("scene.tif", image)
    import rasterio

    with rasterio.open(img, "r+") as ds:
        ds.colorinterp = [ColorInterp.red, ColorInterp.green, ColorInterp.blue]
        ds.descriptions = ("red", "green", "blue")
    lab = make_geotiff("scene_labels.tif", labels, nodata=255)
    return img, lab


@pytest.fixture
def wait_job(qtbot):
    """``wait_job(widget)``: wait until the widget's job has ended and its end handler ran."""

    def wait(widget, timeout=60_000):
        qtbot.waitUntil(lambda: widget.job is not None and widget.job.ended, timeout=timeout)

    return wait


@pytest.fixture
def arrays():
    """``arrays(size)`` -> (image 3 x size x size uint8, labels size x size uint8)."""
    return scene_arrays
