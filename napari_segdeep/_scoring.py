"""Scoring a Labels layer against reference labels (a layer or a file), shared by Evaluate and Export.

Only glue: the reference is aligned by the layers' pixel offsets (both live in the pixel grid of
the same source raster), the confusion matrix, scores and report files are segdeep's
(:class:`segdeep.evaluate.metrics.ConfusionMatrix`, :func:`segdeep.evaluate.metrics.scores`,
:func:`segdeep.evaluate.report.write_report`, :func:`segdeep.evaluate.report.confusion_png`).
"""

from __future__ import annotations

from collections.abc import Generator
from pathlib import Path

import numpy as np
from rasterio.windows import Window
from segdeep.errors import SegdeepError

from ._layers import labels_array, layer_offset

#: Rows scored per step (progress and cancel granularity).
ROWS_PER_STEP = 1024


def reference_labels(pred_layer, classes, *, ref_layer=None, ref_path: str | None = None) -> np.ndarray:
    """Reference labels on the prediction layer's pixels (uint8, 255 = no reference).

    SegdeepError when the reference is the labels layer itself (compared by name): a layer scored
    against itself is 100 % and means nothing. (The file a layer was read from is a fair reference:
    it measures the edits made since.)
    """
    check_not_self(pred_layer, ref_layer=ref_layer)
    pred = np.asarray(pred_layer.data)
    h, w = pred.shape[-2:]
    row, col = layer_offset(pred_layer)
    if ref_layer is not None:
        ref = labels_array(ref_layer.data)
        r0, c0 = layer_offset(ref_layer)
        top, left = row - r0, col - c0
        if top < 0 or left < 0 or top + h > ref.shape[0] or left + w > ref.shape[1]:
            raise SegdeepError(f"reference layer {ref_layer.name!r} ({ref.shape[1]} x {ref.shape[0]} px) does not "
                               f"cover labels {pred_layer.name!r} ({w} x {h} px at col {col}, row {row})")
        return ref[top:top + h, left:left + w]
    if not ref_path:
        raise SegdeepError("no reference: choose a reference Labels layer or a label file")
    from segdeep.io import is_vector_path, open_labels

    meta = pred_layer.metadata or {}
    full = (meta.get("height"), meta.get("width"))
    if is_vector_path(ref_path):  # rasterized onto the source raster's grid (reprojected if needed)
        source = open_labels(ref_path, classes, like=_source_grid(meta, ref_path))
        return source.read(Window(col, row, w, h))[0]
    source = open_labels(ref_path, classes)
    if None not in full and (source.info.height, source.info.width) != full:
        raise SegdeepError(f"{ref_path}: {source.info.width} x {source.info.height} px, but the labels belong to a "
                           f"{full[1]} x {full[0]} px raster; the reference must share its grid")
    labels, _valid = source.read(Window(col, row, w, h))
    return labels


def check_not_self(pred_layer, *, ref_layer=None) -> None:
    """SegdeepError when the reference layer is the labels layer itself."""
    if ref_layer is not None and ref_layer.name == pred_layer.name:
        raise SegdeepError(f"labels and reference are the same layer ({pred_layer.name!r}); choose another "
                           "reference layer or a reference file")


def _source_grid(meta: dict, ref_path: str):
    """The grid of the raster a layer came from (RasterInfo), from the layer's georeference metadata."""
    from affine import Affine
    from segdeep.io import RasterInfo

    from ._layers import crs_transform

    crs, transform = crs_transform(meta)
    if crs is None or meta.get("width") is None:
        raise SegdeepError(f"{ref_path}: a vector reference needs labels with a georeference (open the image "
                           "with the segdeep reader)")
    if meta.get("window"):  # a region layer: its transform starts at the region's corner
        col, row = meta["window"][:2]
        transform = transform * Affine.translation(-col, -row)
    return RasterInfo(path=str(meta.get("path", "")), width=int(meta["width"]), height=int(meta["height"]),
                      count=1, dtype="uint8", crs=crs, transform=transform, nodata=255, georeferenced=True)


def iter_scores(pred: np.ndarray, ref, classes, *, out_dir: str | Path | None = None,
                inputs: dict | None = None) -> Generator[tuple[int, int], None, tuple[dict, dict, bytes]]:
    """Score ``pred`` against ``ref`` in strips of :data:`ROWS_PER_STEP` rows.

    ``ref`` is an array, or a function returning it (run here, so a slow reference file is read in
    the worker). Yields ``(steps_done, steps_total)``: reading the reference, one step per strip,
    the report files and the confusion-matrix picture; returns ``(scores dict, report paths (empty
    without out_dir), confusion-matrix PNG bytes)``. Closing the generator stops it between steps.
    """
    from segdeep.evaluate import ConfusionMatrix, confusion_png, scores, write_report

    h = pred.shape[0]
    strips = -(-h // ROWS_PER_STEP)
    total = 1 + strips + bool(out_dir) + 1
    if callable(ref):
        yield 0, total
        ref = ref()
    yield 1, total
    if pred.shape != ref.shape:
        raise SegdeepError(f"labels {pred.shape[::-1]} and reference {ref.shape[::-1]} differ in size (w x h)")
    k = max(c.index for c in classes) + 1
    cm = ConfusionMatrix(k)
    for bad_name, arr in (("labels", pred), ("reference", ref)):
        bad = (arr != 255) & (arr >= k)
        if bad.any():
            raise SegdeepError(f"{bad_name}: value {int(arr[bad][0])} is not a class of the palette (0-{k - 1}) "
                               "nor nodata (255)")
    for i, r in enumerate(range(0, h, ROWS_PER_STEP)):
        cm.update(ref[r:r + ROWS_PER_STEP], pred[r:r + ROWS_PER_STEP])
        yield 2 + i, total
    result = scores(cm, classes)
    paths = {}
    if out_dir:
        paths = write_report(result, out_dir, classes=classes, inputs=inputs or {})
        yield total - 1, total
    png = confusion_png(result)
    yield total, total
    return result, paths, png
