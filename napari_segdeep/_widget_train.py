"""Train widget: fine-tune a model bundle on an image layer and its (edited) Labels layer.

The work is :func:`segdeep.training.loop.iter_train_arrays` (``init`` = the bundle to fine-tune) on the
layers' pixels, in a worker thread, with a time budget or a number
of epochs. Pixels labelled 255 (erased / never labelled) are ignored. When it finishes, the new
bundle is written and the Segment widget switches to it.
"""

from __future__ import annotations

import time
from pathlib import Path

import napari
from qtpy.QtWidgets import (
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QSpinBox,
    QWidget,
)
from segdeep.errors import SegdeepError

from ._layers import check_pair, image_region, labels_array, linked_image
from ._sample_data import cache_dir, default_bundle
from ._widgets_common import LayerCombo, dock_layout, follow_labels, read_bundle_card
from ._workers import Job, Outcome, guarded, notify_info


class TrainWidget(QWidget):
    """Dock widget: image + labels layers, starting bundle, budget; Train / Cancel."""

    def __init__(self, napari_viewer: napari.viewer.Viewer) -> None:
        super().__init__()
        self.viewer = napari_viewer
        self.job: Job | None = None
        self.last_outcome: Outcome | None = None
        self.new_bundle: Path | None = None
        self.trained_image: str | None = None  # the image layer of the last run from layers

        self.labels = LayerCombo(napari_viewer, "labels")
        self.image = LayerCombo(napari_viewer, "image",
                                prefer=lambda lay: lay.name == linked_image(self.labels.layer(required=False)))
        follow_labels(self.image, self.labels)
        self.image_file = QLineEdit()
        self.image_file.setPlaceholderText("or an image file (GeoTIFF, ...)")
        self.labels_file = QLineEdit()
        self.labels_file.setPlaceholderText("and its label file (raster, colour mask or vector)")
        self.init = QLineEdit(str(default_bundle() or ""))
        self.init.setPlaceholderText("bundle to fine-tune (.safetensors)")
        pick = QPushButton("…")
        pick.clicked.connect(lambda: self._pick())
        init_row = QHBoxLayout()
        init_row.addWidget(self.init)
        init_row.addWidget(pick)
        self.out = QLineEdit(str(cache_dir() / "models" / f"finetuned-{time.strftime('%Y%m%d-%H%M%S')}.safetensors"))
        self.minutes = QDoubleSpinBox()
        self.minutes.setRange(0.1, 24 * 60)
        self.minutes.setValue(2.0)
        self.minutes.setSuffix(" min")
        self.epochs = QSpinBox()
        self.epochs.setRange(0, 10_000)
        self.epochs.setSpecialValueText("until the time budget")
        self.tile_size = QSpinBox()
        self.tile_size.setRange(32, 2048)
        self.tile_size.setSingleStep(32)
        self.tile_size.setValue(256)
        self.tile_size.setSuffix(" px")
        self.batch_size = QSpinBox()
        self.batch_size.setRange(1, 256)
        self.batch_size.setValue(4)
        self.lr = QDoubleSpinBox()
        self.lr.setDecimals(5)
        self.lr.setRange(1e-5, 1.0)
        self.lr.setSingleStep(1e-4)
        self.lr.setValue(5e-4)
        form = QFormLayout()
        form.addRow("Image layer", self.image)
        form.addRow("Labels layer", self.labels)
        form.addRow("Image file", self.image_file)
        form.addRow("Labels file", self.labels_file)
        form.addRow("Start from", init_row)
        form.addRow("Save as", self.out)
        form.addRow("Time budget", self.minutes)
        form.addRow("Epochs", self.epochs)
        form.addRow("Tile size", self.tile_size)
        form.addRow("Batch size", self.batch_size)
        form.addRow("Learning rate", self.lr)
        self.run_button = QPushButton("Train")
        self.run_button.clicked.connect(lambda: self.run())
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setEnabled(False)
        self.cancel_button.clicked.connect(lambda: self.job and self.job.cancel())
        actions = QHBoxLayout()
        actions.addWidget(self.run_button)
        actions.addWidget(self.cancel_button)
        self.status = QLabel("")
        self.status.setWordWrap(True)
        dock_layout(self, [form], [actions, self.status])

    def _pick(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Model bundle", "", "segdeep model bundles (*.safetensors)")
        if path:
            self.init.setText(path)

    @guarded
    def run(self) -> None:
        """Fine-tune in a worker thread; on success the Segment widget uses the new bundle."""
        from segdeep.training import iter_train_arrays

        if self.job is not None and self.job.running:
            raise SegdeepError("a training run is already going; cancel it first")
        init = self.init.text().strip()
        card = read_bundle_card(init)
        image_file, labels_file = self.image_file.text().strip(), self.labels_file.text().strip()
        if image_file or labels_file:
            self._run_files(init, card, image_file, labels_file)
            return
        layer = self.labels.layer()
        labels = labels_array(layer.data)
        h, w = labels.shape
        image_layer = self.image.layer()
        row, col = check_pair(image_layer, layer, [lay.name for lay in self.viewer.layers])
        image = image_region(image_layer, col, row, w, h)
        if image.shape[0] < max(card.bands):
            raise SegdeepError(f"image {image_layer.name!r} has {image.shape[0]} band(s); the model needs bands {card.bands}")
        image = image[[b - 1 for b in card.bands]]
        tile = min(self.tile_size.value(), (min(h, w) // 32) * 32)
        if tile < 32:
            raise SegdeepError(f"labels {layer.name!r} are {w} x {h} px; training needs at least 32 x 32 px")
        self.trained_image = image_layer.name
        self._start(lambda config, out: iter_train_arrays([image], [labels], classes=card.classes, config=config,
                                                          init=init, out=out),
                    self._config(tile, card), layer.name)

    def _run_files(self, init: str, card, image_file: str, labels_file: str) -> None:
        """Fine-tune on an image file and its label file (read window by window, never whole)."""
        from segdeep.io import open_raster
        from segdeep.training import iter_train, open_sources

        self.trained_image = None
        if not (image_file and labels_file):
            raise SegdeepError("training from files needs both an image file and a labels file")
        sources = open_sources([image_file], [labels_file], card.classes, bands=list(card.bands))
        info = open_raster(image_file, warn=False)
        tile = min(self.tile_size.value(), (min(info.width, info.height) // 32) * 32)
        if tile < 32:
            raise SegdeepError(f"{image_file}: {info.width} x {info.height} px; training needs at least 32 x 32 px")
        self._start(lambda config, out: iter_train(sources, card.classes, config, out=out, init=init),
                    self._config(tile, card), Path(labels_file).name)

    def _config(self, tile: int, card):
        from segdeep.training import TrainConfig

        epochs = self.epochs.value() or None
        return TrainConfig(tile_size=tile, batch_size=self.batch_size.value(), epochs=epochs,
                           time_budget=None if epochs else self.minutes.value(), lr=self.lr.value(),
                           warmup=0.0, gsd=card.gsd)

    def _start(self, make_job, config, name: str) -> None:
        """Run ``make_job(config, out)`` (a training generator) in a worker with progress and Cancel."""
        from segdeep.training import EpochDone, Started, Step

        out = Path(self.out.text().strip())
        out.parent.mkdir(parents=True, exist_ok=True)
        budget_s = self.minutes.value() * 60
        state = {"steps": None}

        def progress_of(event):
            if isinstance(event, Started):
                state["steps"] = (event.total_epochs or 0) * event.steps_per_epoch
                return None
            if isinstance(event, Step):
                if state["steps"]:
                    return (event.epoch - 1) * event.steps_per_epoch + event.step, state["steps"]
                return min(int(event.elapsed), int(budget_s)), int(budget_s)
            return None

        def on_event(event):
            if isinstance(event, Step):
                self.status.setText(f"epoch {event.epoch}, step {event.step}/{event.steps_per_epoch}: "
                                    f"loss {event.loss:.3f}, {event.tiles_per_second:.1f} tiles/s")
            elif isinstance(event, EpochDone):
                self.status.setText(f"epoch {event.epoch} done: loss {event.train_loss:.3f}")  # 1-based

        self.run_button.setEnabled(False)
        self.cancel_button.setEnabled(True)
        self.status.setText("starting…")
        self.job = Job(lambda: make_job(config, out),
                       desc=f"Train on {name}", on_end=lambda o: self._done(o, out),
                       on_event=on_event, progress_of=progress_of)

    def _done(self, outcome: Outcome, out: Path) -> None:
        self.last_outcome = outcome
        self.run_button.setEnabled(True)
        self.cancel_button.setEnabled(False)
        if outcome.state == "cancelled":
            kept = f"; the best model so far is {out}" if out.is_file() else ""
            self.status.setText(f"cancelled{kept}")
            return
        if outcome.state != "done":
            self.status.setText(f"error: {outcome.message}")
            return
        self.new_bundle = Path(outcome.value.path or out)
        _, segment = self.viewer.window.add_plugin_dock_widget("napari-segdeep", "Segment")
        segment.set_bundle(self.new_bundle)
        if self.trained_image in self.viewer.layers:  # segment the image it was trained on, not another
            segment.image.set_layer(self.trained_image)
        self.status.setText(f"saved {self.new_bundle}; the Segment widget now uses it")
        notify_info(f"fine-tuned model saved: {self.new_bundle}")
