"""Clean-up of label maps: small-region removal, hole filling, majority smoothing.

All functions take a 2-D integer label map (class indices; ``nodata``, default 255, marks pixels
with no data), return a new uint8 map and never modify their input. Nodata pixels are never
relabelled and never used as a replacement. Sizes are in pixels; :func:`area_to_pixels` converts
square metres with the raster's transform. Connected regions use 4-connectivity (edge neighbours)
unless ``connectivity=8``.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import ndimage

from ..classes import NODATA_LABEL
from ..errors import SegdeepError


def _check(labels, name: str) -> np.ndarray:
    a = np.asarray(labels)
    if a.ndim != 2 or not np.issubdtype(a.dtype, np.integer):
        raise SegdeepError(f"{name}: labels must be a 2-D integer array (height x width), got {a.shape} {a.dtype}")
    if a.size and (a.min() < 0 or a.max() > 255):
        raise SegdeepError(f"{name}: label values must be 0-255, got {a.min()}..{a.max()}")
    return a.astype(np.uint8, copy=True)


def _structure(connectivity: int) -> np.ndarray:
    if connectivity not in (4, 8):
        raise SegdeepError(f"connectivity must be 4 or 8, got {connectivity!r}")
    return ndimage.generate_binary_structure(2, 1 if connectivity == 4 else 2)


def _components(labels: np.ndarray, nodata: int, connectivity: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Connected regions of equal label: (region id per pixel (0 = nodata), region class, region size)."""
    structure = _structure(connectivity)
    regions = np.zeros(labels.shape, np.int64)
    classes = [0]
    offset = 0
    for k in np.unique(labels):
        if k == nodata:
            continue
        lab, n = ndimage.label(labels == k, structure=structure)
        regions[lab > 0] = lab[lab > 0] + offset
        classes += [int(k)] * n
        offset += n
    sizes = np.bincount(regions.ravel(), minlength=offset + 1)
    return regions, np.asarray(classes, np.int64), sizes


def _adjacent_pairs(regions: np.ndarray, connectivity: int) -> tuple[np.ndarray, np.ndarray]:
    """Pairs (a, b) of different regions that touch, in both directions (with multiplicity = edge count)."""
    pairs = [(regions[:, :-1], regions[:, 1:]), (regions[:-1, :], regions[1:, :])]
    if connectivity == 8:
        pairs += [(regions[:-1, :-1], regions[1:, 1:]), (regions[:-1, 1:], regions[1:, :-1])]
    a = np.concatenate([p[0].ravel() for p in pairs])
    b = np.concatenate([p[1].ravel() for p in pairs])
    keep = (a != b) & (a > 0) & (b > 0)
    a, b = a[keep], b[keep]
    return np.concatenate([a, b]), np.concatenate([b, a])


def _majority_neighbour(a: np.ndarray, b_class: np.ndarray, num_regions: int) -> np.ndarray:
    """For each region, the class it shares most boundary with (ties: the smaller class index;
    -1 when it has no neighbour)."""
    out = np.full(num_regions, -1, np.int64)
    if a.size == 0:
        return out
    pairs, counts = np.unique(a * 512 + b_class, return_counts=True)
    region, cls = pairs // 512, pairs % 512
    order = np.lexsort((cls, -counts, region))
    region, cls = region[order], cls[order]
    first = np.ones(region.size, bool)
    first[1:] = region[1:] != region[:-1]
    out[region[first]] = cls[first]
    return out


def remove_small_regions(labels, min_size_px: int, nodata: int = NODATA_LABEL, connectivity: int = 4,
                         max_passes: int = 10) -> np.ndarray:
    """Merge connected regions smaller than ``min_size_px`` pixels into the class they share most
    boundary with (large neighbours first; clusters of small regions are resolved over several
    passes). Regions touching only nodata stay as they are."""
    out = _check(labels, "remove_small_regions")
    if int(min_size_px) != min_size_px or min_size_px < 0:
        raise SegdeepError(f"remove_small_regions: min_size_px must be a whole number >= 0, got {min_size_px!r}")
    if min_size_px <= 1:
        return out
    allow_small = False
    for _ in range(max_passes):
        regions, classes, sizes = _components(out, nodata, connectivity)
        small = sizes < min_size_px
        small[0] = False
        if not small.any():
            break
        a, b = _adjacent_pairs(regions, connectivity)
        keep = small[a] & (allow_small | ~small[b])
        target = _majority_neighbour(a[keep], classes[b[keep]], len(sizes))
        change = small & (target >= 0)
        if not change.any():
            if allow_small:
                break
            allow_small = True
            continue
        allow_small = False
        lut = np.where(change, target, classes)
        lut[0] = nodata
        out = np.where(regions > 0, lut[regions], out).astype(np.uint8)
    return out


