"""Accuracy scores of a label map against reference labels, streamed block by block.

:class:`ConfusionMatrix` accumulates ``n_ij`` = pixels of true class ``i`` predicted as ``j``
(int64, rows = truth, columns = prediction) one block at a time, so evaluating a raster of any
size needs the memory of one block. :func:`scores` turns the matrix into the four scores of
Long et al. (FCN, section 5) and per-class figures.

Which pixels are scored. A pixel is left out (and counted in ``ignored_pixels``) when

1. ``valid`` is given and False there (source nodata, outside the raster), else
2. its truth label is ``ignore_index`` or 255 (``NODATA_LABEL``, nodata in every segdeep label
   raster), else
3. its predicted label is 255: the prediction has no data where the truth has a class. These are
   not counted as errors; they are reported separately (``ignored_by_reason["prediction_nodata"]``)
   so a partial prediction is visible rather than silently penalised or hidden.

Any other label value outside ``0 .. num_classes - 1`` in a scored pixel is an error (the
palette does not match the rasters), reported with the offending value.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..classes import NODATA_LABEL, ClassInfo
from ..errors import SegdeepError

#: Reasons a pixel is not scored, in the order they are checked.
IGNORE_REASONS = ("invalid", "truth_ignored", "prediction_nodata")
_CHUNK_PIXELS = 1 << 21  # pixels per bincount call: ~24 MB of temporaries whatever the block size


class ConfusionMatrix:
    """Streaming confusion matrix over ``num_classes`` classes (labels ``0 .. num_classes - 1``).

    ``matrix[i, j]`` is the number of scored pixels whose truth is ``i`` and prediction ``j``.
    Blocks are added with :meth:`update`; matrices of other blocks or workers with :meth:`merge`
    or ``+``. The result does not depend on how the image was cut into blocks.
    """

    def __init__(self, num_classes: int, ignore_index: int = NODATA_LABEL) -> None:
        if not 1 <= int(num_classes) <= NODATA_LABEL:
            raise ValueError(f"num_classes must be 1-{NODATA_LABEL}, got {num_classes}")
        self.num_classes = int(num_classes)
        self.ignore_index = int(ignore_index)
        self.matrix = np.zeros((self.num_classes, self.num_classes), dtype=np.int64)
        #: Pixels not scored, by reason (see the module docstring): ``IGNORE_REASONS`` -> count.
        self.ignored_by_reason = dict.fromkeys(IGNORE_REASONS, 0)

    @property
    def ignored_pixels(self) -> int:
        """Pixels given to :meth:`update` that were not scored (all reasons)."""
        return int(sum(self.ignored_by_reason.values()))

    @property
    def num_pixels(self) -> int:
        """Pixels scored (the sum of the matrix)."""
        return int(self.matrix.sum())

    def update(self, truth: np.ndarray, pred: np.ndarray, valid: np.ndarray | None = None) -> None:
        """Add one block: ``truth`` and ``pred`` are integer label arrays of the same shape (pixels);
        ``valid`` (bool, same shape, optional) is False where the pixel must not be scored."""
        truth, pred = np.asarray(truth), np.asarray(pred)
        if truth.shape != pred.shape:
            raise ValueError(f"truth {truth.shape} and prediction {pred.shape} differ in shape")
        for name, a in (("truth", truth), ("prediction", pred)):
            if not (np.issubdtype(a.dtype, np.integer) or a.dtype == bool):
                raise TypeError(f"{name} labels must be integers, got dtype {a.dtype}")
        if valid is not None:
            valid = np.asarray(valid, dtype=bool)
            if valid.shape != truth.shape:
                raise ValueError(f"valid mask {valid.shape} differs from labels {truth.shape}")
        if truth.size == 0:
            return
        truth = self._as_byte_labels(truth, "truth", self.ignore_index)
        pred = self._as_byte_labels(pred, "prediction", None)
        # Joint 256 x 256 histogram of (truth, prediction) byte values, then exclusions are rows
        # and columns of it. Chunks bound the temporary memory (bincount works in intp).
        truth, pred = truth.ravel(), pred.ravel()
        valid = None if valid is None or valid.all() else valid.ravel()
        hist = np.zeros(256 * 256, dtype=np.int64)
        for start in range(0, truth.size, _CHUNK_PIXELS):
            chunk = slice(start, start + _CHUNK_PIXELS)
            code = (truth[chunk].astype(np.uint16) << 8) | pred[chunk]
            if valid is not None:
                code = code[valid[chunk]]
            hist += np.bincount(code, minlength=256 * 256)
        invalid = 0 if valid is None else int(valid.size - np.count_nonzero(valid))
        self._add_histogram(hist.reshape(256, 256), invalid)

    @staticmethod
    def _as_byte_labels(a: np.ndarray, name: str, ignore_index: int | None) -> np.ndarray:
        """Labels as uint8; an ``ignore_index`` outside 0-255 is mapped to 255 first."""
        if a.dtype in (np.uint8, bool):
            return a.astype(np.uint8, copy=False)
        if ignore_index is not None and not 0 <= ignore_index <= NODATA_LABEL:
            a = np.where(a == ignore_index, NODATA_LABEL, a)
        lo, hi = int(a.min()), int(a.max())
        if lo < 0 or hi > NODATA_LABEL:
            bad = lo if lo < 0 else hi
            raise SegdeepError(
                f"{name} labels contain the value {bad}; class labels must be 0-254 (255 = nodata)"
            )
        return a.astype(np.uint8)

    def _add_histogram(self, hist: np.ndarray, invalid: int) -> None:
        """Check a joint (truth, prediction) byte histogram, then add it; all or nothing."""
        k = self.num_classes
        ignored_rows = {NODATA_LABEL}
        if 0 <= self.ignore_index <= NODATA_LABEL:
            ignored_rows.add(self.ignore_index)
        truth_ignored = 0
        for r in ignored_rows:
            truth_ignored += int(hist[r].sum())
            hist[r] = 0
        stray_truth = np.flatnonzero(hist[k:NODATA_LABEL].sum(axis=1))
        if stray_truth.size:
            raise SegdeepError(self._range_message("truth", k + int(stray_truth[0])))
        stray_pred = np.flatnonzero(hist[:, k:NODATA_LABEL].sum(axis=0))
        if stray_pred.size:
            raise SegdeepError(self._range_message("prediction", k + int(stray_pred[0])))
        self.ignored_by_reason["invalid"] += invalid
        self.ignored_by_reason["truth_ignored"] += truth_ignored
        self.ignored_by_reason["prediction_nodata"] += int(hist[:, NODATA_LABEL].sum())
        self.matrix += hist[:k, :k]

    def _range_message(self, name: str, value: int) -> str:
        return (
            f"{name} labels contain class {value} but there are {self.num_classes} classes "
            f"(0-{self.num_classes - 1}); ignore index {self.ignore_index}, nodata 255: "
            "check the class palette"
        )

    def merge(self, other: ConfusionMatrix) -> ConfusionMatrix:
        """Add ``other``'s counts into this matrix (in place) and return ``self``."""
        if (other.num_classes, other.ignore_index) != (self.num_classes, self.ignore_index):
            raise ValueError(
                f"cannot merge a {other.num_classes}-class matrix (ignore {other.ignore_index}) into "
                f"a {self.num_classes}-class one (ignore {self.ignore_index})"
            )
        self.matrix += other.matrix
        for reason in IGNORE_REASONS:
            self.ignored_by_reason[reason] += other.ignored_by_reason[reason]
        return self

    def copy(self) -> ConfusionMatrix:
        out = ConfusionMatrix(self.num_classes, self.ignore_index)
        return out.merge(self)

    def __add__(self, other: ConfusionMatrix) -> ConfusionMatrix:
        if not isinstance(other, ConfusionMatrix):
            return NotImplemented
        return self.copy().merge(other)

    def __repr__(self) -> str:
        return (
            f"ConfusionMatrix(num_classes={self.num_classes}, ignore_index={self.ignore_index}, "
            f"num_pixels={self.num_pixels}, ignored_pixels={self.ignored_pixels})"
        )


