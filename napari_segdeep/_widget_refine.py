"""Refine widget: dense-CRF refinement and clean-up of an (edited) Labels layer, and a class palette.

The work is :func:`segdeep.refine.labels.iter_refine_labels` in a worker thread, on the whole layer, the
visible region or a drawn rectangle. The result is written with ``Labels.data_setitem``, so it is
one step of napari's own undo history (Ctrl+Z, or the Undo button here). The palette buttons pick
the class that napari's brush and fill tools paint; the eraser writes nodata (255).
"""

from __future__ import annotations

import napari
import numpy as np
from qtpy.QtWidgets import (
    QComboBox,
    QDoubleSpinBox,
    QFormLayout,
    QGridLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QSpinBox,
    QWidget,
)
from segdeep.errors import SegdeepError

from ._cursor import show_cursor_readout
from ._layers import (
    canvas_size,
    check_pair,
    image_region,
    image_size,
    labels_array,
    layer_classes,
    linked_image,
    source_file,
    visible_window,
)
from ._widgets_common import LayerCombo, dock_layout, follow_labels
from ._workers import Job, Outcome, guarded

REGION_LAYER = "segdeep region"


def _nodata_valid(layer, pixels: np.ndarray) -> np.ndarray | None:
    """False where every band of ``pixels`` (bands x h x w) is the layer's nodata value."""
    nodata = (layer.metadata or {}).get("nodata")
    return None if nodata is None else (pixels != nodata).any(axis=0)


def colour_stretch(layer, pixels: np.ndarray) -> tuple:
    """``(colour_limits, image_valid)`` for :func:`segdeep.refine.labels.iter_refine_labels` from an
    Image layer and the ``pixels`` (bands x h x w) cut from it: the CRF colour stretch of the whole
    image (its file when it has one, as ``segdeep refine`` and ``predict --crf`` use), so a region
    is refined with the colours it has in the whole image (see :mod:`segdeep.crf.colour`)."""
    from segdeep.crf import colour_limits, read_colour_limits

    valid = _nodata_valid(layer, pixels)
    if pixels.dtype == np.uint8:
        return None, valid
    path = source_file(layer)
    if path is not None:
        return read_colour_limits(path), valid
    h, w = image_size(layer)
    if getattr(layer, "multiscale", False) or pixels.shape[1:] == (h, w):
        return None, valid  # the pixels given (a lazy pyramid without its file is not read whole)
    whole = image_region(layer, 0, 0, w, h)
    return colour_limits(whole, valid=_nodata_valid(layer, whole)), valid

SCOPES = ("whole layer", "visible region", "drawn rectangle")


