"""Refining a label array that a person is editing: dense CRF and clean-up, in memory, by blocks.

:func:`iter_refine_labels` is what the napari Refine widget runs in a worker thread: the labels
(e.g. a model's output corrected with a brush) are turned into class probabilities with
:func:`segdeep.crf.dense.unary_from_labels`, refined with the dense CRF against the image's colours
(:mod:`segdeep.crf.colour`) block by block (each block with a halo of context, so memory depends on
the block size), cleaned up (:func:`segdeep.refine.postprocess.postprocess`), and only the pixels
inside ``window`` change. It yields ``(blocks_done, blocks_total)`` and returns the new labels;
closing it stops after the current block.
"""

from __future__ import annotations

from collections.abc import Generator

import numpy as np

from ..classes import NODATA_LABEL
from ..crf.colour import Limits, crf_colours
from ..crf.dense import CRFParams, block_windows
from ..errors import SegdeepError
from ..runtime import drain
from .postprocess import postprocess
from .raster import refine_array


def _window(window, height: int, width: int) -> tuple[int, int, int, int]:
    if window is None:
        return 0, 0, width, height
    c, r, w, h = (int(v) for v in window)
    c0, r0 = max(0, c), max(0, r)
    c1, r1 = min(width, c + w), min(height, r + h)
    if c1 <= c0 or r1 <= r0:
        raise SegdeepError(f"window {tuple(window)} (col, row, width, height) does not overlap the "
                           f"labels ({width} x {height} px)")
    return c0, r0, c1 - c0, r1 - r0


def iter_refine_labels(
    image: np.ndarray,
    labels: np.ndarray,
    params: CRFParams | None = None,
    *,
    num_classes: int,
    crf: bool = True,
    confidence: float = 0.7,
    min_region_px: int = 0,
    fill_holes_px: int = 0,
    window: tuple[int, int, int, int] | None = None,
    block_size: int = 1024,
    halo: int | None = None,
    device=None,
    colour_limits: Limits | None = None,
    image_valid: np.ndarray | None = None,
) -> Generator[tuple[int, int], None, np.ndarray]:
    """Refine ``labels`` (H x W uint8 class indices, 255 = nodata) against ``image`` (bands x H x W).

    ``crf``: run the dense CRF (``params``, ``confidence`` = probability given to the drawn class);
    ``min_region_px`` / ``fill_holes_px``: merge regions / fill holes up to that many pixels (0 =
    off). ``window`` = (col, row, width, height) in pixels: only those pixels change (the CRF and
    clean-up still see ``halo`` pixels of context around it; default: the CRF's halo, at least the
    clean-up size). The CRF's colours follow :mod:`segdeep.crf.colour`: 8-bit images as they are,
    others stretched with ``colour_limits`` (the statistics of the whole image the array was cut from,
    e.g. :func:`segdeep.crf.colour.read_colour_limits` of its file; default: those of ``image``
    over ``image_valid``, bool H x W, False = nodata). Yields ``(blocks_done, blocks_total)``;
    returns a new uint8 array (the input is not modified).
    """
    labels = np.asarray(labels)
    if labels.ndim != 2:
        raise SegdeepError(f"labels must be height x width, got shape {labels.shape}")
    height, width = labels.shape
    if crf:
        colours = crf_colours(image, valid=image_valid, limits=colour_limits)
        if colours.shape[1:] != labels.shape:
            raise SegdeepError(f"image is {colours.shape[2]} x {colours.shape[1]} px but the labels are "
                               f"{width} x {height} px; they must cover the same pixels")
    bad = (labels != NODATA_LABEL) & (labels >= num_classes)
    if bad.any():
        raise SegdeepError(f"label value {int(labels[bad][0])} is not a class (0-{num_classes - 1}) nor "
                           f"nodata ({NODATA_LABEL})")
    if block_size < 64:
        raise SegdeepError(f"block_size must be >= 64 pixels, got {block_size}")
    params = params or CRFParams()
    c0, r0, w, h = _window(window, height, width)
    if halo is None:
        halo = max(params.halo if crf else 0, int(np.ceil(np.sqrt(max(min_region_px, fill_holes_px, 0)))) + 2)
    out = labels.astype(np.uint8, copy=True)
    blocks = list(block_windows(h, w, block_size, 0))
    for i, ((br, bc, bh, bw), _) in enumerate(blocks):
        rows = (r0 + br, r0 + br + bh)
        cols = (c0 + bc, c0 + bc + bw)
        rr, cc = max(0, rows[0] - halo), max(0, cols[0] - halo)
        re, ce = min(height, rows[1] + halo), min(width, cols[1] + halo)
        src = labels[rr:re, cc:ce].astype(np.uint8)
        if crf:
            valid = src != NODATA_LABEL
            refined = refine_array(colours[:, rr:re, cc:ce], src, params, kind="labels", num_classes=num_classes,
                                   confidence=confidence, valid=valid, device=device)
        else:
            refined = src
        refined = postprocess(refined, min_region_px=int(min_region_px), fill_holes_px=int(fill_holes_px))
        out[rows[0]:rows[1], cols[0]:cols[1]] = refined[rows[0] - rr:rows[1] - rr, cols[0] - cc:cols[1] - cc]
        yield i + 1, len(blocks)
    return out


def refine_labels(image: np.ndarray, labels: np.ndarray, params: CRFParams | None = None, **kwargs) -> np.ndarray:
    """Run :func:`iter_refine_labels` to the end and return the refined labels."""
    return drain(iter_refine_labels(image, labels, params, **kwargs))