def fill_holes(labels, max_hole_px: int, nodata: int = NODATA_LABEL, connectivity: int = 4,
               fill_nodata: bool = False) -> np.ndarray:
    """Fill holes: regions of at most ``max_hole_px`` pixels enclosed by a single other class (not
    touching the image border) take that class. With ``fill_nodata``, enclosed nodata gaps are
    filled too."""
    out = _check(labels, "fill_holes")
    if int(max_hole_px) != max_hole_px or max_hole_px < 0:
        raise SegdeepError(f"fill_holes: max_hole_px must be a whole number >= 0, got {max_hole_px!r}")
    if max_hole_px == 0:
        return out
    # Nodata is given its own class id (256) so that gaps can be holes too.
    work = out.astype(np.int64)
    gaps = out == nodata
    work[gaps] = 256
    regions, classes, sizes = _components(work, -1, connectivity)
    a, b = _adjacent_pairs(regions, connectivity)
    nb_class = classes[b]
    n = len(sizes)
    lo = np.full(n, 1 << 30, np.int64)
    hi = np.full(n, -1, np.int64)
    np.minimum.at(lo, a, nb_class)
    np.maximum.at(hi, a, nb_class)
    border = np.unique(np.concatenate([regions[0], regions[-1], regions[:, 0], regions[:, -1]]))
    hole = (sizes <= max_hole_px) & (lo == hi) & (hi >= 0) & (hi != 256)
    hole[border] = False
    hole[0] = False
    if not fill_nodata:
        hole &= classes != 256
    lut = np.where(hole, hi, classes)
    result = lut[regions]
    result[result == 256] = nodata
    return result.astype(np.uint8)


def majority_filter(labels, size: int = 3, nodata: int = NODATA_LABEL) -> np.ndarray:
    """Replace each pixel by the most frequent class in the ``size`` x ``size`` window around it
    (ties keep the pixel's own class; nodata neither votes nor changes)."""
    out = _check(labels, "majority_filter")
    if int(size) != size or size < 1 or size % 2 == 0:
        raise SegdeepError(f"majority_filter: size must be an odd whole number >= 1, got {size!r}")
    if size == 1:
        return out
    classes = [int(k) for k in np.unique(out) if k != nodata]
    if len(classes) < 2:
        return out
    votes = np.stack([ndimage.uniform_filter((out == k).astype(np.float32), size, mode="constant") for k in classes])
    for i, k in enumerate(classes):  # a tie goes to the current class
        votes[i][out == k] += 0.5 / (size * size)
    winner = np.asarray(classes, np.uint8)[votes.argmax(0)]
    return np.where(out == nodata, out, winner).astype(np.uint8)


def pixel_area(transform, crs=None) -> float:
    """Area of one pixel in square CRS units (m^2 for projected CRSs in metres)."""
    if crs is not None and getattr(crs, "is_geographic", False):
        raise SegdeepError(f"the raster's CRS ({crs}) is geographic (degrees): give sizes in pixels, "
                           "not square metres")
    area = abs(transform.a * transform.e - transform.b * transform.d)
    if not area > 0:
        raise SegdeepError(f"the raster's transform {tuple(transform)[:6]} has zero pixel area")
    return float(area)


def area_to_pixels(area_m2: float, transform, crs=None) -> int:
    """Smallest whole number of pixels covering ``area_m2`` square metres (rounded up)."""
    if area_m2 < 0:
        raise SegdeepError(f"area must be >= 0 square metres, got {area_m2!r}")
    return int(math.ceil(area_m2 / pixel_area(transform, crs) - 1e-9))


def postprocess(labels, min_region_px: int = 0, fill_holes_px: int = 0, majority_size: int = 1,
                nodata: int = NODATA_LABEL) -> np.ndarray:
    """The clean-up chain used by predict/refine: majority smoothing, small-region removal, hole
    filling, in that order (each step skipped when its size is 0 / 1)."""
    out = _check(labels, "postprocess")
    if majority_size > 1:
        out = majority_filter(out, majority_size, nodata)
    if min_region_px > 1:
        out = remove_small_regions(out, min_region_px, nodata)
    if fill_holes_px > 0:
        out = fill_holes(out, fill_holes_px, nodata)
    return out
