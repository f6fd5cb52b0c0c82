"""Vector reference (GeoPackage / GeoJSON / Shapefile) -> label raster on a given grid.

Evaluation against polygons drawn in a GIS: the vector is read once with pyogrio, reprojected to the
prediction's CRS when the CRSs differ (the :attr:`VectorReference.note` says so), indexed with an
STRtree, and rasterized window by window with :func:`rasterio.features.rasterize`
(``all_touched=False``: a pixel belongs to a polygon when its centre does), so evaluation streams.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import shapely
from rasterio.features import rasterize
from rasterio.windows import Window
from rasterio.windows import transform as window_transform

from ..classes import NODATA_LABEL, ClassInfo
from ..errors import SegdeepError
from .raster import RasterInfo, open_raster

VECTOR_SUFFIXES = (".gpkg", ".geojson", ".json", ".shp", ".fgb")


class Reprojected(UserWarning):
    """A vector reference was reprojected to the raster's CRS."""


def is_vector_path(path: str | Path) -> bool:
    """True when ``path`` has a vector extension segdeep reads as a reference."""
    return Path(path).suffix.lower() in VECTOR_SUFFIXES


class VectorReference:
    """A vector reference prepared for rasterizing onto the grid of ``like``.

    Args:
        vector_path: GeoPackage, GeoJSON or Shapefile with polygons (lines and points also burn).
        like: the grid: a :class:`RasterInfo` or the path of a raster (e.g. the predicted labels).
        attribute: the column giving each feature's class: integer class indices, or class names
            mapped through ``classes`` (case-insensitive). Ignored when ``value`` is given.
        classes: palette used to map names to indices (needed for a name column).
        value: burn every feature with this class index (for references without a class column,
            e.g. building footprints).
        fill: class index of pixels covered by no feature; default 255 = nodata (not evaluated).
        layer: layer name or index in a multi-layer file (default: every layer with geometries,
            e.g. all class layers of a GeoPackage written with one layer per class).
    """

    def __init__(self, vector_path: str | Path, like: RasterInfo | str | Path, *,
                 attribute: str = "class_index", classes: Sequence[ClassInfo] | None = None,
                 value: int | None = None, fill: int = NODATA_LABEL, layer: str | int | None = None) -> None:
        import pyogrio

        self.path = Path(vector_path)
        self.info = like if isinstance(like, RasterInfo) else open_raster(like, warn=False)
        self.fill = int(fill)
        self.note: str | None = None
        if not self.path.exists():
            raise SegdeepError(f"{self.path}: no such file (expected a GeoPackage, GeoJSON or Shapefile)")
        try:
            layers = [name for name, gtype in pyogrio.list_layers(self.path) if gtype] if layer is None else [layer]
            parts = [self._read_layer(name, attribute, classes, value) for name in layers]
        except SegdeepError:
            raise
        except Exception as exc:  # noqa: BLE001 - any GDAL failure is the user's file
            raise SegdeepError(f"{self.path}: not a vector file GDAL can read ({str(exc).splitlines()[0]})") from None
        if not parts:
            raise SegdeepError(f"{self.path}: no layer with geometries")
        geoms = np.concatenate([p[0] for p in parts])
        values = np.concatenate([p[1] for p in parts])
        self.crs = parts[0][2]
        ok = ~shapely.is_missing(geoms) & ~shapely.is_empty(geoms)
        geoms, values = geoms[ok], values[ok]
        geoms = self._to_raster_crs(geoms, self.crs)
        self.geoms, self.values = geoms, values
        self.tree = shapely.STRtree(geoms)

    def _read_layer(self, layer, attribute: str, classes, value) -> tuple[np.ndarray, np.ndarray, str | None]:
        import pyogrio
        import pyogrio.raw

        fields = list(pyogrio.read_info(self.path, layer=layer)["fields"])
        if value is None and attribute not in fields:
            raise SegdeepError(f"{self.path}: no attribute {attribute!r} in layer {layer!r}; it has {fields[:12]}; "
                               "choose the class column, or burn one class index for all features (value)")
        meta, _, wkb, field_data = pyogrio.raw.read(self.path, layer=layer, columns=[] if value is not None else [attribute])
        geoms = shapely.from_wkb(wkb)
        if value is not None:
            values = np.full(len(geoms), int(value), dtype=np.int64)
        else:
            values = self._class_values(np.asarray(field_data[0]), attribute, classes)
        return geoms, values, meta.get("crs")

    def _class_values(self, column: np.ndarray, attribute: str, classes) -> np.ndarray:
        if column.dtype.kind in "iuf":
            bad = ~np.isfinite(column.astype(float)) | (column < 0) | (column > 254)
            if bad.any():
                raise SegdeepError(f"{self.path}: {attribute} values must be class indices 0-254, "
                                   f"got {column[bad][:5].tolist()}")
            return column.astype(np.int64)
        if not classes:
            raise SegdeepError(f"{self.path}: {attribute!r} holds names; give the classes (palette) to map them")
        by_name = {c.name.lower(): c.index for c in classes}
        names = np.array([str(v).strip().lower() for v in column], dtype=object)
        unknown = sorted({n for n in names if n not in by_name})
        if unknown:
            raise SegdeepError(f"{self.path}: {attribute} names {unknown[:5]} are not classes; "
                               f"known: {sorted(by_name)}")
        return np.array([by_name[n] for n in names], dtype=np.int64)

    def _to_raster_crs(self, geoms: np.ndarray, vector_crs: str | None) -> np.ndarray:
        raster_crs = self.info.crs
        if raster_crs is None:
            self.note = f"{self.info.path} has no CRS: vector coordinates used as pixel coordinates"
            return geoms
        if not vector_crs:
            self.note = f"{self.path} has no CRS: assumed to be the raster's ({raster_crs.to_string()})"
            return geoms
        from rasterio.crs import CRS
        from rasterio.warp import transform as warp

        src = CRS.from_user_input(vector_crs)
        if src == raster_crs:
            return geoms

        def project(xy: np.ndarray) -> np.ndarray:
            x, y = warp(src, raster_crs, xy[:, 0], xy[:, 1])
            return np.column_stack([x, y])

        self.note = (f"{self.path.name} was reprojected from {src.to_string()} to the raster's CRS "
                     f"{raster_crs.to_string()}")
        return shapely.transform(geoms, project)

    def read(self, window: Window | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Labels for a window of the grid (pixels): ``(labels uint8 h x w, valid bool h x w)``.

        Pixels covered by no feature get ``fill`` (nodata by default, then invalid); pixels outside
        the raster are nodata and invalid.
        """
        info = self.info
        window = window or Window(0, 0, info.width, info.height)
        h, w = int(window.height), int(window.width)
        wt = window_transform(window, info.transform)
        left, top = wt @ (0, 0)
        right, bottom = wt @ (w, h)
        hits = self.tree.query(shapely.box(min(left, right), min(top, bottom), max(left, right), max(top, bottom)))
        labels = np.full((h, w), self.fill, dtype=np.uint8)
        if len(hits):
            hits = np.sort(hits)  # file order: later features are drawn over earlier ones
            rasterize(zip(self.geoms[hits], self.values[hits].tolist(), strict=True), out=labels,
                      transform=wt, all_touched=False)
        rows = np.arange(int(window.row_off), int(window.row_off) + h)
        cols = np.arange(int(window.col_off), int(window.col_off) + w)
        inside = ((rows >= 0) & (rows < info.height))[:, None] & ((cols >= 0) & (cols < info.width))[None, :]
        labels[~inside] = NODATA_LABEL
        return labels, labels != NODATA_LABEL


def rasterize_reference(vector_path: str | Path, like: RasterInfo | str | Path, *,
                        attribute: str = "class_index", classes: Sequence[ClassInfo] | None = None,
                        window: Window | None = None, value: int | None = None, fill: int = NODATA_LABEL,
                        layer: str | int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Rasterize a vector reference onto the grid of ``like`` (whole raster or one window).

    Returns ``(labels uint8 h x w, valid bool h x w)``; see :class:`VectorReference` for the
    arguments. A reprojection is reported with a :class:`Reprojected` warning. To stream over many
    windows, build one :class:`VectorReference` and call its ``read(window)``.
    """
    ref = VectorReference(vector_path, like, attribute=attribute, classes=classes, value=value, fill=fill,
                          layer=layer)
    if ref.note:
        warnings.warn(ref.note, Reprojected, stacklevel=2)
    return ref.read(window)