def _class_names(class_names, k: int) -> list[str]:
    names = [f"class {i}" for i in range(k)]
    if class_names is None:
        return names
    items = list(class_names)
    if items and all(isinstance(c, ClassInfo) for c in items):
        for c in items:
            if not 0 <= c.index < k:
                raise ValueError(f"class {c.name!r} has index {c.index}, outside 0-{k - 1}")
            names[c.index] = c.name
        return names
    if len(items) != k:
        raise ValueError(f"{len(items)} class names given for a {k}-class confusion matrix")
    return [str(n) for n in items]


def _ratio(num: int, den: int) -> float | None:
    return float(num) / float(den) if den > 0 else None


def scores(
    matrix: np.ndarray | ConfusionMatrix,
    class_names: Sequence[str] | Sequence[ClassInfo] | None = None,
    *,
    ignored_pixels: int | None = None,
) -> dict:
    """The four FCN scores and per-class figures of a confusion matrix (rows truth, columns pred).

    With ``n_ij`` the matrix, ``t_i = sum_j n_ij`` (support), ``p_j = sum_i n_ij`` (predicted):

    - pixel_accuracy = sum_i n_ii / sum_i t_i
    - mean_accuracy = mean over classes with t_i > 0 of n_ii / t_i
    - mean_iou = mean over classes present in truth or prediction of n_ii / (t_i + p_i - n_ii)
    - frequency_weighted_iou = (sum_k t_k)^-1 sum_i t_i n_ii / (t_i + p_i - n_ii)

    Per class: ``iou``, ``accuracy`` (recall, None when t_i = 0), ``precision`` (None when
    p_i = 0), ``f1`` (Dice, 2 n_ii / (t_i + p_i)), ``support``, ``predicted``, and ``absent``
    (t_i = p_i = 0: every score None and the class is left out of the means). A class with
    predictions but no truth has IoU 0, which counts in mean_iou.

    ``matrix`` may be a :class:`ConfusionMatrix`, whose ignored pixels are then reported;
    otherwise pass ``ignored_pixels``. ``class_names``: one name per row, or a palette of
    :class:`ClassInfo` (matched by index). Returns plain Python types (JSON-ready), including
    ``confusion_matrix`` as nested lists. Raises :class:`SegdeepError` if no pixel was scored.
    """
    by_reason = None
    if isinstance(matrix, ConfusionMatrix):
        by_reason = dict(matrix.ignored_by_reason)
        if ignored_pixels is None:
            ignored_pixels = matrix.ignored_pixels
        matrix = matrix.matrix
    n = np.asarray(matrix)
    if n.ndim != 2 or n.shape[0] != n.shape[1] or n.shape[0] == 0:
        raise ValueError(f"a confusion matrix must be square K x K, got shape {n.shape}")
    if not np.issubdtype(n.dtype, np.integer) or (n < 0).any():
        raise ValueError("a confusion matrix holds non-negative integer pixel counts")
    n = n.astype(np.int64)
    k = n.shape[0]
    names = _class_names(class_names, k)
    ignored = int(ignored_pixels or 0)
    total = int(n.sum())
    if total == 0:
        raise SegdeepError(
            f"nothing to score: no pixel has both a reference class and a prediction "
            f"({ignored} pixels were nodata, outside the valid area or ignore index)"
        )
    diag = np.diag(n)
    support = n.sum(axis=1)
    predicted = n.sum(axis=0)
    classes = []
    for i in range(k):
        tp, t, p = int(diag[i]), int(support[i]), int(predicted[i])
        classes.append({
            "index": i,
            "name": names[i],
            "iou": _ratio(tp, t + p - tp),
            "accuracy": _ratio(tp, t),
            "precision": _ratio(tp, p),
            "f1": _ratio(2 * tp, t + p),
            "support": t,
            "predicted": p,
            "absent": t == 0 and p == 0,
        })
    ious = [c["iou"] for c in classes if c["iou"] is not None]
    accs = [c["accuracy"] for c in classes if c["accuracy"] is not None]
    fw = sum(c["support"] * c["iou"] for c in classes if c["support"] > 0) / total
    result = {
        "pixel_accuracy": float(diag.sum()) / total,
        "mean_accuracy": float(np.mean(accs)),
        "mean_iou": float(np.mean(ious)),
        "frequency_weighted_iou": float(fw),
        "num_pixels": total,
        "ignored_pixels": ignored,
        "classes": classes,
        "confusion_matrix": n.tolist(),
        "classes_in_mean_iou": len(ious),
        "classes_in_mean_accuracy": len(accs),
    }
    if by_reason is not None:
        result["ignored_by_reason"] = by_reason
    return result
