"""Small Qt pieces shared by the dock widgets: a layer chooser and the model-card view."""

from __future__ import annotations

import html
from pathlib import Path

import napari
from qtpy.QtCore import Qt, Signal
from qtpy.QtWidgets import QComboBox, QFrame, QGroupBox, QLabel, QScrollArea, QVBoxLayout, QWidget
from segdeep.errors import SegdeepError


class LayerCombo(QComboBox):
    """A combo box of the viewer's layers of one kind ("image" or "labels"), kept up to date.

    Until the user picks a layer, the choice follows the viewer: the active layer of that kind,
    else ``prefer(layer)`` ones, else the newest. ``avoid`` is another combo whose layer this one
    never takes by default (a reference is never its own labels); the user may still pick it, and
    the widget refuses to run. Layers are compared by name: names are unique in a viewer, while
    the viewer hands out a new proxy object per lookup.
    """

    #: The choice changed because the viewer changed (not the user); carries the new layer name.
    followed = Signal(str)

    def __init__(self, viewer: napari.viewer.Viewer, kind: str, *, optional: bool = False,
                 avoid: LayerCombo | None = None, prefer=None) -> None:
        super().__init__()
        self.viewer, self.kind, self.optional = viewer, kind, optional
        self.avoid, self.prefer = avoid, prefer
        self.user_chose = False
        self._type = napari.layers.Image if kind == "image" else napari.layers.Labels
        viewer.layers.events.inserted.connect(self.refresh)
        viewer.layers.events.removed.connect(self.refresh)
        viewer.layers.events.changed.connect(self.refresh)
        # signals are blocked while refreshing, so this fires only for a choice made from outside
        self.currentTextChanged.connect(self._chosen)
        if avoid is not None:
            avoid.currentTextChanged.connect(self.refresh)
            avoid.followed.connect(self.refresh)
        self.refresh()

    def _chosen(self, _text: str) -> None:
        self.user_chose = True

    def _default(self, names: list[str]) -> str | None:
        avoided = self.avoid.currentText() if self.avoid is not None else None
        candidates = [n for n in names if n != avoided]
        if not candidates:
            return None
        active = self.viewer.layers.selection.active
        active = active.name if isinstance(active, self._type) and active.name in candidates else None
        if self.prefer is not None:
            preferred = [n for n in candidates if self.prefer(self.viewer.layers[n])]
            if preferred:
                return active if active in preferred else preferred[-1]
        return active or candidates[-1]

    def refresh(self, *_args) -> None:
        current = self.currentText()
        names = [lay.name for lay in self.viewer.layers if isinstance(lay, self._type)]
        self.blockSignals(True)
        self.clear()
        if self.optional:
            self.addItem("(none)")
        self.addItems(names)
        if self.user_chose and (current in names or (self.optional and current == "(none)")):
            self.setCurrentText(current)
        else:
            self.user_chose = False
            choice = self._default(names)
            if choice is not None:
                self.setCurrentText(choice)
            elif self.optional:
                self.setCurrentText("(none)")
        self.blockSignals(False)
        if self.currentText() != current:
            self.followed.emit(self.currentText())

    def set_layer(self, name: str) -> None:
        """Choose layer ``name`` as the user would (it stays chosen while the layer exists)."""
        self.refresh()
        self.setCurrentText(name)
        self.user_chose = True

    def layer(self, required: bool = True):
        """The chosen layer; SegdeepError (or None when not ``required``) if there is none."""
        name = self.currentText()
        if name and name != "(none)" and name in self.viewer.layers:
            return self.viewer.layers[name]
        if required:
            raise SegdeepError(f"no {self.kind} layer chosen; open or add one first")
        return None


def follow_labels(image: LayerCombo, labels: LayerCombo) -> None:
    """Let an image chooser re-pick (its ``prefer``: the labels' own image) when the labels change."""
    labels.currentTextChanged.connect(image.refresh)
    labels.followed.connect(image.refresh)


def is_prediction(layer) -> bool:
    """True for a Labels layer that a segdeep model wrote (its metadata names the bundle)."""
    return bool((layer.metadata or {}).get("bundle"))


def dock_layout(widget: QWidget, body: list, footer: list) -> QVBoxLayout:
    """Lay out a dock: ``body`` (widgets and layouts) in a scroll area, ``footer`` (the action
    buttons and the status line) pinned below it, so a dock fits a small screen (it scrolls) and
    its status and errors are always in sight. Returns the body's layout."""
    inner = QWidget()
    body_layout = QVBoxLayout(inner)
    body_layout.setContentsMargins(4, 4, 4, 4)
    for item in body:
        (body_layout.addWidget if isinstance(item, QWidget) else body_layout.addLayout)(item)
    body_layout.addStretch(1)
    area = QScrollArea()
    area.setWidgetResizable(True)
    area.setFrameShape(QFrame.Shape.NoFrame)
    area.setWidget(inner)
    area.setMinimumHeight(60)
    area.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)  # fields narrow with the dock
    outer = QVBoxLayout(widget)
    outer.setContentsMargins(0, 0, 0, 0)
    outer.addWidget(area, 1)
    for item in footer:
        if isinstance(item, QLabel):
            item.setWordWrap(True)
            item.setMaximumHeight(80)  # a long error wraps, it does not push the buttons away
        (outer.addWidget if isinstance(item, QWidget) else outer.addLayout)(item)
    return body_layout


def fold_when_unchecked(box: QGroupBox) -> None:
    """Hide a checkable group's settings while it is off (a compact dock), show them when on."""

    def show(on: bool) -> None:
        for child in box.findChildren(QWidget):
            if child.parent() is box:
                child.setVisible(on)

    box.toggled.connect(show)
    show(box.isChecked())


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
