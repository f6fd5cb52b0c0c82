"""napari reader: GeoTIFFs and other GDAL rasters, with their georeference in ``layer.metadata``.

Small rasters are read whole. Rasters larger than :data:`MULTISCALE_PIXELS` open as a multiscale
image whose levels are read lazily, window by window, as napari shows them (GDAL serves decimated
levels from the file's overviews when it has them), so a 20k x 20k image opens without being
loaded. Files this reader does not handle give None, as napari expects.
"""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np

#: Rasters with more pixels than this open as lazy multiscale images.
MULTISCALE_PIXELS = 8192 * 8192
#: The coarsest level of a multiscale image is at most this many pixels on a side.
SMALLEST_LEVEL = 1024
#: File extensions tried (GDAL reads many more; these are the usual raster formats).
EXTENSIONS = (".tif", ".tiff", ".gtiff", ".vrt", ".jp2", ".img", ".ecw", ".nc", ".hdf", ".h5", ".jpg", ".jpeg",
              ".png")


def _is_rgb(ds) -> bool:
    from rasterio.enums import ColorInterp

    interp = list(ds.colorinterp)
    if ds.count in (3, 4) and interp[:3] == [ColorInterp.red, ColorInterp.green, ColorInterp.blue]:
        return ds.count == 3 or interp[3] == ColorInterp.alpha
    return ds.count == 3 and ds.dtypes[0] == "uint8"


