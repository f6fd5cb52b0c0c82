"""Evaluate widget: a Labels layer against reference labels -> scores, per-class table, confusion matrix.

The four FCN scores and the per-class figures come from :func:`segdeep.evaluate.metrics.scores`; the
confusion-matrix picture is :func:`segdeep.evaluate.report.confusion_png`; the report files (JSON, CSV,
Markdown, HTML, PNGs) are written by :func:`segdeep.evaluate.report.write_report` into the chosen folder.
"""

from __future__ import annotations

import napari
from qtpy.QtCore import Qt
from qtpy.QtGui import QPixmap
from qtpy.QtWidgets import (
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QWidget,
)
from segdeep.errors import SegdeepError

from ._layers import labels_array, layer_classes
from ._sample_data import cache_dir
from ._scoring import check_not_self, iter_scores, reference_labels
from ._widgets_common import LayerCombo, dock_layout, is_prediction
from ._workers import Job, Outcome, guarded

SCORE_NAMES = (("pixel_accuracy", "Pixel accuracy"), ("mean_accuracy", "Mean accuracy"),
               ("mean_iou", "Mean IoU"), ("frequency_weighted_iou", "Frequency-weighted IoU"))
CLASS_COLUMNS = (("name", "Class"), ("iou", "IoU"), ("accuracy", "Recall"), ("precision", "Precision"),
                 ("f1", "F1"), ("support", "Ref. px"), ("predicted", "Pred. px"))


def _count(n: int) -> str:
    """A pixel count short enough for a narrow dock: 950, 403.5k, 1.11M (exact value in the tooltip)."""
    if n < 10_000:
        return f"{n:,}"
    if n < 1_000_000:
        return f"{n / 1e3:.1f}k"
    return f"{n / 1e6:.3g}M"


def _folder_name(text: str) -> str:
    """A report folder name from layer names: one per (labels, reference) pair, so scoring against
    another reference never overwrites a report."""
    return "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in text)


def _pct(v) -> str:
    return "—" if v is None else f"{100 * v:.1f}%"


