"""Small Qt pieces shared by the dock widgets: a layer chooser and the model-card view."""

from __future__ import annotations

import html
from pathlib import Path

import napari
from qtpy.QtWidgets import QComboBox
from segdeep.errors import SegdeepError


class LayerCombo(QComboBox):
    """A combo box of the viewer's layers of one kind ("image" or "labels"), kept up to date."""

    def __init__(self, viewer: napari.viewer.Viewer, kind: str, *, optional: bool = False) -> None:
        super().__init__()
        self.viewer, self.kind, self.optional = viewer, kind, optional
        self._type = napari.layers.Image if kind == "image" else napari.layers.Labels
        viewer.layers.events.inserted.connect(self.refresh)
        viewer.layers.events.removed.connect(self.refresh)
        viewer.layers.events.changed.connect(self.refresh)
        self.refresh()

    def refresh(self, *_args) -> None:
        current = self.currentText()
        names = [lay.name for lay in self.viewer.layers if isinstance(lay, self._type)]
        self.blockSignals(True)
        self.clear()
        if self.optional:
            self.addItem("(none)")
        self.addItems(names)
        if current in names:
            self.setCurrentText(current)
        elif names:
            active = self.viewer.layers.selection.active
            self.setCurrentText(active.name if isinstance(active, self._type) else names[-1])
        self.blockSignals(False)

    def set_layer(self, name: str) -> None:
        self.refresh()
        self.setCurrentText(name)

    def layer(self, required: bool = True):
        """The chosen layer; SegdeepError (or None when not ``required``) if there is none."""
        name = self.currentText()
        if name and name != "(none)" and name in self.viewer.layers:
            return self.viewer.layers[name]
        if required:
            raise SegdeepError(f"no {self.kind} layer chosen; open or add one first")
        return None


def read_bundle_card(path: str | Path):
    """The model card of a bundle (without loading its weights)."""
    from segdeep.models import read_card

    p = Path(path)
    if not p.is_file():
        raise SegdeepError(f"{p}: no such model bundle (a .safetensors file made by segdeep train)")
    return read_card(p)


def card_html(card) -> str:
    """A short rich-text view of a model card: classes with colours, bands, tile size, scores."""
    swatches = " ".join(
        f'<span style="background-color:{c.hex}">&nbsp;&nbsp;&nbsp;</span>&nbsp;{html.escape(c.name)}'
        for c in card.classes)
    lines = [f"<b>{html.escape(card.name or card.architecture)}</b> ({html.escape(card.architecture)})",
             f"classes: {swatches}",
             f"bands {card.bands}, tile {card.tile_size} px" + (f", {card.gsd:g} m/px" if card.gsd else "")]
    miou = (card.validation or {}).get("mean_iou")
    if miou is not None:
        lines.append(f"validation mean IoU {100 * miou:.1f}%")
    return "<br>".join(lines)