class RasterLevel:
    """One level of a raster as a lazy array: reads only the window napari asks for.

    ``shape`` is (height, width, bands) for RGB(A) or (bands, height, width) otherwise (no band
    axis for a single band); level ``factor`` is 1 for full resolution, 2, 4, ... for coarser ones.
    """

    def __init__(self, path: str, factor: int, width: int, height: int, count: int, dtype: str,
                 rgb: bool) -> None:
        self.path, self.factor, self.rgb, self.count = path, int(factor), rgb, count
        self.full = (height, width)
        h, w = -(-height // self.factor), -(-width // self.factor)
        self.dtype = np.dtype(dtype)
        self.height, self.width = h, w
        self.shape = (h, w, count) if rgb else ((h, w) if count == 1 else (count, h, w))
        self.ndim = len(self.shape)
        self.size = int(np.prod(self.shape))
        self._lock = threading.Lock()
        self._ds = None

    def _read(self, rows: slice, cols: slice, bands: list[int]) -> np.ndarray:
        import rasterio
        from rasterio.enums import Resampling
        from rasterio.windows import Window

        f = self.factor
        r0, r1 = rows.start * f, min(rows.stop * f, self.full[0])
        c0, c1 = cols.start * f, min(cols.stop * f, self.full[1])
        out_shape = (len(bands), rows.stop - rows.start, cols.stop - cols.start)
        if out_shape[1] <= 0 or out_shape[2] <= 0:
            return np.zeros(out_shape, self.dtype)
        with self._lock:
            if self._ds is None:
                self._ds = rasterio.open(self.path)
            return self._ds.read(bands, window=Window(c0, r0, c1 - c0, r1 - r0), out_shape=out_shape,
                                 resampling=Resampling.nearest if f == 1 else Resampling.average)

    def __getitem__(self, key) -> np.ndarray:
        key = key if isinstance(key, tuple) else (key,)
        if any(k is Ellipsis for k in key):
            i = next(i for i, k in enumerate(key) if k is Ellipsis)
            key = key[:i] + (slice(None),) * (self.ndim - len(key) + 1) + key[i + 1:]
        key = key + (slice(None),) * (self.ndim - len(key))
        if self.rgb:
            rk, ck, bk = key
        elif self.count == 1:
            (rk, ck), bk = key, 0
        else:
            bk, rk, ck = key
        rows, cols = self._slice(rk, self.height), self._slice(ck, self.width)
        bands = list(range(1, self.count + 1))
        picked = bands[bk] if isinstance(bk, slice) else [bands[int(bk)]]
        data = self._read(rows, cols, picked)  # bands x rows x cols
        post = tuple(slice(None, None, k.step) if isinstance(k, slice) else 0 for k in (bk, rk, ck))
        data = data[post]
        if self.rgb and isinstance(bk, slice):
            data = np.moveaxis(data, 0, -1)
        return data

    @staticmethod
    def _slice(k, size: int) -> slice:
        if isinstance(k, slice):
            start, stop, _ = k.indices(size)
            return slice(start, max(start, stop))
        i = int(k) % size
        return slice(i, i + 1)

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        data = self[(slice(None),) * self.ndim]
        return data.astype(dtype) if dtype is not None else data

    def __len__(self) -> int:
        return self.shape[0]

    def __del__(self) -> None:
        if getattr(self, "_ds", None) is not None:
            self._ds.close()


def _levels(path: str, width: int, height: int, count: int, dtype: str, rgb: bool) -> list[RasterLevel]:
    levels, factor = [], 1
    while True:
        levels.append(RasterLevel(path, factor, width, height, count, dtype, rgb))
        if max(width, height) / factor <= SMALLEST_LEVEL:
            return levels
        factor *= 2


def label_palette(path: str) -> list | None:
    """The class palette of a label raster, or None for an image.

    A label raster is one uint8 band with segdeep's class names (its ``classes`` tag) or a colour
    table (GDAL palette; classes 0 .. largest value used, named "class <i>").
    """
    import rasterio
    from segdeep.classes import NODATA_LABEL, ClassInfo
    from segdeep.io import read_classes_tag

    with rasterio.open(path) as ds:
        if ds.count != 1 or ds.dtypes[0] != "uint8":
            return None
        tagged = read_classes_tag(path)
        if tagged:
            return tagged
        try:
            table = ds.colormap(1)
        except ValueError:  # no colour table
            return None
        level = ds.overviews(1)[-1] if ds.overviews(1) else 1
        sample = ds.read(1, out_shape=(max(1, ds.height // level), max(1, ds.width // level)))
    used = sample[sample != NODATA_LABEL]
    top = int(used.max()) if used.size else 0
    return [ClassInfo(i, f"class {i}", tuple(int(v) for v in table.get(i, (128, 128, 128, 255))[:3]))
            for i in range(top + 1)]


def read_label_raster(path: str, classes: list) -> list[tuple]:
    """A label raster as an editable Labels layer with its palette and georeference."""
    from segdeep.io import open_raster, read_labels

    from ._layers import georef_metadata, labels_layer_kwargs

    info = open_raster(path, warn=False)
    meta = georef_metadata(info, path=path)
    labels, _valid = read_labels(path)
    return [(labels, labels_layer_kwargs(classes, meta, Path(path).stem), "labels")]


def read_raster(path: str | list[str]) -> list[tuple]:
    """Read a raster as napari layer data: ``[(data, kwargs, "image")]``, or ``"labels"`` for a label
    raster (see :func:`label_palette`)."""
    import rasterio
    from segdeep.io import open_raster

    from ._layers import georef_metadata, placement

    path = str(path[0] if isinstance(path, list) else path)
    classes = label_palette(path)
    if classes:
        return read_label_raster(path, classes)
    info = open_raster(path, warn=False)
    with rasterio.open(path) as ds:
        rgb = _is_rgb(ds)
    meta = georef_metadata(info, path=path)
    kwargs = {"name": Path(path).stem, "metadata": meta, "rgb": rgb,
              **placement(meta, 2 if rgb or info.count == 1 else 3)}
    if info.width * info.height > MULTISCALE_PIXELS:
        levels = _levels(path, info.width, info.height, info.count, info.dtype, rgb)
        kwargs["multiscale"] = True
        data = levels
        sample = np.asarray(levels[-1])
    else:
        with rasterio.open(path) as ds:
            array = ds.read()
        data = np.moveaxis(array, 0, -1) if rgb else (array[0] if info.count == 1 else array)
        sample = data
        if rgb and info.count == 3 and info.nodata is not None and array.dtype == np.uint8:
            # nodata (all three bands) becomes transparent: an alpha channel the engine never sees
            alpha = np.where((array == info.nodata).all(axis=0), 0, 255).astype(np.uint8)
            data = np.concatenate([data, alpha[..., None]], axis=-1)
            meta["alpha"] = "nodata"
    if not rgb and info.count > 1:
        kwargs["axis_labels"] = ("band", "y", "x")
    if info.dtype != "uint8":
        values = np.asarray(sample, dtype=np.float64)
        if info.nodata is not None:
            values = values[values != info.nodata]
        values = values[np.isfinite(values)]
        if values.size:
            lo, hi = np.percentile(values, [0.5, 99.5])
            kwargs["contrast_limits"] = (float(lo), float(hi) if hi > lo else float(lo) + 1.0)
    return [(data, kwargs, "image")]


def napari_get_reader(path: str | list[str]):
    """The reader for ``path`` when it is a raster GDAL opens, else None (never raises)."""
    if isinstance(path, list):
        if len(path) != 1:
            return None
        path = path[0]
    p = Path(str(path))
    if p.suffix.lower() not in EXTENSIONS or not p.is_file():
        return None
    try:
        import warnings

        import rasterio
        from rasterio.errors import NotGeoreferencedWarning, RasterioIOError

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", NotGeoreferencedWarning)
            with rasterio.open(p) as ds:
                if ds.count < 1 or ds.width < 1 or ds.height < 1:
                    return None
    except (RasterioIOError, OSError, ValueError):
        return None
    return read_raster
