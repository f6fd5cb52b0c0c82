"""`segdeep evaluate`: label rasters, colour masks and paletted masks; streaming; alignment checks."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image
from rasterio.transform import from_origin
from segdeep.classes import DUBAI_CLASSES, decode_rgb_mask
from segdeep.cli import main
from segdeep.errors import SegdeepError
from segdeep.evaluate.metrics import ConfusionMatrix, scores
from segdeep.evaluate.rasters import evaluate_rasters
from segdeep.evaluate.report import validate_report_json
from segdeep.io.raster import write_labels

TRANSFORM = from_origin(300000.0, 2780000.0, 0.5, 0.5)


def _labels(seed, shape=(90, 130)):
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 5, (shape[0] // 10 + 1, shape[1] // 10 + 1))
    return np.kron(base, np.ones((10, 10), int))[: shape[0], : shape[1]].astype(np.uint8)


def _direct(truth, pred, valid=None):
    cm = ConfusionMatrix(6)
    cm.update(truth, pred, valid)
    return scores(cm, DUBAI_CLASSES)


@pytest.fixture
def pair(tmp_path):
    truth = _labels(1)
    pred = truth.copy()
    noise = np.random.default_rng(2).random(truth.shape) < 0.2
    pred[noise] = (pred[noise] + 1) % 6
    pred[:3, :] = 255  # prediction nodata
    t = write_labels(tmp_path / "truth.tif", truth, crs="EPSG:32640", transform=TRANSFORM, classes=DUBAI_CLASSES)
    p = write_labels(tmp_path / "pred.tif", pred, crs="EPSG:32640", transform=TRANSFORM, classes=DUBAI_CLASSES)
    return p, t, pred, truth


def test_streaming_equals_all_at_once(pair):
    p, t, pred, truth = pair
    whole = evaluate_rasters(p, t, block_size=4096)
    small = evaluate_rasters(p, t, block_size=32)
    assert whole["confusion_matrix"] == small["confusion_matrix"]
    expected = _direct(truth, pred)
    assert whole["confusion_matrix"] == expected["confusion_matrix"]
    assert whole["mean_iou"] == pytest.approx(expected["mean_iou"])
    assert whole["ignored_pixels"] == 3 * 130


def test_colour_and_paletted_masks_decode_like_labels(tmp_path, pair):
    p, t, pred, truth = pair
    reference = evaluate_rasters(p, t)
    rgb = np.zeros(truth.shape + (3,), np.uint8)
    for c in DUBAI_CLASSES:
        rgb[truth == c.index] = c.color
    Image.fromarray(rgb).save(tmp_path / "truth_rgb.png")
    # A paletted PNG whose index order differs from the class order (as in the Dubai data).
    order = [3, 1, 4, 0, 2, 5]
    pal_img = Image.fromarray(np.vectorize(order.index)(truth).astype(np.uint8), mode="P")
    pal_img.putpalette(sum((list(DUBAI_CLASSES[i].color) for i in order), []) + [0] * (768 - 18))
    pal_img.save(tmp_path / "truth_pal.png")
    # Without georeference on one side, only the size is checked.
    for name in ("truth_rgb.png", "truth_pal.png"):
        result = evaluate_rasters(p, tmp_path / name)
        assert result["confusion_matrix"] == reference["confusion_matrix"], name


@pytest.mark.parametrize("change, message", [
    (dict(shape=(80, 130)), "size 130 x 80 px differs"),
    (dict(crs="EPSG:32639"), "CRS EPSG:32639 differs"),
    (dict(transform=from_origin(300010.0, 2780000.0, 0.5, 0.5)), "transform"),
])
def test_misaligned_inputs_say_what_differs(tmp_path, pair, change, message):
    p = pair[0]
    labels = _labels(3, change.get("shape", (90, 130)))
    t = write_labels(tmp_path / "other.tif", labels, crs=change.get("crs", "EPSG:32640"),
                     transform=change.get("transform", TRANSFORM), classes=DUBAI_CLASSES)
    with pytest.raises(SegdeepError, match=message):
        evaluate_rasters(p, t)


def test_label_outside_palette_is_an_error(tmp_path, pair):
    labels = _labels(4)
    labels[5, 5] = 9
    t = write_labels(tmp_path / "t9.tif", labels, crs="EPSG:32640", transform=TRANSFORM, classes=DUBAI_CLASSES)
    with pytest.raises(SegdeepError, match="label 9 is not a class"):
        evaluate_rasters(pair[0], t)


def test_cli_writes_a_valid_report(tmp_path, pair, capsys):
    p, t, pred, truth = pair
    assert main(["evaluate", str(p), str(t), "--out", str(tmp_path / "report"), "--quiet"]) == 0
    data = json.loads((tmp_path / "report" / "report.json").read_text())
    validate_report_json(data)
    assert data["confusion_matrix"] == _direct(truth, pred)["confusion_matrix"]
    for name in ("report.csv", "report.md", "report.html", "confusion.png", "per_class_iou.png"):
        assert (tmp_path / "report" / name).stat().st_size > 0
    assert "mean IU" in capsys.readouterr().out


def test_real_dubai_pair(dubai, tmp_path):
    """A real Dubai mask (RGB PNG) against a shifted copy of it, checked against scikit-learn."""
    from sklearn.metrics import confusion_matrix

    mask = dubai / "tile_6" / "masks" / "image_part_001.png"
    truth = decode_rgb_mask(np.asarray(Image.open(mask).convert("RGB")), DUBAI_CLASSES)
    pred = np.full_like(truth, 255)
    pred[:, 7:] = truth[:, :-7]
    pred_path = write_labels(tmp_path / "pred.tif", pred, crs=None, transform=None, classes=DUBAI_CLASSES)
    result = evaluate_rasters(pred_path, mask, block_size=256)
    keep = (truth != 255) & (pred != 255)
    expected = confusion_matrix(truth[keep], pred[keep], labels=range(6))
    assert result["confusion_matrix"] == expected.tolist()
    assert 0.3 < result["mean_iou"] < 1.0


def test_vector_reference_equals_rasterized_reference(tmp_path, pair):
    """A GeoPackage reference (the truth polygonized) scores exactly like the truth raster."""
    from segdeep.export.vectorize import vectorize_raster

    p, t, _, _ = pair
    gpkg = tmp_path / "truth.gpkg"
    vectorize_raster(t, gpkg)
    assert evaluate_rasters(p, gpkg)["confusion_matrix"] == evaluate_rasters(p, t)["confusion_matrix"]
