"""Refine widget: CRF + clean-up of an edited Labels layer, scopes, undo, class palette."""

from __future__ import annotations

import numpy as np
import pytest
from segdeep.classes import DUBAI_CLASSES

from napari_segdeep._layers import labels_layer_kwargs


@pytest.fixture
def refine(make_napari_viewer, arrays):
    viewer = make_napari_viewer()
    image, truth = arrays(96)
    noisy = truth.copy()
    rng = np.random.default_rng(1)
    for _ in range(12):  # small wrong blobs, as a rough model or a hasty brush leaves them
        r, c = rng.integers(2, 90, 2)
        noisy[r:r + 3, c:c + 3] = rng.integers(0, 3)
    viewer.add_image(np.moveaxis(image, 0, -1), name="image", rgb=True)
    layer = viewer.add_labels(noisy.copy(), **labels_layer_kwargs(DUBAI_CLASSES, {}, "edited"))
    _, widget = viewer.window.add_plugin_dock_widget("napari-segdeep", "Refine")
    widget.labels.set_layer("edited")
    widget.image.set_layer("image")
    return viewer, widget, layer, noisy, truth


def test_refine_whole_layer_then_undo(refine, wait_job):
    viewer, w, layer, noisy, truth = refine
    w.min_region.setValue(20)
    w.apply_button.click()
    wait_job(w)
    assert w.last_outcome.state == "done", w.last_outcome.message
    errors_before = (noisy != truth).sum()
    errors_after = (layer.data != truth).sum()
    assert errors_before > 50 and errors_after < errors_before / 4
    assert "pixels changed" in w.status.text()
    w.undo_button.click()
    assert np.array_equal(layer.data, noisy)


def test_refine_only_inside_drawn_rectangle(refine, wait_job):
    viewer, w, layer, noisy, truth = refine
    w.crf.setChecked(False)  # clean-up only
    w.min_region.setValue(20)
    w.draw_region()
    shapes = viewer.layers["segdeep region"]
    shapes.add_rectangles(np.array([[0, 0], [48, 48]]))
    assert w.scope.currentText() == "drawn rectangle"
    w.apply_button.click()
    wait_job(w)
    assert w.last_outcome.state == "done", w.last_outcome.message
    outside = np.ones_like(noisy, bool)
    outside[:48, :48] = False
    assert np.array_equal(layer.data[outside], noisy[outside])
    assert (layer.data[:48, :48] != noisy[:48, :48]).any()


def test_palette_sets_the_painted_class(refine):
    viewer, w, layer, *_ = refine
    assert [b.text() for b in w.palette_buttons.values()] == [c.name for c in DUBAI_CLASSES]
    w.palette_buttons[3].click()
    assert layer.selected_label == 3 and layer.mode == "paint"
    assert layer.colormap.background_value == 255  # the eraser writes nodata, not class 0


def test_refine_error_leaves_layer_unchanged(refine, monkeypatch):
    from napari_segdeep import _workers

    shown = []
    monkeypatch.setattr(_workers, "notify_error", shown.append)
    viewer, w, layer, noisy, _ = refine
    viewer.layers["image"].data = np.zeros((40, 40, 3), np.uint8)  # smaller than the labels
    w.apply_button.click()
    assert len(shown) == 1 and "not inside" in shown[0]
    assert np.array_equal(layer.data, noisy) and w.apply_button.isEnabled()


