"""Class palettes: names, colours, and decoding of colour-coded RGB masks.

A palette is a list of :class:`ClassInfo`. It comes from a model bundle's card, from a JSON file
(``[{"index": 0, "name": "building", "color": "#3C1098"}, ...]`` or ``{"classes": [...]}``), or is
the default six-class palette of the Dubai aerial data set that segdeep's shipped model uses;
:func:`segdeep.models.card.load_classes` (also ``segdeep.load_classes``) reads either file.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .errors import SegdeepError

#: Label value for "no data" in every label raster segdeep writes.
NODATA_LABEL = 255


@dataclass(frozen=True)
class ClassInfo:
    """One class: its label index, name and display colour (R, G, B in 0-255)."""

    index: int
    name: str
    color: tuple[int, int, int]

    @property
    def hex(self) -> str:
        return "#{:02X}{:02X}{:02X}".format(*self.color)

    def to_dict(self) -> dict:
        return {"index": self.index, "name": self.name, "color": self.hex}


#: The six classes of the Dubai aerial data set (Humans in the Loop, CC0), with the true mask colours.
DUBAI_CLASSES: tuple[ClassInfo, ...] = (
    ClassInfo(0, "building", (60, 16, 152)),
    ClassInfo(1, "land", (132, 41, 246)),
    ClassInfo(2, "road", (110, 193, 228)),
    ClassInfo(3, "vegetation", (254, 221, 58)),
    ClassInfo(4, "water", (226, 169, 41)),
    ClassInfo(5, "unlabeled", (155, 155, 155)),
)


def parse_color(value, where: str = "palette") -> tuple[int, int, int]:
    """Parse ``"#RRGGBB"`` or ``[r, g, b]`` (0-255) into an RGB tuple."""
    if isinstance(value, str):
        s = value.strip().lstrip("#")
        if len(s) == 6:
            try:
                return (int(s[0:2], 16), int(s[2:4], 16), int(s[4:6], 16))
            except ValueError:
                pass
    elif isinstance(value, list | tuple) and len(value) in (3, 4):
        if all(isinstance(v, int | float) and 0 <= v <= 255 for v in value):
            return (int(value[0]), int(value[1]), int(value[2]))
    raise SegdeepError(
        f"{where}: colour {value!r} is not valid; use '#RRGGBB' or [r, g, b] with values 0-255"
    )


def classes_from_list(items, where: str = "palette") -> list[ClassInfo]:
    """Build a palette from a list of dicts with ``name``, ``color`` and optional ``index``."""
    if not isinstance(items, list) or not items:
        raise SegdeepError(f"{where}: expected a non-empty list of classes, got {type(items).__name__}")
    out = []
    for i, item in enumerate(items):
        if not isinstance(item, dict) or "name" not in item:
            raise SegdeepError(f"{where}: class #{i} must be an object with 'name' and 'color', got {item!r}")
        index = int(item.get("index", i))
        color = parse_color(item.get("color", [128, 128, 128]), where)
        out.append(ClassInfo(index, str(item["name"]), color))
    indices = [c.index for c in out]
    if len(set(indices)) != len(indices):
        raise SegdeepError(f"{where}: class indices repeat: {indices}")
    if any(not 0 <= i < NODATA_LABEL for i in indices):
        raise SegdeepError(f"{where}: class indices must be 0-254, got {indices}")
    colors = [c.color for c in out]
    if len(set(colors)) != len(colors):
        raise SegdeepError(f"{where}: two classes share a colour, so masks could not be decoded")
    return sorted(out, key=lambda c: c.index)


def decode_rgb_mask(
    rgb: np.ndarray, classes: list[ClassInfo] | tuple[ClassInfo, ...], ignore_index: int = NODATA_LABEL,
    where: str = "mask", max_unknown_fraction: float = 0.01, bands_first: bool | None = None,
) -> np.ndarray:
    """Turn a colour-coded mask (H x W x 3 or 3 x H x W, uint8) into class indices (H x W, uint8).

    Pixels whose colour is in no class become ``ignore_index``. If more than ``max_unknown_fraction``
    of the pixels have unknown colours, the palette is probably wrong and a :class:`SegdeepError`
    names the most common unknown colours. ``bands_first`` says whether the array is 3 x H x W
    (True) or H x W x 3 (False); None guesses from the shape (ambiguous only when W == 3).
    """
    if rgb.ndim != 3 or 3 not in (rgb.shape[0], rgb.shape[-1]):
        raise SegdeepError(f"{where}: a colour mask needs 3 bands, got shape {rgb.shape}")
    if bands_first is None:
        bands_first = rgb.shape[-1] != 3
    if bands_first:
        rgb = np.moveaxis(rgb[:3], 0, -1)
    code = (rgb[..., 0].astype(np.uint32) << 16) | (rgb[..., 1].astype(np.uint32) << 8) | rgb[..., 2]
    out = np.full(code.shape, ignore_index, dtype=np.uint8)
    for c in classes:
        r, g, b = c.color
        out[code == ((r << 16) | (g << 8) | b)] = c.index
    unknown = (out == ignore_index) & (code != 0)  # pure black is the Dubai data's "ignore"
    if code.size and unknown.mean() > max_unknown_fraction:
        values, counts = np.unique(code[unknown], return_counts=True)
        top = values[np.argsort(counts)[::-1][:3]]
        names = ", ".join(f"#{int(v):06X}" for v in top)
        raise SegdeepError(
            f"{where}: {unknown.mean():.1%} of pixels have colours that are in no class (most common: {names}); "
            f"the palette has {', '.join(c.hex for c in classes)}"
        )
    return out


def colormap(classes) -> dict[int, tuple[int, int, int, int]]:
    """GDAL colour table for a label raster: class colours, nodata (255) transparent black."""
    cmap = {i: (0, 0, 0, 255) for i in range(256)}
    for c in classes:
        cmap[c.index] = (*c.color, 255)
    cmap[NODATA_LABEL] = (0, 0, 0, 0)
    return cmap
