"""Learning from a few strokes: sparse labels (a few brush strokes per class, everything unpainted
unknown) adapt a model to one image in seconds.

:func:`iter_learn_strokes` fine-tunes a bundle on the painted pixels only (unpainted = 255, ignored
by the loss) with settings made for this loop (short time budget, small batches, no warm-up).
:func:`simulate_strokes` paints strokes the way a person does, from a truth map: the benchmark's
protocol (``benchmarks/strokes.py``) and the tests use it.
"""

from __future__ import annotations

from collections.abc import Generator
from pathlib import Path

import numpy as np
from scipy import ndimage

from ..classes import NODATA_LABEL
from ..errors import SegdeepError
from .config import TrainConfig
from .events import EpochDone, Started, Step, TrainResult
from .loop import iter_train_arrays

__all__ = ["iter_learn_strokes", "simulate_strokes", "stroke_config"]


def _disk(radius: int) -> np.ndarray:
    r = int(radius)
    yy, xx = np.mgrid[-r:r + 1, -r:r + 1]
    return yy ** 2 + xx ** 2 <= r ** 2


def simulate_strokes(truth: np.ndarray, seed: int, *, min_class_px: int = 2000, strokes_per_class: int = 3,
                     max_steps: int = 150, step_px: float = 2.0, max_turn_deg: float = 20.0,
                     brush_radius: int = 4, erode_radius: int = 6, max_fraction: float = 0.02) -> np.ndarray:
    """Strokes painted from ``truth`` (H x W uint8 class indices, 255 = unknown): uint8 H x W, the
    class under each stroke, 255 elsewhere.

    For each class with at least ``min_class_px`` pixels, ``strokes_per_class`` random walks of up
    to ``max_steps`` steps of ``step_px`` pixels, turning at most ``max_turn_deg`` degrees a step,
    start at a random pixel of the class mask eroded by a disk of ``erode_radius`` px and stop
    before leaving it; each is painted with a disk brush of ``brush_radius`` px, on pixels of that
    class only. At most ``max_fraction`` of the image is painted. ``seed`` makes it repeatable.
    """
    truth = np.asarray(truth)
    rng = np.random.default_rng(seed)
    h, w = truth.shape
    out = np.full(truth.shape, NODATA_LABEL, np.uint8)
    brush = _disk(brush_radius)
    limit = int(max_fraction * truth.size)
    for k in [int(c) for c in np.unique(truth) if c != NODATA_LABEL]:
        mask = truth == k
        if mask.sum() < min_class_px:
            continue
        inner = ndimage.binary_erosion(mask, structure=_disk(erode_radius))
        starts = np.argwhere(inner)
        if not len(starts):
            continue
        for _ in range(strokes_per_class):
            pos = starts[rng.integers(len(starts))].astype(float)
            angle = rng.uniform(0, 2 * np.pi)
            path = [pos.copy()]
            for _ in range(max_steps):
                angle += np.deg2rad(rng.uniform(-max_turn_deg, max_turn_deg))
                nxt = pos + step_px * np.array([np.sin(angle), np.cos(angle)])
                r, c = int(round(nxt[0])), int(round(nxt[1]))
                if not (0 <= r < h and 0 <= c < w and inner[r, c]):
                    break
                pos = nxt
                path.append(pos.copy())
            painted = np.zeros_like(mask)
            for r, c in np.round(path).astype(int):
                r0, c0 = r - brush_radius, c - brush_radius
                rs, cs = slice(max(0, r0), min(h, r0 + brush.shape[0])), slice(max(0, c0), min(w, c0 + brush.shape[1]))
                painted[rs, cs] |= brush[rs.start - r0:rs.stop - r0, cs.start - c0:cs.stop - c0]
            painted &= mask
            if (out != NODATA_LABEL).sum() + painted.sum() > limit:
                return out
            out[painted] = k
    return out


def stroke_config(seconds: float = 20.0, *, height: int, width: int, tile_size: int = 256,
                  batch_size: int = 4, lr: float = 1e-3, seed: int = 0) -> TrainConfig:
    """Training settings for the stroke loop: ``seconds`` of training (wall time), tiles of at most
    ``tile_size`` px that fit the image (``height`` x ``width`` px), no warm-up, no validation."""
    tile = min(int(tile_size), (min(int(height), int(width)) // 32) * 32)
    if tile < 32:
        raise SegdeepError(f"image is {width} x {height} px; learning from strokes needs at least 32 x 32 px")
    return TrainConfig(tile_size=tile, batch_size=int(batch_size), time_budget=float(seconds) / 60.0, lr=float(lr),
                       warmup=0.0, seed=int(seed))


def iter_learn_strokes(image: np.ndarray, strokes: np.ndarray, *, init: str | Path, seconds: float = 20.0,
                       config: TrainConfig | None = None, out: str | Path | None = None,
                       ) -> Generator[Started | Step | EpochDone, None, TrainResult]:
    """Adapt the bundle ``init`` to ``image`` (bands x H x W, the card's bands) from ``strokes``
    (H x W uint8: class indices where painted, 255 unpainted = ignored) for ``seconds`` of wall
    time. Yields the training's progress events; returns its :class:`TrainResult` (the adapted
    model and card; written to ``out`` when given). Closing the generator cancels."""
    strokes = np.asarray(strokes)
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[1:] != strokes.shape:
        raise SegdeepError(f"strokes are {strokes.shape[::-1]} (w x h) but the image is {image.shape[:0:-1]}; "
                           "paint on a labels layer of the image's size")
    painted = int((strokes != NODATA_LABEL).sum())
    if painted == 0:
        raise SegdeepError("no strokes: paint a few strokes of each class to learn from (unpainted = unknown)")
    config = config or stroke_config(seconds, height=strokes.shape[0], width=strokes.shape[1])
    return (yield from iter_train_arrays([image], [strokes], init=init, config=config, out=out))
