"""Where to look first: per-pixel uncertainty from class probabilities and the least certain regions.

The uncertainty is one minus the margin between the two most probable classes (0 = one class is
certain, 1 = a tie). Regions are connected groups of uncertain pixels, ranked by their summed
uncertainty, so an annotator can step through them, worst first. No torch.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from ..errors import SegdeepError

__all__ = ["UncertainRegion", "margin_uncertainty", "uncertain_regions"]


def margin_uncertainty(probabilities: np.ndarray) -> np.ndarray:
    """1 - (p_best - p_second) per pixel, float32 H x W in 0..1, from ``probabilities`` (classes x H
    x W; floats 0..1, or uint8 0..255 as segdeep writes them). Pixels whose probabilities are all
    zero (nodata) get 0."""
    p = np.asarray(probabilities)
    if p.ndim != 3 or p.shape[0] < 2:
        raise SegdeepError(f"probabilities must be classes x height x width with >= 2 classes, got shape {p.shape}")
    scale = 255.0 if p.dtype == np.uint8 else 1.0
    top2 = np.partition(p, p.shape[0] - 2, axis=0)[-2:].astype(np.float32) / scale
    out = 1.0 - (top2[1] - top2[0])
    out[top2[1] <= 0] = 0.0
    return np.clip(out, 0.0, 1.0).astype(np.float32)


@dataclass(frozen=True)
class UncertainRegion:
    """A connected group of uncertain pixels: bounding box (``col``, ``row``, ``width``, ``height``,
    pixels), centre (``center_row``, ``center_col``, pixels), ``area`` (pixels) and ``score`` (the
    summed uncertainty of its pixels)."""

    col: int
    row: int
    width: int
    height: int
    center_row: float
    center_col: float
    area: int
    score: float


def uncertain_regions(uncertainty: np.ndarray, *, threshold: float | None = None, min_area: int = 16,
                      limit: int = 100, share: float = 0.05) -> list[UncertainRegion]:
    """The regions where ``uncertainty`` (H x W, 0..1) is at least ``threshold``, of at least
    ``min_area`` pixels, ranked by summed uncertainty (largest first); at most ``limit``.

    ``threshold`` None: the least certain ``share`` of the pixels (at least 0.5), so a model that
    is unsure almost everywhere still gives separate places to look at, not one region."""
    u = np.asarray(uncertainty, dtype=np.float32)
    if u.ndim != 2:
        raise SegdeepError(f"uncertainty must be height x width, got shape {u.shape}")
    if threshold is None:
        threshold = max(0.5, float(np.quantile(u, 1.0 - share))) if u.size else 0.5
        mask = u >= threshold
        if mask.mean() > share:  # a plateau at the threshold: keep only what is above it
            mask = u > threshold
    elif not 0.0 <= threshold <= 1.0:
        raise SegdeepError(f"threshold must be between 0 and 1, got {threshold}")
    else:
        mask = u >= threshold
    labels, n = ndimage.label(mask)
    if n == 0:
        return []
    index = np.arange(1, n + 1)
    areas = ndimage.sum_labels(np.ones_like(u), labels, index)
    scores = ndimage.sum_labels(u, labels, index)
    centres = ndimage.center_of_mass(np.ones_like(u), labels, index)
    boxes = ndimage.find_objects(labels)
    out = [UncertainRegion(col=b[1].start, row=b[0].start, width=b[1].stop - b[1].start,
                           height=b[0].stop - b[0].start, center_row=float(c[0]), center_col=float(c[1]),
                           area=int(a), score=float(s))
           for b, c, a, s in zip(boxes, centres, areas, scores, strict=True) if a >= min_area]
    out.sort(key=lambda r: -r.score)
    return out[:limit]
