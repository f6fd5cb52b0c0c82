"""Training and fine-tuning a model on image / label rasters (or arrays): the settings
(:class:`TrainConfig`), the data (random windows, augmentation, band statistics, class weights,
labels from rasters, colour masks or vector files), the loop (mixed precision, warm-up, checkpoints
and resume, a time budget) with its progress events, and validation scores written to the bundle's
card. :func:`iter_train` is the generator; :func:`train` and :func:`train_arrays` drain it.

Names are imported on first use (training needs torch).
"""

from __future__ import annotations

from ..lazy import lazy_exports

# Public name -> module of this package that defines it (imported on first use).
_LAZY = {
    "TrainConfig": "config",
    "EpochDone": "events",
    "Started": "events",
    "Step": "events",
    "TrainResult": "events",
    "TrainSource": "data",
    "find_pairs": "data",
    "checkpoint_path": "loop",
    "iter_train": "loop",
    "iter_train_arrays": "loop",
    "iter_learn_strokes": "strokes",
    "simulate_strokes": "strokes",
    "stroke_config": "strokes",
    "open_sources": "loop",
    "train": "loop",
    "train_arrays": "loop",
}

__all__ = sorted(_LAZY)


__getattr__, __dir__ = lazy_exports(__name__, _LAZY)
