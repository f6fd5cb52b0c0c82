"""Evaluate and Export widgets: scores in the dock, report files, GeoTIFF and polygons written."""

from __future__ import annotations

import json

import numpy as np
import pyogrio
import pytest
from segdeep.classes import DUBAI_CLASSES
from segdeep.evaluate.metrics import ConfusionMatrix, scores
from segdeep.io.raster import open_raster, read_classes_tag, read_labels

from napari_segdeep._layers import georef_metadata, labels_layer_kwargs


@pytest.fixture
def two_layers(make_napari_viewer, scene):
    """A viewer with truth labels (from the file) and a 'prediction' with known mistakes."""
    _, labels_path = scene
    viewer = make_napari_viewer()
    truth, _ = read_labels(labels_path)
    meta = georef_metadata(open_raster(labels_path))
    pred = truth.copy()
    pred[:10, :] = 2  # road where there is land
    pred[40, 40] = 255  # one pixel without prediction
    viewer.add_labels(truth, **labels_layer_kwargs(DUBAI_CLASSES, meta, "truth"))
    viewer.add_labels(pred, **labels_layer_kwargs(DUBAI_CLASSES, meta, "pred"))
    return viewer, truth, pred, labels_path


def test_evaluate_shows_scores_and_writes_report(two_layers, wait_job, tmp_path):
    viewer, truth, pred, _ = two_layers
    _, w = viewer.window.add_plugin_dock_widget("napari-segdeep", "Evaluate")
    w.labels.set_layer("pred")
    w.reference.set_layer("truth")
    w.out_dir.setText(str(tmp_path / "reports"))
    w.run_button.click()
    wait_job(w)
    assert w.last_outcome.state == "done", w.last_outcome.message
    cm = ConfusionMatrix(6)
    cm.update(truth, pred)
    expected = scores(cm, DUBAI_CLASSES)
    assert w.result["mean_iou"] == pytest.approx(expected["mean_iou"])
    assert w.summary.item(2, 0).text() == "Mean IoU"
    assert w.summary.item(2, 1).text() == f"{100 * expected['mean_iou']:.1f}%"
    names = [w.table.item(r, 0).text() for r in range(w.table.rowCount())]
    assert names == ["building", "land", "road"]  # absent classes are not listed
    support = next(c["support"] for c in expected["classes"] if c["name"] == "building")
    cell = w.table.item(0, 5)  # reference pixels: compact in the cell, exact in the tooltip
    assert w.table.horizontalHeaderItem(5).text() == "Ref. px"
    assert f"{support:,} pixels" in cell.toolTip() and len(cell.text()) <= 6
    assert not w.confusion.pixmap().isNull()
    report = tmp_path / "reports" / "pred_vs_truth" / "report.json"
    data = json.loads(report.read_text())
    assert data["pixel_accuracy"] == pytest.approx(expected["pixel_accuracy"])
    assert (report.parent / "confusion.png").is_file() and (report.parent / "report.html").is_file()


def evaluate_pred_against_file(viewer, reference, wait_job):
    """The Evaluate widget scoring the 'pred' layer against a reference file, no report folder."""
    _, w = viewer.window.add_plugin_dock_widget("napari-segdeep", "Evaluate")
    w.labels.set_layer("pred")
    w.reference.setCurrentText("(none)")
    w.reference_file.setText(str(reference))
    w.out_dir.setText("")
    w.run_button.click()
    wait_job(w)
    return w


def test_evaluate_against_a_file(two_layers, wait_job, tmp_path):
    viewer, truth, pred, labels_path = two_layers
    w = evaluate_pred_against_file(viewer, labels_path, wait_job)
    cm = ConfusionMatrix(6)
    cm.update(truth, pred)
    assert w.result["pixel_accuracy"] == pytest.approx(scores(cm)["pixel_accuracy"])
    assert w.report_paths == {}


def test_export_writes_geotiff_polygons_and_report(two_layers, wait_job, tmp_path):
    viewer, truth, pred, labels_path = two_layers
    _, w = viewer.window.add_plugin_dock_widget("napari-segdeep", "Export")
    w.labels.set_layer("pred")
    w.raster[1].setText(str(tmp_path / "out" / "pred.tif"))
    w.vector[1].setText(str(tmp_path / "out" / "pred.gpkg"))
    w.layer_per_class.setChecked(True)
    w.reference.set_layer("truth")
    w.report_dir.setText(str(tmp_path / "out" / "report"))
    w.run_button.click()
    wait_job(w)
    assert w.last_outcome.state == "done", w.last_outcome.message
    back, _ = read_labels(tmp_path / "out" / "pred.tif")
    assert np.array_equal(back, pred)
    info, ref = open_raster(tmp_path / "out" / "pred.tif"), open_raster(labels_path)
    assert info.crs == ref.crs and info.transform.almost_equals(ref.transform)
    assert [c.name for c in read_classes_tag(tmp_path / "out" / "pred.tif")][:3] == ["building", "land", "road"]
    layers = {name for name, _ in pyogrio.list_layers(tmp_path / "out" / "pred.gpkg")}
    assert {"building", "land", "road"} <= layers
    roads = pyogrio.read_dataframe(tmp_path / "out" / "pred.gpkg", layer="road")
    assert roads["area"].sum() == pytest.approx((pred == 2).sum() * 0.25)
    assert (tmp_path / "out" / "report" / "report.json").is_file()
    assert str(tmp_path / "out" / "pred.tif") in w.written


