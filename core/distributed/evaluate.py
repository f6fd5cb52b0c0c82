"""Evaluation on a Dask cluster: each block's confusion matrix is a task, the client adds them up."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from pathlib import Path

from ..evaluate.metrics import ConfusionMatrix
from ..evaluate.rasters import open_pair, result_dict, score_windows
from ..predict.journal import shared_path
from . import tasks
from .client import connect, ordered, window

__all__ = ["evaluate_distributed"]


def evaluate_distributed(prediction: str | Path, truth: str | Path, *, scheduler, classes=None,
                         ignore_index: int = 255, block_size: int = 2048, attribute: str | None = None,
                         progress: Callable[[int, int], None] | None = None, retries: int = 3) -> dict:
    """:func:`segdeep.evaluate.rasters.evaluate_rasters` with the blocks' confusion matrices computed on a Dask
    cluster and merged (:meth:`segdeep.evaluate.metrics.ConfusionMatrix.merge`); the same scores."""
    classes, pred, ref = open_pair(prediction, truth, classes=classes, ignore_index=ignore_index,
                                   block_size=block_size, attribute=attribute)
    cm = ConfusionMatrix(max(c.index for c in classes) + 1, ignore_index=ignore_index)
    windows = [(int(w.col_off), int(w.row_off), int(w.width), int(w.height))
               for w in score_windows(pred.info.width, pred.info.height, block_size)]
    p_path, t_path = shared_path(prediction), shared_path(truth)
    with connect(scheduler) as client:
        args = [(p_path, t_path, classes, ignore_index, attribute, w) for w in windows]
        for i, part in enumerate(ordered(client, tasks.confusion_block, args, window=window(client),
                                          retries=retries, prefix=f"segdeep-confusion-{uuid.uuid4().hex[:8]}")):
            cm.merge(part)
            if progress:
                progress(i + 1, len(windows))
    return result_dict(cm, classes, pred, ref)
