"""The sample scene: a generated, georeferenced aerial-like image of a desert city and its labels.

``make_sample_scene`` writes an RGB GeoTIFF (uint8, 3 bands, tiled, JPEG/YCbCr, with overviews) in a
UTM CRS at ~0.5 m and a label GeoTIFF in the six Dubai classes (building 0, land 1, road 2,
vegetation 3, water 4; 5 "unlabeled" is not used). Shadows are labelled with the class underneath,
as annotators do. The scene is a pure function of (seed, size, gsd): the same arguments give the
same pixels, and it is generated block by block (memory independent of size), so
``segdeep sample --size 16384`` makes a large raster for benchmarks. ``sample_scene_window``
renders any window without writing files (e.g. to make training crops).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import rasterio
from affine import Affine
from rasterio.crs import CRS
from rasterio.enums import ColorInterp, Resampling
from rasterio.windows import Window

from ..classes import DUBAI_CLASSES
from ..errors import SegdeepError
from ..io.atomic import temp_path
from ..io.raster import GTIFF_BLOCK, LabelWriter
from .layout import Layout
from .render import render

#: Default CRS: WGS 84 / UTM zone 40N, the zone of Dubai.
DEFAULT_CRS = "EPSG:32640"
#: Where the scene lies by default: Dubai (longitude, latitude in degrees).
DUBAI_LONLAT = (55.2708, 25.2048)
IMAGE_NAME, LABELS_NAME = "scene.tif", "scene_labels.tif"
MAX_SIZE = 262144
#: GDAL block cache while writing (MB): keeps memory flat for large scenes.
GDAL_CACHE_MB = 64


def _check(size: int, gsd: float, block_size: int) -> None:
    if not isinstance(size, int | np.integer) or not 16 <= size <= MAX_SIZE:
        raise SegdeepError(f"sample scene: size {size!r} is not a whole number of pixels in 16..{MAX_SIZE}")
    if not (isinstance(gsd, int | float) and 0.05 <= gsd <= 5.0):
        raise SegdeepError(f"sample scene: gsd {gsd!r} is not a ground sample distance in 0.05..5 metres")
    if not 64 <= block_size <= 8192:
        raise SegdeepError(f"sample scene: block_size {block_size!r} is not in 64..8192 pixels")


def _georef(size: int, gsd: float, crs, origin) -> tuple[CRS, Affine]:
    try:
        crs = CRS.from_user_input(crs)
    except Exception as exc:  # rasterio raises CRSError, pyproj-style messages
        raise SegdeepError(f"sample scene: crs {crs!r} is not a CRS rasterio understands ({exc})") from None
    if not crs.is_projected or (crs.linear_units or "").lower() not in ("metre", "meter", "m"):
        raise SegdeepError(f"sample scene: crs {crs.to_string()} is not a projected CRS in metres "
                           f"(use a UTM zone, e.g. {DEFAULT_CRS})")
    if origin is None:
        from rasterio.warp import transform as warp_transform

        xs, ys = warp_transform("EPSG:4326", crs, [DUBAI_LONLAT[0]], [DUBAI_LONLAT[1]])
        # Snap to whole metres, centred on Dubai.
        origin = (round(xs[0] - size * gsd / 2), round(ys[0] + size * gsd / 2))
    try:
        ox, oy = (float(v) for v in origin)
    except (TypeError, ValueError):
        raise SegdeepError(f"sample scene: origin {origin!r} is not an (x, y) pair in CRS units") from None
    return crs, Affine(gsd, 0.0, ox, 0.0, -gsd, oy)


def sample_scene_window(window: Window, *, size: int = 1024, seed: int = 0, gsd: float = 0.5
                        ) -> tuple[np.ndarray, np.ndarray]:
    """Render one window (pixels) of the sample scene without writing anything.

    Returns ``(image 3 x h x w uint8, labels h x w uint8)``; equal to the same window of the scene
    that :func:`make_sample_scene` writes with these ``size``, ``seed`` and ``gsd`` (metres/pixel).
    The window may extend past ``size``: the world simply continues.
    """
    _check(size, gsd, 1024)
    layout = Layout(seed, (size * gsd, size * gsd))
    return render(layout, int(window.col_off), int(window.row_off), int(window.width), int(window.height), gsd)


def _image_profile(size: int, crs: CRS, transform: Affine) -> dict:
    return dict(driver="GTiff", width=size, height=size, count=3, dtype="uint8", crs=crs,
                transform=transform, tiled=True, blockxsize=GTIFF_BLOCK, blockysize=GTIFF_BLOCK,
                compress="JPEG", photometric="YCBCR", jpeg_quality=90, interleave="pixel",
                BIGTIFF="IF_SAFER")


def _paths(out) -> tuple[Path, Path]:
    if isinstance(out, tuple | list):
        if len(out) != 2:
            raise SegdeepError(f"sample scene: out {out!r} must be a folder or (image_path, labels_path)")
        return Path(out[0]), Path(out[1])
    folder = Path(out)
    if folder.exists() and not folder.is_dir():
        raise SegdeepError(f"{folder}: exists and is not a folder (give a folder for scene.tif and scene_labels.tif)")
    return folder / IMAGE_NAME, folder / LABELS_NAME


def make_sample_scene(
    out: str | Path | tuple[str | Path, str | Path],
    size: int = 1024,
    seed: int = 0,
    gsd: float = 0.5,
    crs: str | CRS = DEFAULT_CRS,
    origin: tuple[float, float] | None = None,
    block_size: int = 512,
    progress: Callable[[int, int], None] | None = None,
) -> tuple[Path, Path]:
    """Write the sample scene: an aerial-like RGB GeoTIFF and its label GeoTIFF.

    ``out`` is a folder (files ``scene.tif`` and ``scene_labels.tif``) or a pair of paths.
    ``size`` is the width = height in pixels, ``gsd`` the pixel size in metres, ``crs`` a projected
    CRS in metres (default UTM 40N), ``origin`` the upper-left corner (x, y) in CRS units (default:
    centred on Dubai). The scene is generated in blocks of ``block_size`` pixels (memory depends on
    the block size only); ``progress(done, total)`` is called after each block. Both files are written
    under temporary names and renamed when complete. Returns ``(image_path, labels_path)``.
    """
    _check(size, gsd, block_size)
    image_path, labels_path = _paths(out)
    crs, transform = _georef(size, gsd, crs, origin)
    for p in (image_path, labels_path):
        if not p.parent.exists():
            try:
                p.parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise SegdeepError(f"{p.parent}: cannot create the folder ({exc})") from None
    layout = Layout(seed, (size * gsd, size * gsd))
    with rasterio.Env(GDAL_CACHEMAX=GDAL_CACHE_MB * 2**20):  # rasterio passes an int on as bytes
        return _write(layout, image_path, labels_path, size, seed, gsd, crs, transform, block_size, progress)


def _write(layout, image_path, labels_path, size, seed, gsd, crs, transform, block_size, progress):
    blocks = [(r, c) for r in range(0, size, block_size) for c in range(0, size, block_size)]
    tmp_image = temp_path(image_path)
    ok = False
    try:
        with rasterio.open(tmp_image, "w", **_image_profile(size, crs, transform)) as dst, \
                LabelWriter(labels_path, size, size, crs=crs, transform=transform, classes=DUBAI_CLASSES) as labels:
            dst.colorinterp = [ColorInterp.red, ColorInterp.green, ColorInterp.blue]
            for band, name in enumerate(("red", "green", "blue"), start=1):
                dst.set_band_description(band, name)
            dst.update_tags(segdeep_sample=f"seed={seed} size={size} gsd={gsd}",
                            source="generated by segdeep (segdeep sample); not real imagery")
            for n, (r, c) in enumerate(blocks, start=1):
                w, h = min(block_size, size - c), min(block_size, size - r)
                window = Window(c, r, w, h)
                rgb, lab = render(layout, c, r, w, h, gsd)
                dst.write(rgb, window=window)
                labels.write(window, lab)
                if progress:
                    progress(n, len(blocks))
        with rasterio.open(tmp_image, "r+") as dst:
            factors = [2**i for i in range(1, 12) if size / 2**i >= GTIFF_BLOCK / 2]
            if factors:
                dst.build_overviews(factors, Resampling.average)
        os.replace(tmp_image, image_path)
        ok = True
    except rasterio.errors.RasterioIOError as exc:
        raise SegdeepError(f"{image_path.parent}: cannot write the sample scene there ({exc})") from None
    finally:
        if not ok:
            with contextlib.suppress(FileNotFoundError):
                tmp_image.unlink()
    return image_path, labels_path



def write_side_by_side(image_path: str | Path, labels_path: str | Path, png_path: str | Path,
                  panel_size: int = 512, colors: int = 256) -> Path:
    """Write a PNG with the image and its colour-coded labels side by side, for people to look at.

    Each panel is at most ``panel_size`` pixels wide (read from the overviews, averaged for the image
    and nearest for the labels). ``colors`` > 0 (default 256) quantises the PNG to that many colours
    (a third of the size); 0 keeps full colour.
    """
    from PIL import Image

    with rasterio.open(image_path) as ds:
        scale = max(1, int(np.ceil(max(ds.width, ds.height) / panel_size)))
        shape = (max(1, ds.height // scale), max(1, ds.width // scale))
        rgb = ds.read([1, 2, 3], out_shape=(3, *shape), resampling=Resampling.average)
    with rasterio.open(labels_path) as ds:
        labels = ds.read(1, out_shape=shape, resampling=Resampling.nearest)
    palette = np.zeros((256, 3), np.uint8)
    for c in DUBAI_CLASSES:
        palette[c.index] = c.color
    gap = np.full((shape[0], 8, 3), 255, np.uint8)
    both = np.concatenate([np.moveaxis(rgb, 0, -1), gap, palette[labels]], axis=1)
    image = Image.fromarray(both)
    if colors:
        image = image.quantize(colors=colors, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
    tmp = temp_path(png_path)
    try:
        image.save(tmp, format="PNG", optimize=True)
        os.replace(tmp, png_path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
    return Path(png_path)
