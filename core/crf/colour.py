"""The colours the dense CRF compares: one rule for every image, dtype and band count.

The CRF's appearance (bilateral) kernel measures colour differences in 8-bit levels
(``bilateral_srgb`` is a width in 0-255 levels), so every image is turned into 3 x H x W uint8
the same way, whichever path refines it (``segdeep predict --crf`` / :func:`predict_array`,
``segdeep refine`` and napari's Refine):

Bands
    the first three bands (the caller chooses which: the model's bands for ``predict``, ``--bands``
    for ``refine``, the layer's bands in napari); one band is repeated (grey: R = G = B); two
    bands get a third band of zeros (which adds nothing to colour differences).
8-bit imagery (uint8)
    used as it is, pixel for pixel.
Any other dtype (uint16, int16, float, ...)
    each band is stretched linearly between its 2nd and 98th percentiles to 0-255 (rounded, clipped)
    -- the stretch of ``segdeep preview``, so the CRF sees the contrast the preview shows. The
    percentiles are **statistics of the whole image**, over its valid pixels only (nodata and NaN/inf
    excluded), taken once (from an evenly spread sample of at most :data:`SAMPLE_PIXELS` pixels, read
    from the overviews when a raster has them) and applied to every block, so blocks never differ
    (no seams) and a region gets the colours it has in the whole image. NaN becomes 0; a band
    without valid pixels or with one value only becomes 0.

The model card's normalisation ``scale`` plays no part: ``segdeep refine`` and napari have no model,
and the scale is chosen for the network, not for contrast (reflectance scaled by 1/10000 would put
most pixels in a few dark levels, where the colour kernel sees no edges).

For blocks of a raster: :func:`read_colour_limits` once, then :func:`crf_colours` with
``limits=`` for each block. For an image in memory: :func:`crf_colours` alone.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..errors import SegdeepError

#: Percentiles (of each band's valid pixels) mapped to levels 0 and 255 for non-8-bit imagery.
LOW_PERCENTILE, HIGH_PERCENTILE = 2.0, 98.0
#: Statistics are taken from at most this many pixels (an evenly spaced sample; 2048 x 2048).
SAMPLE_PIXELS = 2048 * 2048

#: (low, high) value per output band, for the stretch to 0-255.
Limits = tuple[tuple[float, float], ...]


def _stride(height: int, width: int, max_pixels: int) -> int:
    """Step (pixels) of the sample: 1 when the image has at most ``max_pixels`` pixels."""
    return max(1, math.ceil(math.sqrt(height * width / max_pixels)))


def percentile_limits(image: np.ndarray, valid: np.ndarray | None = None, *, low: float = LOW_PERCENTILE,
                      high: float = HIGH_PERCENTILE, max_pixels: int = SAMPLE_PIXELS) -> Limits:
    """The ``low`` and ``high`` percentiles of each band (bands x h x w) over its finite pixels where
    ``valid`` (bool h x w; default all); every ``k``-th row and column when the image has more than
    ``max_pixels`` pixels. A band without such pixels gets (0, 0)."""
    k = _stride(image.shape[1], image.shape[2], max_pixels)
    sample = image[:, ::k, ::k]
    mask = None if valid is None else np.asarray(valid, dtype=bool)[::k, ::k]
    limits = []
    for band in sample:
        values = band[mask] if mask is not None else band.ravel()
        values = values.astype(np.float64)
        values = values[np.isfinite(values)]
        if values.size == 0:
            limits.append((0.0, 0.0))
            continue
        lo, hi = np.percentile(values, [low, high])
        limits.append((float(lo), float(hi)))
    return tuple(limits)


def apply_limits(image: np.ndarray, limits: Limits, rows: int = 1024) -> np.ndarray:
    """Bands (bands x h x w) -> uint8: ``(value - low) * 255 / (high - low)``, rounded and clipped to
    0-255; NaN -> 0; a band with ``high <= low`` -> 0. Done ``rows`` rows at a time (float64)."""
    if len(limits) != image.shape[0]:
        raise ValueError(f"{len(limits)} (low, high) limits for {image.shape[0]} bands")
    out = np.zeros(image.shape, dtype=np.uint8)
    for i, (lo, hi) in enumerate(limits):
        if not hi > lo:
            continue
        factor = 255.0 / (hi - lo)
        for r in range(0, image.shape[1], rows):
            v = image[i, r:r + rows].astype(np.float64)
            v -= lo
            v *= factor
            np.nan_to_num(v, copy=False, nan=0.0, posinf=255.0, neginf=0.0)
            np.rint(v, out=v)
            np.clip(v, 0.0, 255.0, out=v)
            out[i, r:r + rows] = v
    return out


def _as_bands(image: np.ndarray) -> np.ndarray:
    image = np.asarray(image)
    if image.ndim == 2:
        image = image[None]
    if image.ndim != 3 or image.shape[0] == 0:
        raise SegdeepError(f"image must be bands x height x width, got shape {image.shape}")
    return image


def _three(image: np.ndarray) -> np.ndarray:
    """The first three bands; one band repeated; two bands and a band of zeros."""
    if image.shape[0] >= 3:
        return image[:3]
    if image.shape[0] == 1:
        return np.repeat(image, 3, axis=0)
    return np.concatenate([image, np.zeros_like(image[:1])])


def colour_limits(image: np.ndarray, *, valid: np.ndarray | None = None) -> Limits | None:
    """The stretch limits of ``image`` (bands x h x w, or h x w) under the rule of this module, one
    (low, high) pair per colour band; None for 8-bit imagery (used as it is). ``valid``: bool h x w,
    False for nodata pixels (left out of the statistics)."""
    image = _as_bands(image)
    if image.dtype == np.uint8:
        return None
    limits = percentile_limits(image[:3], valid)
    if len(limits) == 1:
        return limits * 3
    return limits if len(limits) == 3 else (*limits, (0.0, 0.0))


def read_colour_limits(path: str | Path, bands: Sequence[int] | None = None, *,
                       max_pixels: int = SAMPLE_PIXELS) -> Limits | None:
    """:func:`colour_limits` of a whole raster: ``bands`` 1-based (default all; the first three are
    the colours). Read decimated (nearest, GDAL uses overviews when present) to at most
    ``max_pixels`` pixels, the size :func:`colour_limits` samples an array to, so an image of at
    most ``max_pixels`` pixels gets the same limits from the file and from memory. Nodata / masked
    pixels are left out. None for 8-bit rasters, without reading pixels."""
    from rasterio.enums import Resampling

    from ..io.raster import open_dataset

    with open_dataset(path) as ds:
        bands = list(bands) if bands else list(range(1, ds.count + 1))
        bands = bands[:3]
        if ds.dtypes[bands[0] - 1] == "uint8":
            return None
        k = _stride(ds.height, ds.width, max_pixels)
        shape = (len(bands), math.ceil(ds.height / k), math.ceil(ds.width / k))
        if k == 1:
            data, masks = ds.read(bands), ds.read_masks(bands)
        else:
            data = ds.read(bands, out_shape=shape, resampling=Resampling.nearest)
            masks = ds.read_masks(bands, out_shape=shape, resampling=Resampling.nearest)
    return colour_limits(data, valid=(masks > 0).any(axis=0))


def crf_colours(image: np.ndarray, *, valid: np.ndarray | None = None, limits: Limits | None = None) -> np.ndarray:
    """3 x h x w uint8 colours for the CRF's appearance kernel from ``image`` (bands x h x w, or
    h x w, any dtype), by the rule of this module.

    ``limits``: the stretch of the whole image (:func:`read_colour_limits` /
    :func:`colour_limits`), required for a block of a larger image so that every block gets the
    same stretch; default: computed from ``image`` itself, over its ``valid`` pixels (bool h x w).
    Ignored for 8-bit imagery, which is returned as it is (its first three bands).
    """
    image = _as_bands(image)
    bands = _three(image)
    if image.dtype == np.uint8:
        return np.ascontiguousarray(bands)
    if limits is None:
        limits = colour_limits(image, valid=valid)
    return apply_limits(bands, limits)
