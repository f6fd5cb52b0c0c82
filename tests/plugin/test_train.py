"""Train widget: fine-tune the tiny bundle on an image layer + edited labels, then Segment uses it."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from segdeep.classes import DUBAI_CLASSES
from segdeep.models.bundle import load_bundle, read_card

from napari_segdeep._layers import labels_layer_kwargs


@pytest.fixture
def train(make_napari_viewer, arrays, tiny_bundle, tmp_path):
    viewer = make_napari_viewer()
    image, truth = arrays(96)
    truth = truth.copy()
    truth[:, :8] = 255  # unlabelled pixels are ignored
    viewer.add_image(np.moveaxis(image, 0, -1), name="image", rgb=True)
    viewer.add_labels(truth, **labels_layer_kwargs(DUBAI_CLASSES, {}, "edited"))
    _, widget = viewer.window.add_plugin_dock_widget("napari-segdeep", "Train")
    widget.image.set_layer("image")
    widget.labels.set_layer("edited")
    widget.init.setText(str(tiny_bundle))
    widget.out.setText(str(tmp_path / "tuned.safetensors"))
    widget.tile_size.setValue(64)
    widget.batch_size.setValue(2)
    return viewer, widget


def test_finetune_then_segment_uses_new_bundle(train, tiny_bundle, tmp_path, wait_job):
    viewer, w = train
    viewer.add_image(np.zeros((32, 32), np.uint8), name="another image")  # newest, but not the one trained on
    w.epochs.setValue(1)
    w.run_button.click()
    wait_job(w, timeout=120_000)
    assert w.last_outcome.state == "done", w.last_outcome.message
    out = tmp_path / "tuned.safetensors"
    assert w.new_bundle == out and out.is_file()
    card = read_card(out)
    assert card.architecture == "unet" and [c.name for c in card.classes] == [c.name for c in DUBAI_CLASSES]
    assert card.training["init"] == str(tiny_bundle)
    before, _ = load_bundle(tiny_bundle)
    after, _ = load_bundle(out)
    changed = [k for k, v in after.state_dict().items()
               if v.is_floating_point() and not torch.equal(v, before.state_dict()[k])]
    assert changed  # the weights were trained
    _, segment = viewer.window.add_plugin_dock_widget("napari-segdeep", "Segment")
    assert segment.bundle.text() == str(out) and segment.card.name == "tuned"
    assert segment.image.currentText() == "image"


def test_train_cancel_and_bad_input(train, wait_job, monkeypatch, qtbot):
    from napari_segdeep import _workers

    shown = []
    monkeypatch.setattr(_workers, "notify_error", shown.append)
    viewer, w = train
    viewer.add_labels(np.zeros((16, 16), np.uint8), name="tiny")
    w.labels.set_layer("tiny")
    w.run_button.click()
    assert len(shown) == 1 and "32 x 32" in shown[0]
    w.labels.set_layer("edited")
    w.epochs.setValue(0)
    w.minutes.setValue(5)  # would run 5 minutes
    w.run_button.click()
    qtbot.waitUntil(lambda: "step" in w.status.text(), timeout=60_000)
    w.cancel_button.click()
    wait_job(w, timeout=30_000)
    assert w.last_outcome.state == "cancelled" and w.run_button.isEnabled()


def test_finetune_from_files(train, tiny_bundle, tmp_path, wait_job):
    """Image and label files instead of layers: the bundle is trained on them and Segment uses it."""
    from segdeep.io.raster import write_labels
    from segdeep.testing import CRS, TRANSFORM, write_geotiff

    viewer, w = train
    image = np.moveaxis(viewer.layers["image"].data, -1, 0)
    truth = np.asarray(viewer.layers["edited"].data).astype(np.uint8)
    image_path = write_geotiff(tmp_path / "img.tif", image)
    labels_path = write_labels(tmp_path / "lab.tif", truth, crs=CRS, transform=TRANSFORM, classes=DUBAI_CLASSES)
    w.image_file.setText(str(image_path))
    w.labels_file.setText(str(labels_path))
    w.epochs.setValue(1)
    w.run_button.click()
    wait_job(w, timeout=120_000)
    assert w.last_outcome.state == "done", w.last_outcome.message
    out = tmp_path / "tuned.safetensors"
    assert w.new_bundle == out and read_card(out).training["init"] == str(tiny_bundle)
    w.labels_file.setText("")
    w.run_button.click()  # an image file without its labels: a one-line error, nothing runs
    assert w.job is None or not w.job.running
