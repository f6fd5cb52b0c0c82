"""Evaluate a predicted label raster against a reference, block by block.

Memory depends on ``block_size``, never on the raster size: the confusion matrix accumulates per
block (see :mod:`segdeep.evaluate.metrics`), then the scores and report files are written.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from rasterio.windows import Window

from ..classes import NODATA_LABEL, ClassInfo
from ..errors import SegdeepError
from ..io.label_sources import LabelSource, open_labels
from ..io.raster import RasterInfo, read_classes_tag
from ..models.card import load_classes
from .metrics import ConfusionMatrix, scores


def check_aligned(pred: RasterInfo, truth: RasterInfo, tolerance: float = 1e-6, *,
                  reference: str = "the prediction") -> None:
    """Raise a :class:`SegdeepError` saying exactly what differs when two rasters are not aligned.

    Sizes must be equal; when both are georeferenced, CRS and transform must be equal too
    (transform coefficients within ``tolerance`` of a pixel). ``reference`` names ``pred`` in the
    message (e.g. ``"the image"``).
    """
    if (pred.width, pred.height) != (truth.width, truth.height):
        raise SegdeepError(
            f"{truth.path}: size {truth.width} x {truth.height} px differs from {reference} "
            f"{pred.path} ({pred.width} x {pred.height} px); both must cover the same grid"
        )
    if pred.georeferenced and truth.georeferenced:
        if pred.crs != truth.crs:
            raise SegdeepError(
                f"{truth.path}: CRS {truth.crs.to_string()} differs from {reference}'s "
                f"{pred.crs.to_string()} ({pred.path}); reproject one onto the other's grid"
            )
        px = max(abs(pred.transform.a), abs(pred.transform.e))
        diffs = [abs(a - b) for a, b in zip(pred.transform[:6], truth.transform[:6], strict=True)]
        if max(diffs[0:2] + diffs[3:5]) > tolerance or max(diffs[2], diffs[5]) > tolerance * px * 1e3:
            raise SegdeepError(
                f"{truth.path}: transform {tuple(round(v, 6) for v in truth.transform[:6])} differs from "
                f"{reference}'s {tuple(round(v, 6) for v in pred.transform[:6])} ({pred.path}); the rasters do not "
                "line up pixel for pixel"
            )


def score_windows(width: int, height: int, block_size: int):
    """The blocks a raster is scored in: rasterio windows of ``block_size`` pixels, row by row, from
    the origin (the last row and column of blocks cut to the raster)."""
    for row in range(0, height, block_size):
        for col in range(0, width, block_size):
            yield Window(col, row, min(block_size, width - col), min(block_size, height - row))


def pick_classes(classes, pred_path: str) -> list[ClassInfo]:
    """The palette to score with: ``classes`` as given (a list, or a JSON / bundle path), or when None
    the one tagged in the prediction GeoTIFF, else Dubai's."""
    if classes is None:
        return read_classes_tag(pred_path) or load_classes(None)
    if isinstance(classes, str | Path):
        return load_classes(classes)
    return list(classes)


def evaluate_rasters(
    prediction: str | Path,
    truth: str | Path,
    *,
    classes: list[ClassInfo] | str | Path | None = None,
    ignore_index: int = NODATA_LABEL,
    block_size: int = 2048,
    attribute: str | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> dict:
    """Score ``prediction`` against ``truth``; returns the :func:`segdeep.evaluate.metrics.scores` dict.

    ``classes``: palette (list, JSON path or bundle path); default: the palette stored in the
    prediction (segdeep writes it) or the Dubai palette. ``truth`` may be a label raster, a
    colour-coded mask, or a vector file with a class ``attribute``. ``ignore_index`` pixels of the
    truth and nodata of either input are left out. ``progress(done, total)`` is called per block.
    """
    classes, pred, ref = open_pair(prediction, truth, classes=classes, ignore_index=ignore_index,
                                   block_size=block_size, attribute=attribute)
    cm = ConfusionMatrix(max(c.index for c in classes) + 1, ignore_index=ignore_index)
    windows = list(score_windows(pred.info.width, pred.info.height, block_size))
    for i, window in enumerate(windows):
        cm.merge(window_confusion(pred, ref, window, ignore_index))
        if progress:
            progress(i + 1, len(windows))
    return result_dict(cm, classes, pred, ref)


def open_pair(prediction: str | Path, truth: str | Path, *, classes, ignore_index: int, block_size: int,
              attribute: str | None) -> tuple[list[ClassInfo], LabelSource, LabelSource]:
    """The checked inputs of an evaluation: ``(classes, prediction source, truth source)``; a vector
    truth is rasterized onto the prediction's grid, a raster truth must be aligned with it."""
    if block_size < 16:
        raise SegdeepError(f"block size {block_size} px is too small; use 256 or more")
    classes = pick_classes(classes, str(prediction))
    pred: LabelSource = open_labels(prediction, classes)
    ref: LabelSource = open_labels(truth, classes, like=pred.info, attribute=attribute,
                                   ignore_index=ignore_index)
    if ref.kind != "vector":
        check_aligned(pred.info, ref.info)
    return classes, pred, ref


def window_confusion(pred: LabelSource, ref: LabelSource, window, ignore_index: int) -> ConfusionMatrix:
    """Confusion matrix of one window (a rasterio Window, pixels); labels outside the palette are a
    one-line error naming the file."""
    num_classes = max(c.index for c in pred.classes) + 1
    p, p_valid = pred.read(window)
    t, t_valid = ref.read(window)
    for source, lab, valid in ((pred, p, p_valid), (ref, t, t_valid)):
        bad = valid & (lab >= num_classes) & (lab != ignore_index)
        if bad.any():
            raise SegdeepError(
                f"{source.path}: label {int(lab[bad][0])} is not a class of the palette "
                f"(0-{num_classes - 1}); pass the right classes with --classes"
            )
    cm = ConfusionMatrix(num_classes, ignore_index=ignore_index)
    cm.update(t, p, t_valid)
    return cm


def result_dict(cm: ConfusionMatrix, classes: list[ClassInfo], pred: LabelSource, ref: LabelSource) -> dict:
    """The scores of ``cm`` with the inputs and their notes (the report's dict)."""
    result = scores(cm, classes)
    result["inputs"] = {"prediction": str(pred.path), "truth": str(ref.path)}
    result["notes"] = pred.notes + ref.notes
    return result
