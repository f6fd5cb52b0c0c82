"""Export widget: a Labels layer -> label GeoTIFF, polygons (GeoPackage/GeoJSON/Shapefile), report.

Everything is segdeep's: :func:`segdeep.io.raster.write_labels` (georeference, colours, class names,
COG), :func:`segdeep.export.vectorize.vectorize_raster` (seam-free polygons, simplification, minimum area,
one layer per class, QGIS styles) and the report of :mod:`segdeep.evaluate.report` when a reference is chosen.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import napari
from qtpy.QtWidgets import (
    QCheckBox,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QWidget,
)
from segdeep.errors import SegdeepError

from ._layers import labels_array, layer_classes
from ._sample_data import cache_dir
from ._scoring import iter_scores, reference_labels
from ._widgets_common import LayerCombo, dock_layout, is_prediction
from ._workers import Job, Outcome, guarded
from ._writer import layer_georef


class ExportWidget(QWidget):
    """Dock widget: label GeoTIFF path, polygon path and options, optional report; Export."""

    def __init__(self, napari_viewer: napari.viewer.Viewer) -> None:
        super().__init__()
        self.viewer = napari_viewer
        self.job: Job | None = None
        self.last_outcome: Outcome | None = None
        self.written: list[str] = []
        base = cache_dir() / "exports"

        self.labels = LayerCombo(napari_viewer, "labels", prefer=is_prediction)
        self.raster = self._path_row(str(base / "labels.tif"), "Label GeoTIFF (*.tif)")
        self.vector = self._path_row(str(base / "labels.gpkg"), "Polygons (*.gpkg *.geojson *.shp)")
        self.simplify = QDoubleSpinBox()
        self.simplify.setRange(0, 1000)
        self.simplify.setDecimals(2)
        self.simplify.setSuffix(" CRS units")
        self.min_area = QDoubleSpinBox()
        self.min_area.setRange(0, 1e9)
        self.min_area.setDecimals(1)
        self.min_area.setSuffix(" m²")
        self.layer_per_class = QCheckBox("one layer per class")
        self.reference = LayerCombo(napari_viewer, "labels", optional=True, avoid=self.labels,
                                    prefer=lambda lay: not is_prediction(lay))
        self.reference_file = QLineEdit()
        self.reference_file.setPlaceholderText("or a reference label file")
        self.report_dir = QLineEdit(str(base / "report"))
        form = QFormLayout()
        form.addRow("Labels", self.labels)
        form.addRow("GeoTIFF (empty: skip)", self.raster[0])
        form.addRow("Polygons (empty: skip)", self.vector[0])
        form.addRow("Simplify", self.simplify)
        form.addRow("Minimum area", self.min_area)
        form.addRow(self.layer_per_class)
        form.addRow("Reference layer", self.reference)
        form.addRow("Reference file", self.reference_file)
        form.addRow("Report folder", self.report_dir)
        self.run_button = QPushButton("Export")
        self.run_button.clicked.connect(lambda: self.run())
        self.status = QLabel("")
        self.status.setWordWrap(True)
        dock_layout(self, [form], [self.run_button, self.status])

    def _path_row(self, default: str, filter_: str):
        edit = QLineEdit(default)
        button = QPushButton("…")
        button.clicked.connect(lambda: self._save_as(edit, filter_))
        row = QHBoxLayout()
        row.addWidget(edit)
        row.addWidget(button)
        holder = QWidget()
        holder.setLayout(row)
        row.setContentsMargins(0, 0, 0, 0)
        return holder, edit

    def _save_as(self, edit: QLineEdit, filter_: str) -> None:
        path, _ = QFileDialog.getSaveFileName(self, "Export to", edit.text(), filter_)
        if path:
            edit.setText(path)

    @guarded
    def run(self) -> None:
        """Write the chosen outputs in a worker thread."""
        from segdeep.export import vectorize_raster
        from segdeep.io import write_labels

        if self.job is not None and self.job.running:
            raise SegdeepError("an export is already running")
        layer = self.labels.layer()
        labels = labels_array(layer.data)
        classes = layer_classes(layer)
        crs, transform = layer_georef({"metadata": layer.metadata, "translate": layer.translate})
        raster = self.raster[1].text().strip()
        vector = self.vector[1].text().strip()
        ref_layer = self.reference.layer(required=False)
        ref_path = self.reference_file.text().strip()
        ref = None
        if ref_layer is not None or ref_path:
            ref = reference_labels(layer, classes, ref_layer=ref_layer, ref_path=None if ref_layer else ref_path)
        report_dir = self.report_dir.text().strip()
        if not (raster or vector or ref is not None):
            raise SegdeepError("nothing to export: give a GeoTIFF path, a polygon path or a reference")
        for p in (raster, vector):
            if p:
                Path(p).parent.mkdir(parents=True, exist_ok=True)
        options = dict(simplify=self.simplify.value(), min_area=self.min_area.value(),
                       layer_per_class=self.layer_per_class.isChecked(), classes=classes)

        def work():  # progress in hundredths of a stage: label GeoTIFF, polygons, report
            written = []
            stages = 1 + bool(vector) + (ref is not None)
            total = 100 * stages
            yield 0, total
            with tempfile.TemporaryDirectory(prefix="segdeep-export-") as tmp:
                cog = Path(raster) if raster else Path(tmp) / "labels.tif"
                write_labels(cog, labels, crs=crs, transform=transform, classes=classes)
                if raster:
                    written.append(str(cog))
                yield 100, total
                if vector:
                    summary = vectorize_raster(cog, vector, **options)
                    written += summary["files"]
                    yield 200, total
            if ref is not None:
                base = total - 100
                scorer = iter_scores(labels, ref, classes, out_dir=report_dir or None,
                                     inputs={"prediction": raster or f"layer {layer.name}",
                                             "reference": f"layer {ref_layer.name}" if ref_layer else ref_path})
                while True:
                    try:
                        done, steps = next(scorer)
                    except StopIteration as stop:
                        _scores, paths, _png = stop.value
                        break
                    yield base + 100 * done // steps, total
                written += [str(p) for p in paths.values()]
            return written

        self.run_button.setEnabled(False)
        self.status.setText("exporting…")
        self.job = Job(work, desc=f"Export {layer.name}", on_end=self._done, progress_of=lambda e: e)

    def _done(self, outcome: Outcome) -> None:
        self.last_outcome = outcome
        self.run_button.setEnabled(True)
        if outcome.state != "done":
            self.status.setText(f"error: {outcome.message}" if outcome.state == "error" else outcome.state)
            return
        self.written = list(outcome.value)
        self.status.setText("written:\n" + "\n".join(self.written))
