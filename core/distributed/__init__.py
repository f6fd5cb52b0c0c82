"""Prediction, evaluation and vectorizing on a Dask cluster (``tcp://host:8786`` or ``local:N``):
the client plans the run as an in-process one does, each block is a task (its worker loads the
bundle once, computes the block and writes a part GeoTIFF), and the client assembles the parts into
the same final files (COG by GDAL, report, preview, polygons, run.json). The labels are identical to
an in-process run's.

Names are imported on first use (Dask and torch are heavy, and Dask is an optional extra).
"""

from __future__ import annotations

from ..lazy import lazy_exports

# Public name -> module of this package that defines it (imported on first use).
_LAZY = {
    "connect": "client",
    "evaluate_distributed": "evaluate",
    "iter_polygons_distributed": "vectorize",
    "iter_predict_distributed": "run",
    "predict_distributed": "run",
    "vectorize_distributed": "vectorize",
}

__all__ = sorted(_LAZY)


__getattr__, __dir__ = lazy_exports(__name__, _LAZY)
