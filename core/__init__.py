"""segdeep: semantic segmentation of large aerial and satellite rasters.

The engine. It never imports Qt, qtpy, magicgui or napari; the napari plugin is ``napari_segdeep``.
Heavy parts (torch models, inference) are imported lazily so that ``import segdeep`` stays quick.
"""

from __future__ import annotations

from .lazy import lazy_exports

__version__ = "0.1.0"

# Public name -> the subpackage (or flat module) that exports it (imported on first use).
_LAZY = {
    "SegdeepError": "errors",
    "ClassInfo": "classes",
    "DUBAI_CLASSES": "classes",
    "decode_rgb_mask": "classes",
    "open_raster": "io",
    "read_window": "io",
    "write_labels": "io",
    "rasterize_reference": "io",
    "VectorReference": "io",
    "open_labels": "io",
    "ConfusionMatrix": "evaluate",
    "scores": "evaluate",
    "write_report": "evaluate",
    "validate_report_json": "evaluate",
    "evaluate_rasters": "evaluate",
    "write_preview": "export",
    "vectorize_raster": "export",
    "make_sample_scene": "sample",
    "load_classes": "models",
    "create_model": "models",
    "list_models": "models",
    "register_model": "models",
    "load_bundle": "models",
    "save_bundle": "models",
    "ModelCard": "models",
    "read_card": "models",
    "import_torchvision_checkpoint": "models",
    "export_onnx": "models",
    "dense_crf": "crf",
    "CRFParams": "crf",
    "dense_crf_params": "crf",
    "dense_crf_blocks": "crf",
    "unary_from_labels": "crf",
    "refine_raster": "refine",
    "refine_labels": "refine",
    "iter_refine_labels": "refine",
    "remove_small_regions": "refine",
    "fill_holes": "refine",
    "majority_filter": "refine",
    "iter_predict": "predict",
    "predict_raster": "predict",
    "predict_array": "predict",
    "PredictResult": "predict",
    "predict_distributed": "distributed",
    "evaluate_distributed": "distributed",
    "vectorize_distributed": "distributed",
    "train": "training",
    "train_arrays": "training",
    "iter_train": "training",
    "iter_train_arrays": "training",
    "TrainConfig": "training",
}

__all__ = sorted(_LAZY) + ["__version__"]


__getattr__, _ = lazy_exports(__name__, _LAZY)


def __dir__() -> list[str]:
    return __all__
