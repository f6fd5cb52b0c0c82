"""Reading class labels from whatever a user has: label rasters, colour-coded masks, vectors.

:func:`open_labels` looks at a file once and returns a :class:`LabelSource` whose ``read(window)``
gives ``(labels uint8, valid bool)`` for any pixel window, so evaluation and training stream:

- a single-band raster of class indices (segdeep's own label GeoTIFFs, other tools' masks);
- a single-band palette image (paletted PNG/TIFF): the colour of each index is decoded with the
  class palette (the Dubai masks mix paletted and RGB PNGs with different index orders);
- an RGB(A) colour-coded mask, decoded by exact colour with the class palette;
- a vector file (GeoPackage, GeoJSON, Shapefile) with a class attribute, rasterized onto a grid.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import rasterio
from rasterio.enums import ColorInterp
from rasterio.windows import Window

from ..classes import NODATA_LABEL, ClassInfo, decode_rgb_mask
from ..errors import SegdeepError
from .raster import RasterInfo, open_dataset, open_raster, read_window
from .rasterize import VectorReference, is_vector_path


@dataclass
class LabelSource:
    """A label file opened for windowed reading. ``kind`` is 'index', 'palette', 'rgb' or 'vector'."""

    path: str
    kind: str
    info: RasterInfo
    classes: list[ClassInfo]
    ignore_index: int = NODATA_LABEL
    notes: list[str] = field(default_factory=list)
    _lut: np.ndarray | None = None
    _vector: object | None = None

    def read(self, window: Window | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Labels (uint8; ``ignore_index``/255 where unknown) and validity for a pixel window."""
        window = window or Window(0, 0, self.info.width, self.info.height)
        if self.kind == "vector":
            return self._vector.read(window)
        bands = [1, 2, 3] if self.kind == "rgb" else [1]
        data, valid = read_window(self.path, window, bands)
        if self.kind == "rgb":
            labels = decode_rgb_mask(data, self.classes, NODATA_LABEL, where=self.path, bands_first=True)
        elif self.kind == "palette":
            labels = self._lut[data[0]]
        else:
            labels = data[0]
            if labels.dtype != np.uint8:
                bad = valid & ((labels < 0) | (labels > 255))
                if bad.any():
                    raise SegdeepError(f"{self.path}: label values must be 0-255, found {labels[bad][0]}")
                labels = labels.astype(np.uint8)
        labels = np.where(valid, labels, NODATA_LABEL).astype(np.uint8)
        return labels, valid & (labels != NODATA_LABEL)


def _palette_lut(path: str, colormap: dict, classes) -> np.ndarray | None:
    """Index -> class LUT from a colour table, or None if the table's colours are not the classes'."""
    by_color = {c.color: c.index for c in classes}
    lut = np.full(256, NODATA_LABEL, dtype=np.uint8)
    matched = 0
    for i, rgba in colormap.items():
        cls = by_color.get(tuple(rgba[:3]))
        if cls is not None and rgba[3] != 0:
            lut[i] = cls
            matched += 1
    return lut if matched else None


def open_labels(path: str | Path, classes, *, like: RasterInfo | None = None,
                attribute: str | None = None, ignore_index: int = NODATA_LABEL) -> LabelSource:
    """Open a label file of any supported kind (see module docstring).

    ``classes`` is the palette used to decode colours and class names; ``like`` is the grid a vector
    file is rasterized onto (required for vectors); ``attribute`` names the vector's class column.
    """
    path = str(path)
    classes = list(classes)
    if is_vector_path(path):
        if like is None:
            raise SegdeepError(f"{path}: a vector reference needs a raster grid to be rasterized onto")
        vec = VectorReference(path, like, classes=classes, attribute=attribute or "class_index")
        notes = [vec.note] if vec.note else []
        return LabelSource(path, "vector", like, classes, ignore_index, notes, _vector=vec)
    info = open_raster(path, warn=False)
    with open_dataset(path) as ds:
        interp = ds.colorinterp
        if ds.count >= 3 and ds.dtypes[0] == "uint8" and ColorInterp.palette not in interp:
            return LabelSource(path, "rgb", info, classes, ignore_index,
                               [f"{path}: colour-coded mask decoded with the class palette"])
        if ds.count != 1:
            raise SegdeepError(
                f"{path}: {ds.count} bands of {ds.dtypes[0]}; expected a 1-band label raster or an "
                "RGB uint8 colour-coded mask"
            )
        if interp[0] == ColorInterp.palette:
            try:
                cmap = ds.colormap(1)
            except (ValueError, rasterio.errors.RasterioError):
                cmap = {}
            lut = _palette_lut(path, cmap, classes)
            identity = lut is not None and all(lut[c.index] == c.index for c in classes)
            if lut is not None and not identity:  # identity: index i is class i (segdeep's own files)
                return LabelSource(path, "palette", info, classes, ignore_index, [], _lut=lut)
    return LabelSource(path, "index", info, classes, ignore_index, [])
