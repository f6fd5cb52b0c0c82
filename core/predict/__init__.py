"""The main job: segmenting a raster of any size with a model bundle, one module per stage: config
(the settings, checked) -> plan (blocks and the global tile grid) -> source (block reads) -> tiles ->
engine (batches through the model, blended softmax; fusion: test-time scales and flips) -> optional
dense CRF -> sinks (label GeoTIFF, probabilities, confusion matrix); journal (resume an interrupted run), finish (COG, preview,
run.json) and events (the progress the run yields). :func:`iter_predict` is the generator;
:func:`predict_raster` and :func:`predict_array` drain it.

Names are imported on first use (the engine needs torch).
"""

from __future__ import annotations

from ..lazy import lazy_exports

# Public name -> module of this package that defines it (imported on first use).
_LAZY = {
    "iter_predict": "run",
    "predict_array": "run",
    "predict_raster": "run",
    "PredictConfig": "config",
    "BlockDone": "events",
    "ClusterReady": "events",
    "Finishing": "events",
    "PredictResult": "events",
    "PredictStarted": "events",
    "TilesDone": "events",
    "Rect": "tiles",
    "TileGrid": "tiles",
    "BlockGrid": "tiles",
    "plan_run": "plan",
    "TestTimeFusion": "fusion",
    "fused_probabilities": "fusion",
    "parse_scales": "fusion",
}

__all__ = sorted(_LAZY)


__getattr__, __dir__ = lazy_exports(__name__, _LAZY)
