"""Reading and writing rasters with rasterio: CRS, transform, nodata, bands, windows, label GeoTIFFs.

Windows are rasterio :class:`~rasterio.windows.Window` values in pixels (col_off, row_off, width,
height). Reads are boundless: a window that extends past the raster is padded with zeros and its
validity mask is False there. Label rasters are uint8 with nodata 255, tiled, compressed, with a
colour table and the class names as tags, and become Cloud-Optimized GeoTIFFs when finished.
"""

from __future__ import annotations

import contextlib
import json
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import rasterio
from affine import Affine
from rasterio.errors import NotGeoreferencedWarning, RasterioIOError
from rasterio.windows import Window

from ..classes import NODATA_LABEL, ClassInfo, classes_from_list, colormap
from ..errors import SegdeepError
from .atomic import temp_path
from .label_style import write_label_sidecars

#: Internal tile size of the GeoTIFFs segdeep writes, in pixels.
GTIFF_BLOCK = 256


class NotGeoreferenced(UserWarning):
    """A raster without CRS/transform is used in pixel coordinates."""


@dataclass(frozen=True)
class RasterInfo:
    """What segdeep needs to know about a raster before reading it."""

    path: str
    width: int
    height: int
    count: int
    dtype: str
    crs: rasterio.crs.CRS | None
    transform: Affine
    nodata: float | None
    georeferenced: bool
    band_names: list[str] = field(default_factory=list)
    has_mask: bool = False  # an internal mask or alpha band defines validity

    @property
    def res(self) -> tuple[float, float]:
        """Pixel size (x, y) in CRS units (pixels when not georeferenced)."""
        return (abs(self.transform.a), abs(self.transform.e))

    @property
    def bounds(self) -> tuple[float, float, float, float]:
        """(left, bottom, right, top) in CRS units (pixels when not georeferenced)."""
        return _bounds(self.transform, self.width, self.height)


def _bounds(transform: Affine, width: int, height: int) -> tuple[float, float, float, float]:
    xs = [transform.c, transform.c + transform.a * width]
    ys = [transform.f, transform.f + transform.e * height]
    return (min(xs), min(ys), max(xs), max(ys))


def open_dataset(path: str | Path):
    """``rasterio.open(path)`` for reading, with a one-line :class:`SegdeepError` naming the file when
    it is missing or unreadable (no warning for a raster without georeference). Close it after use."""
    p = Path(path)
    if not p.exists() and "://" not in str(path) and not str(path).startswith("/vsi"):
        raise SegdeepError(f"{path}: no such file")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", NotGeoreferencedWarning)
            return rasterio.open(path)
    except RasterioIOError as exc:
        raise SegdeepError(f"{path}: not a raster GDAL can read ({str(exc).splitlines()[0]})") from None


def open_raster(path: str | Path, warn: bool = True) -> RasterInfo:
    """Describe a raster: size, bands, dtype, crs, transform, nodata.

    Plain images without georeference (JPEG, PNG) work in pixel coordinates (identity transform,
    no CRS) and give a :class:`NotGeoreferenced` warning when ``warn`` is True.
    """
    with open_dataset(path) as ds:
        georef = ds.crs is not None and ds.transform != Affine.identity()
        if not georef and warn:
            warnings.warn(f"{path}: no georeference; outputs use pixel coordinates", NotGeoreferenced,
                          stacklevel=2)
        flags = rasterio.enums.MaskFlags
        has_mask = any(
            (flags.per_dataset in band or flags.alpha in band) and flags.nodata not in band
            for band in ds.mask_flag_enums
        )
        names = [d or f"band {i + 1}" for i, d in enumerate(ds.descriptions)]
        return RasterInfo(
            path=str(path), width=ds.width, height=ds.height, count=ds.count, dtype=ds.dtypes[0],
            crs=ds.crs if georef else None, transform=ds.transform if georef else Affine.identity(),
            nodata=ds.nodata, georeferenced=georef, band_names=names, has_mask=has_mask,
        )


def check_bands(info: RasterInfo, bands: list[int] | None) -> list[int]:
    """Validate 1-based band indices against a raster; ``None`` means all bands."""
    if bands is None:
        return list(range(1, info.count + 1))
    bad = [b for b in bands if not 1 <= b <= info.count]
    if bad or not bands:
        raise SegdeepError(f"{info.path}: band(s) {bad or bands} do not exist; the raster has bands 1-{info.count}")
    return list(bands)