class EvaluateWidget(QWidget):
    """Dock widget: labels, reference (layer or file), report folder; Evaluate; results."""

    def __init__(self, napari_viewer: napari.viewer.Viewer) -> None:
        super().__init__()
        self.viewer = napari_viewer
        self.job: Job | None = None
        self.last_outcome: Outcome | None = None
        self.result: dict | None = None
        self.report_paths: dict = {}

        self.labels = LayerCombo(napari_viewer, "labels", prefer=is_prediction)
        self.reference = LayerCombo(napari_viewer, "labels", optional=True, avoid=self.labels,
                                    prefer=lambda lay: not is_prediction(lay))
        self.reference_file = QLineEdit()
        self.reference_file.setPlaceholderText("or a reference label file (GeoTIFF, mask)")
        pick = QPushButton("…")
        pick.clicked.connect(lambda: self._pick_file())
        ref_row = QHBoxLayout()
        ref_row.addWidget(self.reference_file)
        ref_row.addWidget(pick)
        self.out_dir = QLineEdit()
        self.out_dir.setPlaceholderText("report folder (empty: no files)")
        self.out_dir.setText(str(cache_dir() / "reports"))
        form = QFormLayout()
        form.addRow("Labels", self.labels)
        form.addRow("Reference layer", self.reference)
        form.addRow("Reference file", ref_row)
        form.addRow("Report folder", self.out_dir)

        self.run_button = QPushButton("Evaluate")
        self.run_button.clicked.connect(lambda: self.run())
        self.summary = QTableWidget(len(SCORE_NAMES), 2)
        self.summary.setHorizontalHeaderLabels(["Score", "Value"])
        self.summary.verticalHeader().setVisible(False)
        self.summary.setMaximumHeight(150)
        self.table = QTableWidget(0, len(CLASS_COLUMNS))
        self.table.setHorizontalHeaderLabels([c[1] for c in CLASS_COLUMNS])
        self.table.verticalHeader().setVisible(False)
        self.confusion = QLabel()
        self.confusion.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.status = QLabel("")
        self.status.setWordWrap(True)
        self.status.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)

        dock_layout(self, [form, self.summary, self.table, self.confusion], [self.run_button, self.status])

    def _pick_file(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Reference labels", "", "Rasters and vectors (*.tif *.tiff *.png *.vrt *.gpkg *.geojson *.shp);;All (*)")
        if path:
            self.reference_file.setText(path)
            self.reference.setCurrentText("(none)")

    @guarded
    def run(self) -> None:
        """Score the labels against the reference in a worker thread and show the results."""
        if self.job is not None and self.job.running:
            raise SegdeepError("an evaluation is already running")
        layer = self.labels.layer()
        classes = layer_classes(layer)
        ref_layer = self.reference.layer(required=False)
        ref_path = self.reference_file.text().strip() or None
        check_not_self(layer, ref_layer=ref_layer)
        if ref_layer is None and not ref_path:
            raise SegdeepError("no reference: choose a reference Labels layer or a label file")
        pred = labels_array(layer.data)

        def ref():  # read in the worker: a large reference file takes a while
            return reference_labels(layer, classes, ref_layer=ref_layer, ref_path=None if ref_layer else ref_path)

        out = self.out_dir.text().strip() or None
        if out:
            from pathlib import Path

            ref_name = ref_layer.name if ref_layer else Path(ref_path).stem
            out = str(Path(out) / _folder_name(f"{layer.name} vs {ref_name}"))
        inputs = {"prediction": f"layer {layer.name}",
                  "reference": f"layer {ref_layer.name}" if ref_layer else str(ref_path)}
        self.run_button.setEnabled(False)
        self.status.setText("reading the reference…")
        self.job = Job(lambda: iter_scores(pred, ref, classes, out_dir=out, inputs=inputs),
                       desc=f"Evaluate {layer.name}", on_end=self._done, progress_of=lambda e: e,
                       on_event=self._progress)

    def _progress(self, event) -> None:
        done, total = event
        self.status.setText("reading the reference…" if done == 0 else f"scoring… step {done} / {total}")

    def _done(self, outcome: Outcome) -> None:
        self.last_outcome = outcome
        self.run_button.setEnabled(True)
        if outcome.state != "done":
            self.status.setText(f"error: {outcome.message}" if outcome.state == "error" else outcome.state)
            return
        self.result, self.report_paths, png = outcome.value
        self.show_result(self.result, png)
        where = self.report_paths.get("html")
        self.status.setText(f"report: {where.parent}" if where else "no report files (no folder given)")

    def show_result(self, result: dict, png: bytes) -> None:
        """Fill the score table, the per-class table and the confusion-matrix picture."""
        for i, (key, name) in enumerate(SCORE_NAMES):
            self.summary.setItem(i, 0, QTableWidgetItem(name))
            self.summary.setItem(i, 1, QTableWidgetItem(_pct(result[key])))
        rows = [c for c in result["classes"] if not c.get("absent")]
        self.table.setRowCount(len(rows))
        for r, c in enumerate(rows):
            for j, (key, _) in enumerate(CLASS_COLUMNS):
                v = c[key]
                counts = key in ("support", "predicted")
                text = v if key == "name" else (_count(v) if counts else _pct(v))
                item = QTableWidgetItem(str(text))
                if counts:
                    item.setToolTip(f"{v:,} pixels ({'reference' if key == 'support' else 'prediction'})")
                if key != "name":
                    item.setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
                self.table.setItem(r, j, item)
        self.table.resizeColumnsToContents()
        pixmap = QPixmap()
        pixmap.loadFromData(png, "PNG")
        self.confusion.setPixmap(pixmap.scaledToWidth(min(420, pixmap.width()),
                                                      Qt.TransformationMode.SmoothTransformation))
