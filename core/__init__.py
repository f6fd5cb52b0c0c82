"""segdeep: semantic segmentation of large aerial and satellite rasters.

The engine. It never imports Qt, qtpy, magicgui or napari; the napari plugin is ``napari_segdeep``.
Heavy parts (torch models, inference) are imported lazily so that ``import segdeep`` stays quick.
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

# Public name -> module that defines it (imported on first use).
_LAZY = {
    "SegdeepError": "errors",
    "ClassInfo": "classes",
    "DUBAI_CLASSES": "classes",
    "load_classes": "classes",
    "decode_rgb_mask": "classes",
    "open_raster": "io.raster",
    "read_window": "io.raster",
    "write_labels": "io.raster",
    "ConfusionMatrix": "evaluate.metrics",
    "scores": "evaluate.metrics",
    "write_report": "evaluate.report",
    "validate_report_json": "evaluate.report",
    "rasterize_reference": "io.rasterize",
    "VectorReference": "io.rasterize",
    "write_preview": "export.preview",
    "open_labels": "io.label_sources",
    "evaluate_rasters": "evaluate.rasters",
    "make_sample_scene": "sample.scene",
    "create_model": "models.registry",
    "list_models": "models.registry",
    "register_model": "models.registry",
    "load_bundle": "models.bundle",
    "save_bundle": "models.bundle",
    "ModelCard": "models.bundle",
    "read_card": "models.bundle",
    "import_torchvision_checkpoint": "models.bundle",
    "export_onnx": "models.onnx",
    "dense_crf": "crf.dense",
    "CRFParams": "crf.dense",
    "dense_crf_params": "crf.dense",
    "dense_crf_blocks": "crf.dense",
    "unary_from_labels": "crf.dense",
    "refine_raster": "refine.raster",
    "refine_labels": "refine.labels",
    "iter_refine_labels": "refine.labels",
    "remove_small_regions": "refine.postprocess",
    "fill_holes": "refine.postprocess",
    "majority_filter": "refine.postprocess",
    "iter_predict": "predict.run",
    "predict_raster": "predict.run",
    "predict_array": "predict.run",
    "PredictResult": "predict.run",
    "predict_distributed": "distributed.run",
    "evaluate_distributed": "distributed.run",
    "vectorize_distributed": "distributed.run",
    "vectorize_raster": "export.vectorize",
    "train": "training.loop",
    "train_arrays": "training.loop",
    "iter_train": "training.loop",
    "iter_train_arrays": "training.loop",
    "TrainConfig": "training.loop",
}

__all__ = sorted(_LAZY) + ["__version__"]


def __getattr__(name: str):
    if name in _LAZY:
        module = importlib.import_module(f".{_LAZY[name]}", __name__)
        return getattr(module, name)
    raise AttributeError(f"module 'segdeep' has no attribute {name!r}")


def __dir__():
    return __all__