def read_pixels(ds, bands, window: Window | None = None, *, masks: bool = False, **options) -> np.ndarray:
    """``ds.read(bands, window=window, **options)`` (or ``ds.read_masks`` with ``masks``), with a
    one-line :class:`SegdeepError` naming the file when GDAL cannot read it (a truncated or damaged
    file). ``options``: ``out_shape``, ``resampling``, as rasterio takes them."""
    try:
        return (ds.read_masks if masks else ds.read)(bands, window=window, **options)
    except RasterioIOError as exc:
        where = "" if window is None else (f" at col {int(window.col_off)}, row {int(window.row_off)} "
                                           f"({int(window.width)} x {int(window.height)} px)")
        cause = exc.__cause__ or exc.__context__ or exc  # rasterio's own text says "see previous exception"
        raise SegdeepError(f"{ds.name}: cannot read pixels{where}: the file is truncated or damaged "
                           f"({' '.join(str(cause).split())[:160]})") from None


def finite_pixels(data: np.ndarray) -> np.ndarray:
    """bool height x width: True where every band of ``data`` (bands x height x width) is finite;
    non-finite values are set to 0 in place (float data; NaN and inf count as nodata)."""
    bad = ~np.isfinite(data)
    if not bad.any():
        return np.ones(data.shape[1:], dtype=bool)
    data[bad] = 0
    return ~bad.any(axis=0)


def read_window(
    src, window: Window, bands: list[int] | None = None, boundless: bool = True
) -> tuple[np.ndarray, np.ndarray]:
    """Read a window (pixels) and its validity mask.

    ``src`` is a path or an open rasterio dataset; ``bands`` are 1-based (default: all). Returns
    ``(array bands x height x width in the source dtype, valid bool height x width)``. Outside the
    raster, pixels are 0 and invalid; inside, pixels equal to nodata (in every band) or masked by an
    internal mask / alpha band are invalid, and so are pixels with NaN or infinity in any band
    (float rasters, whatever their nodata tag; such values read as 0).
    """
    if isinstance(src, str | Path):
        with open_dataset(src) as ds:
            return read_window(ds, window, bands, boundless)
    ds = src
    bands = bands or list(range(1, ds.count + 1))
    window = Window(int(window.col_off), int(window.row_off), int(window.width), int(window.height))
    h, w = int(window.height), int(window.width)
    out = np.zeros((len(bands), h, w), dtype=ds.dtypes[bands[0] - 1])
    valid = np.zeros((h, w), dtype=bool)
    # Intersect with the raster, read that part only.
    c0, r0 = max(0, window.col_off), max(0, window.row_off)
    c1, r1 = min(ds.width, window.col_off + w), min(ds.height, window.row_off + h)
    if c1 <= c0 or r1 <= r0:
        return out, valid
    inner = Window(c0, r0, c1 - c0, r1 - r0)
    dst = (slice(r0 - window.row_off, r1 - window.row_off), slice(c0 - window.col_off, c1 - window.col_off))
    data = read_pixels(ds, bands, inner)
    finite = finite_pixels(data) if data.dtype.kind in "fc" else True  # NaN, inf: nodata whatever the tag
    out[:, dst[0], dst[1]] = data
    # read_masks gives GDAL's per-band validity (nodata, internal mask, alpha); a pixel is valid when
    # any band is valid (nodata in all bands = invalid).
    masks = read_pixels(ds, bands, inner, masks=True)
    valid[dst] = (masks > 0).any(axis=0) & finite
    if not boundless and (c0, r0, c1, r1) != (window.col_off, window.row_off, window.col_off + w, window.row_off + h):
        raise SegdeepError(f"{ds.name}: window {window} lies outside the raster ({ds.width} x {ds.height})")
    return out, valid


