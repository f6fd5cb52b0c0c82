"""Fixtures for the napari plugin tests: a tiny model bundle and small georeferenced rasters.

These tests need a display: pytest-xvfb starts Xvfb (see ../shared/guides/napari-headless.md).
"""

from __future__ import annotations

import pytest
from segdeep.testing import scene_arrays  # 96 x 96 pixels: small images keep the suite quick

pytest.importorskip("napari")
pytest.importorskip("pytestqt")


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
    from segdeep.testing import tiny_bundle

    return tiny_bundle(tmp_path_factory.mktemp("bundle") / "tiny.safetensors", "unet", name="tiny test unet",
                       kwargs={"base_channels": 4, "depth": 3}, tile_size=64, gsd=0.5)


@pytest.fixture
def scene(make_geotiff):
    """(image path, labels path) of a small georeferenced RGB scene in UTM 40N at 0.5 m."""
    from rasterio.enums import ColorInterp

    image, labels = scene_arrays()
    img = make_geotiff("scene.tif", image, colorinterp=[ColorInterp.red, ColorInterp.green, ColorInterp.blue],
                       descriptions=("red", "green", "blue"))
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


@pytest.fixture
def progress_log(monkeypatch):
    """Every napari progress bar the plugin opens, as ``[(desc, [(n, total), ...])]``: what the
    activity dock is told (napari's ``value`` events), in order."""
    import napari.utils

    bars = []

    class Recording(napari.utils.progress):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            record = (kwargs.get("desc", ""), [])
            bars.append(record)
            self.events.value.connect(lambda e: record[1].append((int(e.value), int(self.total))))

    monkeypatch.setattr(napari.utils, "progress", Recording)
    return bars
