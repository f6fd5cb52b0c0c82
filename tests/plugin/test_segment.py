"""Segment widget: docked as a user would, real buttons, worker threads, cancel, errors."""

from __future__ import annotations

import time

import numpy as np
import pytest
import rasterio
from segdeep.predict.run import TilesDone


@pytest.fixture
def segment(make_napari_viewer, tiny_bundle):
    viewer = make_napari_viewer()
    _, widget = viewer.window.add_plugin_dock_widget("napari-segdeep", "Segment")
    widget.set_bundle(tiny_bundle)
    return viewer, widget


def test_segment_image_layer(segment, scene, wait_job):
    viewer, w = segment
    image, _ = scene
    viewer.open(str(image), plugin="napari-segdeep")
    assert "tiny test unet" in w.card_view.text() and "building" in w.card_view.text()
    assert w.tile_size.value() == 64  # from the card
    assert w.device_used.text() == "→ cpu"
    w.overlap.setValue(16)
    w.probabilities.setChecked(True)
    w.image.set_layer("scene")
    w.run_button.click()
    assert not w.run_button.isEnabled() and w.cancel_button.isEnabled()
    wait_job(w)
    assert w.last_outcome.state == "done", w.last_outcome.message
    labels = viewer.layers["scene labels"]
    assert labels.data.shape == (96, 96) and labels.data.dtype == np.uint8
    assert set(np.unique(labels.data)) <= set(range(6))
    with rasterio.open(image) as ds:
        assert labels.metadata["crs"] == ds.crs.to_wkt()
        assert labels.metadata["transform"] == list(ds.transform)[:6]
    assert [c["name"] for c in labels.metadata["classes"]][0] == "building"
    assert labels.colormap.background_value == 255
    assert tuple(np.round(labels.colormap.map(0)[:3] * 255)) == (60, 16, 152)  # building's colour
    probs = viewer.layers["scene probabilities"]
    assert probs.data.shape == (6, 96, 96)
    # the argmax of the probabilities is the labels (ties aside)
    agree = (probs.data.argmax(0) == labels.data).mean()
    assert agree > 0.98
    assert "cpu" in w.device_used.text() and "thread(s)" in w.device_used.text() and w.run_button.isEnabled()


def test_segment_visible_region_and_in_memory_layer(segment, arrays, wait_job):
    """An in-memory layer (no file) works too; 'visible region' segments only what is on screen."""
    viewer, w = segment
    image, _ = arrays(size=256)
    viewer.add_image(np.moveaxis(image, 0, -1), name="memory", rgb=True)
    camera = viewer.scene.camera if hasattr(viewer, "scene") else viewer.camera
    camera.center = (0, 64, 64)
    camera.zoom = 1.0
    viewer._canvas_size = (100, 120)
    w.image.set_layer("memory")
    w.visible_only.setChecked(True)
    w.run_button.click()
    wait_job(w)
    assert w.last_outcome.state == "done", w.last_outcome.message
    labels = viewer.layers["memory labels"]
    assert labels.data.shape == (100, 120)
    assert tuple(labels.translate) == (14.0, 4.0)
    assert labels.metadata["window"] == [4, 14, 120, 100]


def test_cancel_stops_within_a_batch(segment, arrays, qtbot, wait_job, monkeypatch, make_geotiff):
    """Cancel closes the generator: the run stops long before the end and adds no layer."""
    from segdeep.predict import engine as _engine

    real = _engine.Engine.forward

    def slow_forward(self, batch):  # a slow model: 50 ms per batch
        time.sleep(0.05)
        return real(self, batch)

    monkeypatch.setattr(_engine.Engine, "forward", slow_forward)
    viewer, w = segment
    image, _ = arrays(size=512)
    path = make_geotiff("large.tif", image)
    viewer.open(str(path), plugin="napari-segdeep")
    w.overlap.setValue(0)  # 64 tiles of 64 px, ~3 s uncancelled
    w.batch_size.setValue(1)
    events = []
    w.run_button.click()
    w.job.worker.yielded.connect(events.append)
    qtbot.waitUntil(lambda: any(isinstance(e, TilesDone) for e in events), timeout=30_000)
    t0 = time.perf_counter()
    w.cancel_button.click()
    wait_job(w)
    assert time.perf_counter() - t0 < 2.0
    assert w.last_outcome.state == "cancelled"
    done = [e for e in events if isinstance(e, TilesDone)]
    assert done[-1].done < done[-1].total
    assert "large labels" not in viewer.layers
    assert w.status.text() == "cancelled" and w.run_button.isEnabled()