def read_labels(path: str | Path, window: Window | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Read a single-band label raster (uint8 class indices): ``(labels, valid)``; nodata -> 255."""
    with open_dataset(path) as ds:
        if ds.count != 1:
            raise SegdeepError(f"{path}: a label raster has 1 band, this one has {ds.count}")
        window = window or Window(0, 0, ds.width, ds.height)
        data, valid = read_window(ds, window)
        labels = data[0]
        if labels.dtype != np.uint8:
            if labels.size and (labels[valid].min(initial=0) < 0 or labels[valid].max(initial=0) > 255):
                raise SegdeepError(f"{path}: label values must be 0-255, got {labels[valid].min()}..{labels[valid].max()}")
            labels = labels.astype(np.uint8)
        labels = np.where(valid, labels, NODATA_LABEL).astype(np.uint8)
        return labels, valid


#: Deflate level of intermediate label files that are recompressed into a COG afterwards: level 1
#: writes 6x faster than the default 6 for ~15 % more bytes (benchmarks/README.md, scale-out).
INTERMEDIATE_ZLEVEL = 1


def label_profile(width: int, height: int, crs, transform: Affine, *, intermediate: bool = False) -> dict:
    """GeoTIFF profile for a label raster: uint8, 1 band, tiled 256 px, deflate, nodata 255.

    ``intermediate``: a file that only feeds a later COG copy (fast deflate level 1).
    """
    profile = dict(driver="GTiff", width=width, height=height, count=1, dtype="uint8",
                   nodata=NODATA_LABEL, tiled=True, blockxsize=GTIFF_BLOCK, blockysize=GTIFF_BLOCK,
                   compress="deflate", predictor=2, BIGTIFF="IF_SAFER")
    if intermediate:
        profile["zlevel"] = INTERMEDIATE_ZLEVEL
    if crs is not None:
        profile.update(crs=crs, transform=transform)
    return profile


def tag_classes(ds, classes) -> None:
    """Tag band 1 of an open label dataset with the palette: colour table, class names (dataset tag
    ``classes`` as JSON, band tags ``CLASS_<index>``) and the band description ``class``."""
    ds.write_colormap(1, colormap(classes))
    ds.update_tags(classes=json.dumps([c.to_dict() for c in classes]))
    ds.update_tags(1, **{f"CLASS_{c.index}": c.name for c in classes})
    ds.set_band_description(1, "class")


def read_classes_tag(path: str | Path) -> list[ClassInfo] | None:
    """The class palette stored in a label GeoTIFF written by segdeep, or None."""
    with open_dataset(path) as ds:
        tag = ds.tags().get("classes")
    return classes_from_list(json.loads(tag), where=str(path)) if tag else None


def to_cog(src: str | Path, dst: str | Path) -> Path:
    """Copy a GeoTIFF to a Cloud-Optimized GeoTIFF (internal overviews, tiled) at ``dst``."""
    from rasterio.shutil import copy as rio_copy

    tmp = temp_path(dst)
    try:
        with rasterio.open(src) as ds:
            resampling = "NEAREST" if ds.dtypes[0] == "uint8" and ds.count == 1 else "AVERAGE"
        # NUM_THREADS: tiles compressed on all cores, 1.5x faster on 2 (same bytes)
        rio_copy(src, tmp, driver="COG", COMPRESS="DEFLATE", BLOCKSIZE=GTIFF_BLOCK,
                 OVERVIEW_RESAMPLING=resampling, BIGTIFF="IF_SAFER", NUM_THREADS="ALL_CPUS")
        os.replace(tmp, dst)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
    return Path(dst)


class LabelWriter:
    """Write a label raster block by block; the final file appears only when complete.

    Use as a context manager. Blocks go to a temporary GeoTIFF in the same folder; on normal exit it
    becomes a COG (``cog=True``) or is renamed as is, under ``path``, and gets its class names beside
    it (:func:`segdeep.io.label_style.write_label_sidecars`: ``.qml`` for QGIS, ``.aux.xml`` for
    GDAL). On an exception the temporary file is removed and ``path`` is untouched.
    """

    def __init__(self, path: str | Path, width: int, height: int, *, crs, transform: Affine,
                 classes, cog: bool = True, tmp: str | Path | None = None) -> None:
        self.path = Path(path)
        self.cog = cog
        self.classes = list(classes)
        self.tmp = Path(tmp) if tmp else temp_path(self.path)
        self._profile = label_profile(width, height, crs, transform, intermediate=cog)
        self._ds = None

    def open(self, mode: str = "w") -> LabelWriter:
        if mode == "r+" and self.tmp.exists():
            self._ds = rasterio.open(self.tmp, "r+")
        else:
            try:
                self._ds = rasterio.open(self.tmp, "w", **self._profile)
            except (RasterioIOError, OSError) as exc:
                raise SegdeepError(f"{self.path.parent}: cannot write there ({exc})") from None
            tag_classes(self._ds, self.classes)
        return self

    def __enter__(self) -> LabelWriter:
        return self.open() if self._ds is None else self

    def write(self, window: Window, labels: np.ndarray) -> None:
        """Write ``labels`` (uint8, height x width of the window) at ``window``."""
        self._ds.write(labels.astype(np.uint8, copy=False)[None], window=window)

    def close(self, ok: bool = True) -> Path | None:
        if self._ds is not None:
            self._ds.close()
            self._ds = None
        if not ok:
            with contextlib.suppress(FileNotFoundError):
                self.tmp.unlink()
            return None
        if self.cog:
            to_cog(self.tmp, self.path)
            self.tmp.unlink()
        else:
            os.replace(self.tmp, self.path)
        write_label_sidecars(self.path, self.classes)  # class names for QGIS (.qml) and GDAL (.aux.xml)
        return self.path

    def __exit__(self, exc_type, exc, tb) -> None:
        self.close(ok=exc_type is None)


def write_labels(path: str | Path, labels: np.ndarray, *, crs, transform: Affine, classes,
                 cog: bool = True) -> Path:
    """Write a whole label array (uint8, H x W, 255 = nodata) as a label GeoTIFF."""
    if labels.ndim != 2:
        raise SegdeepError(f"{path}: labels must be 2-D (height x width), got shape {labels.shape}")
    with LabelWriter(path, labels.shape[1], labels.shape[0], crs=crs, transform=transform,
                     classes=classes, cog=cog) as w:
        w.write(Window(0, 0, labels.shape[1], labels.shape[0]), labels)
    return Path(path)
