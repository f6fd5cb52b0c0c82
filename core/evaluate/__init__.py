"""Scoring a prediction against a reference, with no torch: a streaming confusion matrix (memory
independent of the raster's size), the four scores of Long et al. (pixel accuracy, mean accuracy,
mean IU, frequency-weighted IU) with per-class IoU, block-by-block evaluation of two rasters (or a
raster against a vector reference), and the report files (JSON, CSV, Markdown, HTML, PNG charts).
"""

from .metrics import ConfusionMatrix, scores
from .rasters import (
    check_aligned,
    evaluate_rasters,
    open_pair,
    pick_classes,
    result_dict,
    score_windows,
    window_confusion,
)
from .report import (
    REPORT_FILES,
    confusion_png,
    per_class_iou_png,
    report_notes,
    validate_report_json,
    write_report,
)

__all__ = [
    "REPORT_FILES", "ConfusionMatrix", "check_aligned", "confusion_png", "evaluate_rasters", "open_pair", "per_class_iou_png",
    "pick_classes", "report_notes", "result_dict", "score_windows", "scores", "validate_report_json",
    "window_confusion", "write_report",
]