def test_export_error_is_one_line(two_layers, monkeypatch, tmp_path):
    from napari_segdeep import _workers

    shown = []
    monkeypatch.setattr(_workers, "notify_error", shown.append)
    viewer, *_ = two_layers
    _, w = viewer.window.add_plugin_dock_widget("napari-segdeep", "Export")
    viewer.add_labels(np.full((20, 20), 300, np.int32), name="odd")
    w.labels.set_layer("odd")
    w.raster[1].setText(str(tmp_path / "odd.tif"))
    w.run_button.click()
    assert len(shown) == 1 and "300" in shown[0] and "\n" not in shown[0]
    assert not (tmp_path / "odd.tif").exists() and w.run_button.isEnabled()


def test_evaluate_against_a_vector_file(two_layers, wait_job, tmp_path):
    """A GeoPackage reference (the truth polygonized) scores exactly like the truth raster."""
    from segdeep.export.vectorize import vectorize_raster

    viewer, truth, pred, labels_path = two_layers
    gpkg = tmp_path / "truth.gpkg"
    vectorize_raster(labels_path, gpkg)
    w = evaluate_pred_against_file(viewer, gpkg, wait_job)
    assert w.last_outcome.state == "done", w.last_outcome.message
    cm = ConfusionMatrix(6)
    cm.update(truth, pred)
    assert w.result["confusion_matrix"] == scores(cm)["confusion_matrix"]


def add_prediction(viewer, labels_path, name="scene labels"):
    """A Labels layer as Segment writes it (metadata names the bundle), with known mistakes."""
    truth, _ = read_labels(labels_path)
    pred = truth.copy()
    pred[:10, :] = 2
    meta = georef_metadata(open_raster(labels_path))
    meta["bundle"] = "tiny.safetensors"
    viewer.add_labels(pred, **labels_layer_kwargs(DUBAI_CLASSES, meta, name))
    return pred


@pytest.mark.parametrize("dock", ["Evaluate", "Export"])
def test_reference_never_defaults_to_the_labels_themselves(make_napari_viewer, scene, dock):
    """Opened before segmenting (only the truth exists) and after: the two fields never name one layer."""
    _, labels_path = scene
    viewer = make_napari_viewer()
    truth, _ = read_labels(labels_path)
    viewer.add_labels(truth, **labels_layer_kwargs(DUBAI_CLASSES, georef_metadata(open_raster(labels_path)),
                                                   "truth"))
    _, w = viewer.window.add_plugin_dock_widget("napari-segdeep", dock)
    assert (w.labels.currentText(), w.reference.currentText()) == ("truth", "(none)")
    add_prediction(viewer, labels_path)
    assert (w.labels.currentText(), w.reference.currentText()) == ("scene labels", "truth")
    _, w2 = viewer.window.add_plugin_dock_widget("napari-segdeep", dock, tabify=True)
    assert (w2.labels.currentText(), w2.reference.currentText()) == ("scene labels", "truth")


def test_evaluate_scores_the_prediction_against_the_truth_by_default(make_napari_viewer, scene, wait_job, tmp_path):
    _, labels_path = scene
    viewer = make_napari_viewer()
    truth, _ = read_labels(labels_path)
    viewer.add_labels(truth, **labels_layer_kwargs(DUBAI_CLASSES, georef_metadata(open_raster(labels_path)),
                                                   "truth"))
    _, w = viewer.window.add_plugin_dock_widget("napari-segdeep", "Evaluate")
    pred = add_prediction(viewer, labels_path)
    w.out_dir.setText(str(tmp_path / "reports"))
    w.run_button.click()
    wait_job(w)
    assert w.last_outcome.state == "done", w.last_outcome.message
    cm = ConfusionMatrix(6)
    cm.update(truth, pred)
    assert w.result["mean_iou"] == pytest.approx(scores(cm, DUBAI_CLASSES)["mean_iou"]) and w.result["mean_iou"] < 1
    assert (tmp_path / "reports" / "scene_labels_vs_truth" / "report.json").is_file()


def test_same_layer_is_refused_and_the_real_report_kept(two_layers, wait_job, tmp_path, monkeypatch):
    from napari_segdeep import _workers

    shown = []
    monkeypatch.setattr(_workers, "notify_error", shown.append)
    viewer, *_ = two_layers
    _, w = viewer.window.add_plugin_dock_widget("napari-segdeep", "Evaluate")
    w.out_dir.setText(str(tmp_path / "reports"))
    w.labels.set_layer("pred")
    w.reference.set_layer("truth")
    w.run_button.click()
    wait_job(w)
    report = tmp_path / "reports" / "pred_vs_truth" / "report.json"
    real = report.read_text()
    w.reference.set_layer("pred")  # on purpose; the viewer hands out a new proxy per lookup
    w.run_button.click()
    assert len(shown) == 1 and "same layer" in shown[0] and "'pred'" in shown[0]
    assert w.status.text() == f"error: {shown[0]}" and w.run_button.isEnabled()
    assert report.read_text() == real
    assert sorted(p.name for p in (tmp_path / "reports").iterdir()) == ["pred_vs_truth"]

