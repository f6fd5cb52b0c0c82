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
    "open_raster": "raster",
    "read_window": "raster",
    "write_labels": "raster",
    "ConfusionMatrix": "metrics",
    "scores": "metrics",
    "write_report": "report",
    "validate_report_json": "report",
    "rasterize_reference": "rasterize",
    "VectorReference": "rasterize",
    "write_preview": "preview",
    "open_labels": "label_sources",
    "evaluate_rasters": "evaluate",
    "make_sample_scene": "sample",
    "create_model": "models.registry",
    "list_models": "models.registry",
    "register_model": "models.registry",
    "load_bundle": "models.bundle",
    "save_bundle": "models.bundle",
    "ModelCard": "models.bundle",
    "read_card": "models.bundle",
    "import_torchvision_checkpoint": "models.bundle",
    "export_onnx": "onnx_export",
    "dense_crf": "crf",
    "CRFParams": "crf",
    "dense_crf_params": "crf",
    "dense_crf_blocks": "crf",
    "unary_from_labels": "crf",
    "refine_raster": "refine",
    "refine_labels": "edit",
    "iter_refine_labels": "edit",
    "remove_small_regions": "postprocess",
    "fill_holes": "postprocess",
    "majority_filter": "postprocess",
    "iter_predict": "inference",
    "predict_raster": "inference",
    "predict_array": "inference",
    "PredictResult": "inference",
    "predict_distributed": "distributed",
    "evaluate_distributed": "distributed",
    "vectorize_distributed": "distributed",
    "vectorize_raster": "vectorize",
    "train": "training",
    "train_arrays": "training",
    "iter_train": "training",
    "iter_train_arrays": "training",
    "TrainConfig": "training",
}

__all__ = sorted(_LAZY) + ["__version__"]


def __getattr__(name: str):
    if name in _LAZY:
        module = importlib.import_module(f".{_LAZY[name]}", __name__)
        return getattr(module, name)
    raise AttributeError(f"module 'segdeep' has no attribute {name!r}")


def __dir__():
    return __all__