class RefineWidget(QWidget):
    """Dock widget: class palette; CRF + clean-up settings; scope; Apply / Cancel / Undo."""

    def __init__(self, napari_viewer: napari.viewer.Viewer) -> None:
        super().__init__()
        self.viewer = napari_viewer
        show_cursor_readout(napari_viewer)
        self.job: Job | None = None
        self.last_outcome: Outcome | None = None
        self.palette_buttons: dict[int, QPushButton] = {}

        self.labels = LayerCombo(napari_viewer, "labels")
        self.image = LayerCombo(napari_viewer, "image",
                                prefer=lambda lay: lay.name == linked_image(self.labels.layer(required=False)))
        follow_labels(self.image, self.labels)
        self.palette_box = QGroupBox("Paint with class")
        self.palette_grid = QGridLayout(self.palette_box)

        from segdeep.crf import CRFParams

        d = CRFParams()
        self.crf = QGroupBox("Dense CRF against the image")
        self.crf.setCheckable(True)
        self.crf.setChecked(True)
        cf = QFormLayout(self.crf)
        self.confidence = self._dspin(0.05, 0.99, 0.7, decimals=2)
        self.iterations = QSpinBox()
        self.iterations.setRange(1, 50)
        self.iterations.setValue(d.iterations)
        self.bilateral_compat = self._dspin(0, 100, d.bilateral_compat)
        self.bilateral_sxy = self._dspin(1, 500, d.bilateral_sxy)
        self.bilateral_srgb = self._dspin(1, 255, d.bilateral_srgb)
        self.gaussian_compat = self._dspin(0, 100, d.gaussian_compat)
        cf.addRow("Trust in the labels", self.confidence)
        cf.addRow("Iterations", self.iterations)
        cf.addRow("Appearance weight (w1)", self.bilateral_compat)
        cf.addRow("Appearance width θα (px)", self.bilateral_sxy)
        cf.addRow("Colour width θβ", self.bilateral_srgb)
        cf.addRow("Smoothness weight (w2)", self.gaussian_compat)

        self.min_region = QSpinBox()
        self.min_region.setRange(0, 1_000_000)
        self.min_region.setSuffix(" px")
        self.fill_holes = QSpinBox()
        self.fill_holes.setRange(0, 1_000_000)
        self.fill_holes.setSuffix(" px")
        self.scope = QComboBox()
        self.scope.addItems(SCOPES)
        draw = QPushButton("Draw rectangle")
        draw.clicked.connect(lambda: self.draw_region())
        scope_row = QHBoxLayout()
        scope_row.addWidget(self.scope)
        scope_row.addWidget(draw)
        form = QFormLayout()
        form.addRow("Labels layer", self.labels)
        form.addRow("Image layer", self.image)
        form.addRow("Remove regions under", self.min_region)
        form.addRow("Fill holes up to", self.fill_holes)
        form.addRow("Apply to", scope_row)

        self.apply_button = QPushButton("Apply")
        self.apply_button.clicked.connect(lambda: self.apply())
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setEnabled(False)
        self.cancel_button.clicked.connect(lambda: self.job and self.job.cancel())
        self.undo_button = QPushButton("Undo")
        self.undo_button.clicked.connect(lambda: self.undo())
        self.next_button = QPushButton("Next uncertain region")
        self.next_button.setToolTip("centre the view on the next least certain region of the labels "
                                    "(Segment with 'also probability and uncertainty layers')")
        self.next_button.clicked.connect(lambda: self.next_uncertain())
        self._regions: dict[str, tuple[list, int]] = {}
        actions = QHBoxLayout()
        for b in (self.apply_button, self.cancel_button, self.undo_button):
            actions.addWidget(b)
        self.status = QLabel("")
        self.status.setWordWrap(True)

        dock_layout(self, [form, self.palette_box, self.crf], [actions, self.next_button, self.status])
        self.labels.currentTextChanged.connect(lambda _t: self.build_palette())
        self.build_palette()

    @staticmethod
    def _dspin(lo, hi, value, decimals=1):
        s = QDoubleSpinBox()
        s.setRange(lo, hi)
        s.setDecimals(decimals)
        s.setSingleStep(10 ** -decimals * 5)
        s.setValue(float(value))
        return s

    # ------------------------------------------------------------------ palette

    def build_palette(self) -> None:
        """One button per class of the chosen Labels layer (names and colours from its metadata)."""
        while self.palette_grid.count():
            item = self.palette_grid.takeAt(0)
            if item.widget() is not None:
                item.widget().deleteLater()
        self.palette_buttons = {}
        layer = self.labels.layer(required=False)
        if layer is None:
            return
        for i, c in enumerate(layer_classes(layer)):
            button = QPushButton(c.name)
            r, g, b = c.color
            text = "#000000" if 0.299 * r + 0.587 * g + 0.114 * b > 150 else "#ffffff"
            button.setStyleSheet(f"background-color: {c.hex}; color: {text};")
            button.setToolTip(f"paint class {c.index} ({c.name})")
            button.clicked.connect(lambda _=False, k=c.index: self.pick_class(k))
            self.palette_grid.addWidget(button, i // 3, i % 3)
            self.palette_buttons[c.index] = button

    def pick_class(self, index: int) -> None:
        """Make napari's brush paint class ``index`` on the chosen Labels layer."""
        layer = self.labels.layer()
        layer.selected_label = int(index)
        layer.mode = "paint"
        self.viewer.layers.selection.active = layer

    # ------------------------------------------------------------------ region

    def draw_region(self) -> None:
        """Add (or select) the rectangle layer; the last rectangle drawn is the refine region."""
        if REGION_LAYER not in self.viewer.layers:
            self.viewer.add_shapes(name=REGION_LAYER, edge_color="yellow", face_color="transparent", edge_width=2)
        layer = self.viewer.layers[REGION_LAYER]
        self.viewer.layers.selection.active = layer
        layer.mode = "add_rectangle"
        self.scope.setCurrentText("drawn rectangle")

    def window(self, labels) -> tuple[int, int, int, int] | None:
        """(col, row, width, height) in the labels' pixels for the chosen scope; None = whole layer."""
        scope = self.scope.currentText()
        if scope == "whole layer":
            return None
        if scope == "visible region":
            return visible_window(self.viewer, labels)
        shapes = self.viewer.layers[REGION_LAYER] if REGION_LAYER in self.viewer.layers else None
        if shapes is None or len(shapes.data) == 0:
            raise SegdeepError("no rectangle drawn: press 'Draw rectangle' and drag one over the labels")
        pixels = np.array([labels.world_to_data(shapes.data_to_world(p))[-2:] for p in np.asarray(shapes.data[-1])])
        r0, c0 = np.floor(pixels.min(0)).astype(int)  # the labels' own pixels, whatever their placement
        r1, c1 = np.ceil(pixels.max(0)).astype(int)
        return int(c0), int(r0), int(c1 - c0), int(r1 - r0)

    # ------------------------------------------------------------------ run

    def crf_params(self):
        from segdeep.crf import CRFParams

        return CRFParams(iterations=self.iterations.value(), gaussian_compat=self.gaussian_compat.value(),
                         bilateral_sxy=self.bilateral_sxy.value(), bilateral_srgb=self.bilateral_srgb.value(),
                         bilateral_compat=self.bilateral_compat.value())

    @guarded
    def apply(self) -> None:
        """Refine the chosen scope of the Labels layer in a worker thread."""
        from segdeep.refine import iter_refine_labels

        if self.job is not None and self.job.running:
            raise SegdeepError("a refinement is already running; cancel it first")
        layer = self.labels.layer()
        labels = labels_array(layer.data).copy()
        classes = layer_classes(layer)
        use_crf = self.crf.isChecked()
        image = colour_limits = image_valid = None
        if use_crf:
            image_layer = self.image.layer()
            row, col = check_pair(image_layer, layer, [lay.name for lay in self.viewer.layers])
            h, w = labels.shape
            image = image_region(image_layer, col, row, w, h)
            colour_limits, image_valid = colour_stretch(image_layer, image)
        window = self.window(layer)
        kwargs = dict(num_classes=max(c.index for c in classes) + 1, crf=use_crf,
                      confidence=self.confidence.value(), min_region_px=self.min_region.value(),
                      fill_holes_px=self.fill_holes.value(), window=window, colour_limits=colour_limits,
                      image_valid=image_valid)
        params = self.crf_params()
        before = labels.copy()

        def on_end(outcome: Outcome) -> None:
            self.last_outcome = outcome
            self.apply_button.setEnabled(True)
            self.cancel_button.setEnabled(False)
            if outcome.state != "done":
                self.status.setText(outcome.state if outcome.state == "cancelled" else f"error: {outcome.message}")
                return
            self._write(layer, before, outcome.value)

        self.apply_button.setEnabled(False)
        self.cancel_button.setEnabled(True)
        self.status.setText("refining…")
        self.job = Job(lambda: iter_refine_labels(image, labels, params, **kwargs), desc=f"Refine {layer.name}",
                       on_end=on_end, progress_of=lambda e: e)

    def _write(self, layer, before: np.ndarray, after: np.ndarray) -> None:
        if layer not in self.viewer.layers or layer.data.shape != after.shape:
            raise SegdeepError(f"labels layer {layer.name!r} was removed or resized while refining; nothing changed")
        changed = np.nonzero(after != before)
        layer.data_setitem(changed, after[changed])  # one step of napari's undo history
        self.status.setText(f"{changed[0].size} pixels changed (Undo or Ctrl+Z reverts)")

    @guarded
    def next_uncertain(self) -> None:
        """Centre the view on the next least certain region of the chosen labels (worst first)."""
        from segdeep.refine import uncertain_regions

        layer = self.labels.layer()
        uname = (layer.metadata or {}).get("uncertainty_layer")
        if not uname or uname not in self.viewer.layers:
            raise SegdeepError(f"labels {layer.name!r} have no uncertainty layer; run Segment with 'also "
                               "probability and uncertainty layers'")
        ulayer = self.viewer.layers[uname]
        regions, step = self._regions.get(uname, (None, -1))
        if regions is None:
            regions = uncertain_regions(np.asarray(ulayer.data))
        if not regions:
            raise SegdeepError(f"{uname!r}: no uncertain region (uncertainty >= 0.5 on 16 px or more)")
        step = (step + 1) % len(regions)
        self._regions[uname] = (regions, step)
        region = regions[step]
        center = ulayer.data_to_world((region.center_row, region.center_col))
        corner = ulayer.data_to_world((region.row, region.col))
        far = ulayer.data_to_world((region.row + region.height, region.col + region.width))
        camera = self.viewer.camera
        camera.center = tuple(center)[-2:]
        size = max(abs(far[-1] - corner[-1]), abs(far[-2] - corner[-2]), 1e-9)
        camera.zoom = 0.3 * min(canvas_size(self.viewer)) / size  # the region fills about a third of the view
        ulayer.visible = True
        self.status.setText(f"uncertain region {step + 1} / {len(regions)}: {region.area} px at col {region.col}, "
                            f"row {region.row}")

    def undo(self) -> None:
        """Undo the last edit of the chosen Labels layer (a refinement or a brush stroke)."""
        layer = self.labels.layer(required=False)
        if layer is not None:
            layer.undo()
            self.status.setText("undone")
