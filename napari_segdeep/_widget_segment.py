"""Segment widget: run a segdeep model bundle on an image layer, with progress and cancel.

The work is :func:`segdeep.predict.run.iter_predict` on the layer's source file (or on a temporary
GeoTIFF of an in-memory layer), in a worker thread; Cancel closes the generator, which stops within
one batch. The result is a Labels layer with the model's class names and colours and the
georeference of the region that was segmented (and optionally a per-class probability layer).
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import napari
from qtpy.QtCore import Qt
from qtpy.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)
from segdeep.errors import SegdeepError

from ._cursor import show_cursor_readout
from ._layers import (
    georef_metadata,
    labels_layer_kwargs,
    placement,
    region_metadata,
    source_file,
    visible_window,
    write_layer_geotiff,
)
from ._sample_data import cache_dir, default_bundle
from ._widgets_common import (
    LayerCombo,
    card_html,
    dock_layout,
    fold_when_unchecked,
    read_bundle_card,
)
from ._workers import Job, Outcome, guarded, notify_info


def _devices() -> list[str]:
    import torch

    names = ["auto", "cpu"]
    if torch.cuda.is_available():
        names += ["cuda"] + [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    return names


class SegmentWidget(QWidget):
    """Dock widget: model bundle, device, tiling, CRF, region; Run / Cancel."""

    def __init__(self, napari_viewer: napari.viewer.Viewer) -> None:
        super().__init__()
        self.viewer = napari_viewer
        show_cursor_readout(napari_viewer)
        self.job: Job | None = None
        self.card = None
        self.result_layer = None
        self.last_outcome: Outcome | None = None
        self.last_started = None

        # --- model
        self.bundle = QLineEdit()
        self.bundle.setPlaceholderText("model bundle (.safetensors)")
        browse = QPushButton("Browse…")
        browse.clicked.connect(lambda: self._browse())
        row = QHBoxLayout()
        row.addWidget(self.bundle)
        row.addWidget(browse)
        self.card_view = QLabel()
        self.card_view.setWordWrap(True)
        self.card_view.setTextFormat(Qt.TextFormat.RichText)
        model_box = QGroupBox("Model")
        mb = QVBoxLayout(model_box)
        mb.addLayout(row)
        mb.addWidget(self.card_view)

        # --- run settings
        self.image = LayerCombo(napari_viewer, "image")
        self.device = QComboBox()
        self.device.addItems(_devices())
        self.device_used = QLabel()
        dev_row = QHBoxLayout()
        dev_row.addWidget(self.device)
        dev_row.addWidget(self.device_used)
        self.tile_size = QSpinBox()
        self.tile_size.setRange(32, 4096)
        self.tile_size.setSingleStep(32)
        self.tile_size.setValue(512)
        self.tile_size.setSuffix(" px")
        self.overlap = QSpinBox()
        self.overlap.setRange(0, 2048)
        self.overlap.setValue(64)
        self.overlap.setSuffix(" px")
        self.batch_size = QSpinBox()
        self.batch_size.setRange(0, 256)
        self.batch_size.setSpecialValueText("auto")
        self.batch_size.setValue(0)
        self.visible_only = QCheckBox("only the visible region")
        self.probabilities = QCheckBox("also probability and uncertainty layers")
        self.scales = QLineEdit("1")
        self.scales.setToolTip("test-time scale factors of each tile, e.g. 0.75,1,1.25: the model runs at each "
                               "and the probabilities are averaged (DeepLab's multi-scale inference); "
                               "1 is one pass")
        self.flip = QCheckBox("also run flipped left-right (2x the time)")
        form = QFormLayout()
        form.addRow("Image layer", self.image)
        form.addRow("Device", dev_row)
        form.addRow("Tile size", self.tile_size)
        form.addRow("Overlap", self.overlap)
        form.addRow("Batch size", self.batch_size)
        form.addRow("Scales", self.scales)
        form.addRow(self.flip)
        form.addRow(self.visible_only)
        form.addRow(self.probabilities)

        # --- CRF
        from segdeep.crf import CRFParams

        d = CRFParams()
        self.crf = QGroupBox("Dense CRF refinement")
        self.crf.setCheckable(True)
        self.crf.setChecked(False)
        cf = QFormLayout(self.crf)
        self.crf_iterations = self._spin(1, 50, d.iterations)
        self.crf_bilateral_compat = self._dspin(0, 100, d.bilateral_compat)
        self.crf_bilateral_sxy = self._dspin(1, 500, d.bilateral_sxy, " px")
        self.crf_bilateral_srgb = self._dspin(1, 255, d.bilateral_srgb)
        self.crf_gaussian_compat = self._dspin(0, 100, d.gaussian_compat)
        cf.addRow("Iterations", self.crf_iterations)
        cf.addRow("Appearance weight (w1)", self.crf_bilateral_compat)
        cf.addRow("Appearance width θα", self.crf_bilateral_sxy)
        cf.addRow("Colour width θβ", self.crf_bilateral_srgb)
        cf.addRow("Smoothness weight (w2)", self.crf_gaussian_compat)

        # --- actions
        self.run_button = QPushButton("Run")
        self.run_button.clicked.connect(lambda: self.run())
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setEnabled(False)
        self.cancel_button.clicked.connect(lambda: self.cancel())
        actions = QHBoxLayout()
        actions.addWidget(self.run_button)
        actions.addWidget(self.cancel_button)
        self.status = QLabel("")
        self.status.setWordWrap(True)

        dock_layout(self, [model_box, form, self.crf], [actions, self.status])
        fold_when_unchecked(self.crf)

        self.bundle.editingFinished.connect(lambda: self._load_card())
        self.device.currentTextChanged.connect(self._show_device)
        self.tile_size.valueChanged.connect(lambda v: self.overlap.setMaximum(v // 2))
        shipped = default_bundle()
        if shipped is not None:
            self.set_bundle(shipped)
        self._show_device()

    # ------------------------------------------------------------------ settings

    @staticmethod
    def _spin(lo, hi, value, suffix=""):
        s = QSpinBox()
        s.setRange(lo, hi)
        s.setValue(int(value))
        s.setSuffix(suffix)
        return s

    @staticmethod
    def _dspin(lo, hi, value, suffix=""):
        s = QDoubleSpinBox()
        s.setRange(lo, hi)
        s.setDecimals(1)
        s.setValue(float(value))
        s.setSuffix(suffix)
        return s

    def _browse(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Model bundle", str(Path(self.bundle.text()).parent),
                                              "segdeep model bundles (*.safetensors)")
        if path:
            self.set_bundle(path)

    def set_bundle(self, path: str | Path) -> None:
        """Use the bundle at ``path`` (e.g. the one the Train widget just wrote) and show its card."""
        self.bundle.setText(str(path))
        self._load_card()

    @guarded
    def _load_card(self) -> None:
        text = self.bundle.text().strip()
        self.card = None
        self.card_view.setText("")
        if not text:
            return
        self.card = read_bundle_card(text)
        self.card_view.setText(card_html(self.card))
        self.tile_size.setValue(int(self.card.tile_size))

    def _show_device(self) -> None:
        from segdeep.runtime import resolve_device

        try:
            used = str(resolve_device(self.device.currentText()))
        except SegdeepError as exc:
            used = f"unavailable ({exc})"
        self.device_used.setText(f"→ {used}")

    def crf_params(self):
        """The CRF settings chosen, or None when the CRF is off."""
        from segdeep.crf import CRFParams

        if not self.crf.isChecked():
            return None
        return CRFParams(iterations=self.crf_iterations.value(),
                         gaussian_compat=self.crf_gaussian_compat.value(),
                         bilateral_sxy=self.crf_bilateral_sxy.value(),
                         bilateral_srgb=self.crf_bilateral_srgb.value(),
                         bilateral_compat=self.crf_bilateral_compat.value())

    # ------------------------------------------------------------------ run

    @guarded
    def run(self) -> None:
        """Segment the chosen image layer (or its visible region) in a worker thread."""
        from segdeep.predict import (
            BlockDone,
            PredictConfig,
            PredictStarted,
            TilesDone,
            iter_predict,
        )

        if self.job is not None and self.job.running:
            raise SegdeepError("a segmentation is already running; cancel it first")
        layer = self.image.layer()
        bundle = Path(self.bundle.text().strip())
        if not bundle.is_file():
            raise SegdeepError(f"{bundle}: no such model bundle; choose a .safetensors file made by segdeep train")
        if self.card is None:
            self._load_card()
        region = visible_window(self.viewer, layer) if self.visible_only.isChecked() else None
        work = Path(tempfile.mkdtemp(prefix="run-", dir=_work_dir()))
        image = source_file(layer)
        window = region
        if image is None:  # an in-memory layer: segdeep reads files
            image = str(write_layer_geotiff(layer, work / "image.tif", region))
            window = None
        offset = (region[0], region[1]) if region else (0, 0)
        layer_meta = dict(layer.metadata or {})
        try:  # the settings are checked here, before any worker starts
            config = PredictConfig(image=image, bundle=bundle, out_dir=work / "out",
                                   tile_size=self.tile_size.value(), overlap=self.overlap.value(),
                                   batch_size=self.batch_size.value() or "auto", device=self.device.currentText(),
                                   crf=self.crf_params(), probabilities=self.probabilities.isChecked(),
                                   scales=self.scales.text(), flip=self.flip.isChecked(),
                                   window=window, preview=False)
        except BaseException:
            shutil.rmtree(work, ignore_errors=True)
            raise
        image_name = layer.name

        crf_on = config.crf is not None
        seen = {"tiles": 0, "total": 1, "blocks": 0, "total_blocks": 1}

        def progress_of(event):
            # with the CRF the bar is half tiles, half CRF blocks: it keeps moving after the last tile
            if isinstance(event, PredictStarted):
                self.last_started = event
                on = f", {event.workers} x {event.threads} thread(s)" if event.workers else ""
                self.device_used.setText(f"→ {event.device} ({event.precision}, batch {event.batch_size}{on})")
                seen.update(total=max(1, event.total_tiles), total_blocks=max(1, event.total_blocks))
            elif isinstance(event, TilesDone):
                seen.update(tiles=event.done, total=max(1, event.total))
            elif isinstance(event, BlockDone):
                seen.update(blocks=event.done, total_blocks=max(1, event.total))
            else:
                return None
            if not crf_on:
                return seen["tiles"], seen["total"]
            return seen["tiles"] + seen["blocks"] * seen["total"] // seen["total_blocks"], 2 * seen["total"]

        def on_event(event):
            if isinstance(event, TilesDone):
                self.status.setText(f"tiles {event.done} / {event.total}"
                                    + (" (then the dense CRF, block by block)" if crf_on else ""))
                if crf_on and event.done == event.total:
                    self.status.setText(f"dense CRF on block {seen['blocks'] + 1} / {seen['total_blocks']}…")
            elif isinstance(event, BlockDone):
                self.status.setText(f"block {event.done} / {event.total} written"
                                    + (f"; dense CRF on block {event.done + 1}…" if crf_on and event.done < event.total
                                       else ""))

        def on_end(outcome: Outcome):
            self.last_outcome = outcome
            self.run_button.setEnabled(True)
            self.cancel_button.setEnabled(False)
            try:
                if outcome.state == "done":
                    self._add_result(outcome.value, image_name, offset, str(bundle), layer_meta)
                    self.status.setText(f"done: {self.result_layer.name!r}")
                elif outcome.state == "cancelled":
                    self.status.setText("cancelled")
                    notify_info("segmentation cancelled")
                else:
                    self.status.setText(f"error: {outcome.message}")
            finally:
                shutil.rmtree(work, ignore_errors=True)

        self.status.setText("running…")
        self.run_button.setEnabled(False)
        self.cancel_button.setEnabled(True)
        self.job = Job(lambda: iter_predict(config=config), desc=f"Segment {image_name}",
                       on_end=on_end, on_event=on_event, progress_of=progress_of)

    def cancel(self) -> None:
        """Stop the running segmentation (within one batch); nothing is added."""
        if self.job is not None and self.job.running:
            self.job.cancel()
            self.status.setText("cancelling…")

    def _add_result(self, result, image_name: str, offset: tuple[int, int], bundle: str, layer_meta: dict) -> None:
        from segdeep.io import open_raster, read_labels

        labels, _ = read_labels(result.labels)
        info = open_raster(result.labels, warn=False)
        classes = list(self.card.classes)
        if layer_meta.get("transform"):
            meta = region_metadata(layer_meta, offset[0], offset[1], info.width, info.height)
        else:
            meta = georef_metadata(info)
            meta["window"] = [offset[0], offset[1], info.width, info.height]
        meta.pop("path", None)
        meta.update(source_image=layer_meta.get("path"), bundle=bundle)
        meta["image_layer"] = image_name  # the link Refine and Train check
        name = unique_name(self.viewer, f"{image_name} labels")
        # always a new layer: an earlier result may hold the user's corrections and its own undo history
        self.result_layer = self.viewer.add_labels(labels, **labels_layer_kwargs(classes, meta, name,
                                                                                 translate=(offset[1], offset[0])))
        if result.probabilities is not None:
            import rasterio

            with rasterio.open(result.probabilities) as ds:
                probs = ds.read()
            pname = unique_name(self.viewer, f"{image_name} probabilities")
            self.viewer.add_image(probs, name=pname, colormap="magma", contrast_limits=(0, 255),
                                  translate=(offset[1], offset[0]), visible=False, axis_labels=("class", "y", "x"),
                                  metadata={"classes": [c.to_dict() for c in classes], **meta}, **placement(meta, 3))
            from segdeep.refine import margin_uncertainty

            uname = unique_name(self.viewer, f"{image_name} uncertainty")
            umeta = {k: v for k, v in meta.items() if k != "classes"}
            umeta["labels_layer"] = name
            self.viewer.add_image(margin_uncertainty(probs), name=uname, colormap="inferno", contrast_limits=(0, 1),
                                  opacity=0.6, blending="additive", translate=(offset[1], offset[0]), visible=False,
                                  metadata=umeta, **placement(meta))
            self.result_layer.metadata = {**self.result_layer.metadata, "uncertainty_layer": uname}
        self.viewer.layers.selection.active = self.result_layer


def unique_name(viewer, base: str) -> str:
    """``base``, or ``base (2)``, ``base (3)``, ... : the first name no layer of ``viewer`` has."""
    names = {lay.name for lay in viewer.layers}
    if base not in names:
        return base
    n = 2
    while f"{base} ({n})" in names:
        n += 1
    return f"{base} ({n})"


def _work_dir() -> Path:
    folder = cache_dir() / "napari-runs"
    folder.mkdir(parents=True, exist_ok=True)
    return folder