def test_error_is_one_line_and_viewer_stays_usable(segment, scene, wait_job, tmp_path, monkeypatch,
                                                    make_geotiff):
    from napari_segdeep import _workers

    shown = []
    monkeypatch.setattr(_workers, "notify_error", shown.append)
    viewer, w = segment
    good = w.bundle.text()
    image, _ = scene
    viewer.open(str(image), plugin="napari-segdeep")
    w.bundle.setText(str(tmp_path / "missing.safetensors"))
    w.run_button.click()  # fails before any worker starts
    assert len(shown) == 1 and "missing.safetensors" in shown[0]
    # a failure inside the worker: a one-band image for a three-band model
    gray = make_geotiff("gray.tif", np.zeros((1, 64, 64), np.uint8))
    viewer.open(str(gray), plugin="napari-segdeep")
    w.set_bundle(good)
    w.image.set_layer("gray")
    w.run_button.click()
    wait_job(w)
    assert w.last_outcome.state == "error"
    assert len(shown) == 2 and "band" in shown[1] and "\n" not in shown[1] and "Traceback" not in shown[1]
    assert "gray labels" not in viewer.layers
    # the viewer and the widget still work: the next run succeeds
    w.image.set_layer("scene")
    w.run_button.click()
    wait_job(w)
    assert w.last_outcome.state == "done" and "scene labels" in viewer.layers


def test_second_run_keeps_the_edited_labels(segment, scene, wait_job):
    """A second Segment writes a new layer; the corrections and their undo history stay in the first."""
    viewer, w = segment
    image, _ = scene
    viewer.open(str(image), plugin="napari-segdeep")
    w.image.set_layer("scene")
    w.run_button.click()
    wait_job(w)
    first = viewer.layers["scene labels"]
    assert first.metadata["image_layer"] == "scene"
    before = np.array(first.data)
    first.selected_label = 4
    first.paint((10, 10), 4)  # a brush stroke, as the user makes it (one undo step)
    first.paint_polygon([(40, 40), (40, 60), (60, 60), (60, 40)], 3)
    edited = np.array(first.data)
    assert (edited != before).sum() > 100
    w.run_button.click()
    wait_job(w)
    assert w.last_outcome.state == "done", w.last_outcome.message
    assert w.result_layer.name == "scene labels (2)" and w.result_layer.metadata["image_layer"] == "scene"
    assert np.array_equal(viewer.layers["scene labels"].data, edited)
    assert np.array_equal(w.result_layer.data, before)  # same model, same image: the same labels
    first.undo()  # undo still means "undo my last correction" on the first layer
    assert np.array_equal(first.data[40:61, 40:61], before[40:61, 40:61])
    assert not np.array_equal(first.data, before)  # the brush stroke is still there


def test_scales_and_flip_give_the_engine_result(segment, scene, wait_job, tmp_path, tiny_bundle, monkeypatch):
    """Test-time fusion set in the widget: the labels of predict_raster with the same settings; a
    scale that is not a number is a one-line error before any worker starts."""
    from segdeep.predict import predict_raster

    from napari_segdeep import _workers

    shown = []
    monkeypatch.setattr(_workers, "notify_error", shown.append)
    viewer, w = segment
    image, _ = scene
    viewer.open(str(image), plugin="napari-segdeep")
    w.image.set_layer("scene")
    w.overlap.setValue(16)
    w.scales.setText("0.5,x")
    w.run_button.click()
    assert len(shown) == 1 and "'x' is not a number" in shown[0] and w.job is None
    w.scales.setText("0.75, 1, 1.5")
    w.flip.setChecked(True)
    w.run_button.click()
    wait_job(w)
    assert w.last_outcome.state == "done", w.last_outcome.message
    expected = predict_raster(image, tiny_bundle, tmp_path / "api", overlap=16, scales=(0.75, 1, 1.5), flip=True,
                              preview=False)
    with rasterio.open(expected.labels) as ds:
        assert np.array_equal(viewer.layers["scene labels"].data, ds.read(1))