def test_labels_stay_with_their_image(make_napari_viewer, scene, make_geotiff, arrays, monkeypatch):
    """Refine and Train pick the labels' own image, and refuse an image of another size, place or grid."""
    from affine import Affine
    from segdeep.io.raster import open_raster, read_labels

    from napari_segdeep import _workers
    from napari_segdeep._layers import georef_metadata

    shown = []
    monkeypatch.setattr(_workers, "notify_error", shown.append)
    image_path, labels_path = scene
    viewer = make_napari_viewer()
    viewer.open(str(image_path), plugin="napari-segdeep")  # "scene"
    rgb, _ = arrays(96)
    viewer.add_image(np.moveaxis(rgb, 0, -1), name="memory", rgb=True)  # no georeference
    shifted = make_geotiff("shifted.tif", rgb, transform=Affine(0.5, 0, 300010, 0, -0.5, 2700000))
    viewer.open(str(shifted), plugin="napari-segdeep")
    viewer.open(str(image_path), plugin="napari-segdeep", name="scene copy")  # same grid, another layer
    big, _ = arrays(128)
    viewer.add_image(np.moveaxis(big, 0, -1), name="small labels' big image", rgb=True)
    labels, _ = read_labels(labels_path)
    meta = georef_metadata(open_raster(labels_path))
    meta["image_layer"] = "scene"
    viewer.add_labels(labels, **labels_layer_kwargs(DUBAI_CLASSES, meta, "scene labels"))
    for dock in ("Refine", "Train"):
        _, w = viewer.window.add_plugin_dock_widget("napari-segdeep", dock, tabify=True)
        assert (w.labels.currentText(), w.image.currentText()) == ("scene labels", "scene"), dock
    _, w = viewer.window.add_plugin_dock_widget("napari-segdeep", "Refine")
    for other, words in (("memory", "has a georeference and 'memory' has none"),
                         ("shifted", "not on the grid of image 'shifted'"),
                         ("scene copy", "were made from image 'scene', not 'scene copy'")):
        w.image.set_layer(other)
        before = len(shown)
        w.apply_button.click()
        assert len(shown) == before + 1 and words in shown[-1], shown[-1]
        assert w.job is None and w.status.text().startswith("error:")
    viewer.layers["scene labels"].metadata = {**meta, "image_layer": None}
    w.image.set_layer("small labels' big image")
    w.labels.set_layer("scene labels")
    viewer.layers["scene labels"].metadata = {}
    viewer.layers["scene labels"].translate = (40, 40)
    w.apply_button.click()
    assert "are not inside image" in shown[-1] and "col 40, row 40" in shown[-1]


def test_uncertainty_layer_and_next_uncertain_region(make_napari_viewer, tiny_bundle, scene, wait_job):
    from segdeep.refine import margin_uncertainty, uncertain_regions

    viewer = make_napari_viewer()
    _, seg = viewer.window.add_plugin_dock_widget("napari-segdeep", "Segment")
    seg.set_bundle(tiny_bundle)
    viewer.open(str(scene[0]), plugin="napari-segdeep")
    seg.image.set_layer("scene")
    seg.probabilities.setChecked(True)
    seg.run_button.click()
    wait_job(seg)
    assert seg.last_outcome.state == "done", seg.last_outcome.message
    unc = viewer.layers["scene uncertainty"]
    assert seg.result_layer.metadata["uncertainty_layer"] == "scene uncertainty"
    assert np.allclose(unc.data, margin_uncertainty(viewer.layers["scene probabilities"].data))
    # a random-weight model is unsure everywhere alike: give it two clear places to look at
    designed = np.full(unc.data.shape, 0.6, np.float32)
    designed[10:20, 60:80] = 0.95
    designed[70:90, 5:15] = 0.9
    unc.data = designed
    regions = uncertain_regions(designed)
    assert [(r.row, r.col) for r in regions] == [(10, 60), (70, 5)]  # summed uncertainty 190, 180
    _, w = viewer.window.add_plugin_dock_widget("napari-segdeep", "Refine", tabify=True)
    w.labels.set_layer("scene labels")
    for region in regions[:2]:
        w.next_button.click()
        expected = unc.data_to_world((region.center_row, region.center_col))
        assert np.allclose(tuple(viewer.camera.center)[-2:], tuple(expected)[-2:])
    assert w.status.text().startswith("uncertain region 2 / 2: 200 px at col 5, row 70")
    assert unc.visible
