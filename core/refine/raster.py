"""Refine a label or probability raster with the dense CRF, block by block (bounded memory).

The image (any dtype and band count) gives the colours of the bilateral kernel, by the rule of
:mod:`segdeep.crf.colour` (8-bit as it is; other data stretched between the 2nd and 98th percentiles
of the whole raster, computed once before the first block); the second raster is either a label raster
(uint8, one band: probabilities from :func:`segdeep.crf.dense.unary_from_labels` with a confidence) or a
probability raster (one band per class: float 0-1, or uint8 0-255). Each block is refined with a
halo of context (clipped at the raster border), cleaned up (:mod:`segdeep.refine.postprocess`) and
cropped, then written with :class:`segdeep.io.raster.LabelWriter` (temporary name, renamed when
complete; CRS, transform, colour table and class names kept).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from rasterio.windows import Window

from ..classes import NODATA_LABEL, ClassInfo
from ..crf.colour import crf_colours, read_colour_limits
from ..crf.dense import CRFParams, block_windows, dense_crf_params, unary_from_labels
from ..errors import SegdeepError
from ..evaluate.rasters import check_aligned
from ..io.raster import LabelWriter, RasterInfo, open_raster, read_window
from ..models.card import load_classes
from .postprocess import postprocess


def _image_bands(info: RasterInfo, bands: list[int] | None) -> list[int]:
    """The 1-based image bands that give the CRF's colours: ``bands`` (1 to 3 of them), default the
    first three (fewer when the image has fewer; see :mod:`segdeep.crf.colour`)."""
    if bands is None:
        bands = list(range(1, min(3, info.count) + 1))
    if not 1 <= len(bands) <= 3 or any(not 1 <= b <= info.count for b in bands):
        raise SegdeepError(f"{info.path}: --bands must name 1 to 3 bands among 1-{info.count}, got {bands}")
    return list(bands)


def _source_kind(info: RasterInfo, num_classes: int) -> str:
    if info.count == 1:
        if not info.dtype.startswith(("uint", "int")):
            raise SegdeepError(f"{info.path}: a one-band raster must hold integer class labels, got {info.dtype}")
        return "labels"
    if info.count != num_classes:
        raise SegdeepError(f"{info.path}: {info.count} bands but {num_classes} classes; a probability raster has "
                           f"one band per class (give the matching palette with --classes)")
    if info.dtype not in ("uint8", "float16", "float32", "float64"):
        raise SegdeepError(f"{info.path}: probabilities must be float (0-1) or uint8 (0-255), got {info.dtype}")
    return "probs"


def refine_array(image: np.ndarray, source: np.ndarray, params: CRFParams, *, kind: str, num_classes: int,
                 confidence: float = 0.7, valid: np.ndarray | None = None, device=None) -> np.ndarray:
    """Refine one window in memory: ``image`` 3 x H x W uint8; ``source`` H x W labels (``kind``
    "labels", 255 = nodata) or C x H x W probabilities ("probs": float 0-1 or uint8 0-255).
    Returns H x W uint8 labels (255 where ``valid`` is False)."""
    device = torch.device(device) if device is not None else torch.device("cpu")
    if kind == "labels":
        labels = np.where(valid, source, NODATA_LABEL) if valid is not None else source
        probs = unary_from_labels(labels.astype(np.int64), num_classes, confidence, NODATA_LABEL, device=device)
    else:
        p = torch.as_tensor(source, device=device)
        probs = p.float() / 255.0 if p.dtype == torch.uint8 else p.float()
        if valid is not None:
            probs[:, ~torch.as_tensor(valid, device=device)] = 1.0 / num_classes
    out = dense_crf_params(probs, torch.as_tensor(image, device=device), params).argmax(0)
    out = out.to(torch.uint8).cpu().numpy()
    if valid is not None:
        out[~valid] = NODATA_LABEL
    return out


def refine_raster(
    image: str | Path,
    source: str | Path,
    out: str | Path,
    params: CRFParams | None = None,
    *,
    confidence: float = 0.7,
    classes: list[ClassInfo] | str | Path | None = None,
    min_region_px: int = 0,
    fill_holes_px: int = 0,
    majority_size: int = 1,
    block_size: int = 1024,
    halo: int | None = None,
    bands: list[int] | None = None,
    device=None,
    cog: bool = True,
    progress: Callable[[int, int], None] | None = None,
) -> Path:
    """Refine ``source`` (labels or probabilities) with the colours of ``image`` (any dtype; ``bands``:
    1 to 3 1-based bands, default the first three; see :mod:`segdeep.crf.colour`) and write a label
    GeoTIFF at ``out``. Clean-up after the CRF: ``majority_size`` (odd window, 1 = off),
    ``min_region_px``, ``fill_holes_px`` (0 = off). ``block_size`` and ``halo`` are in pixels (``halo`` defaults to
    ``params.halo``, and must also cover ``min_region_px``-sized regions for seam-free clean-up)."""
    params = params or CRFParams()
    palette = classes if isinstance(classes, list) else load_classes(classes)
    img_info = open_raster(image)
    src_info = open_raster(source)
    check_aligned(img_info, src_info, reference="the image")  # the same grid, as evaluate requires
    img_bands = _image_bands(img_info, bands)
    kind = _source_kind(src_info, len(palette))
    if block_size < 64:
        raise SegdeepError(f"block_size must be >= 64 pixels, got {block_size}")
    halo = params.halo if halo is None else int(halo)
    geo = src_info if src_info.georeferenced else img_info
    width, height = img_info.width, img_info.height
    windows = list(block_windows(height, width, block_size, halo))
    limits = read_colour_limits(image, img_bands)  # one stretch for every block
    with LabelWriter(out, width, height, crs=geo.crs, transform=geo.transform, classes=palette, cog=cog) as writer:
        for i, ((r0, c0, bh, bw), (rr, cc, rh, rw)) in enumerate(windows):
            window = Window(cc, rr, rw, rh)
            pixels, img_valid = read_window(str(image), window, img_bands)
            rgb = crf_colours(pixels, limits=limits)
            data, src_valid = read_window(str(source), window)
            valid = img_valid & src_valid
            src = data[0] if kind == "labels" else data
            if kind == "labels":
                given = src[valid & (src != NODATA_LABEL)]
                if given.size and (int(given.min()) < 0 or int(given.max()) >= len(palette)):
                    bad = int(given.max()) if int(given.max()) >= len(palette) else int(given.min())
                    raise SegdeepError(f"{source}: label value {bad} is not a class (0-{len(palette) - 1}) nor "
                                       f"nodata ({NODATA_LABEL}); give the matching palette with --classes")
            labels = refine_array(rgb, src, params, kind=kind, num_classes=len(palette), confidence=confidence,
                                  valid=valid, device=device)
            labels = postprocess(labels, min_region_px=min_region_px, fill_holes_px=fill_holes_px,
                                 majority_size=majority_size)
            writer.write(Window(c0, r0, bw, bh), labels[r0 - rr:r0 - rr + bh, c0 - cc:c0 - cc + bw])
            if progress:
                progress(i + 1, len(windows))
    return Path(out)
