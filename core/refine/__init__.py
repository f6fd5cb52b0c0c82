"""Improving label maps after prediction or editing: the dense CRF applied to a label raster (or a
probability raster) with its image, block by block (:func:`refine_raster`) or on arrays in memory
(:func:`refine_labels`, as napari's Refine uses it), and the clean-up filters (removing regions
smaller than a given area, filling holes, a majority filter), and where to look first (the
uncertainty from class probabilities, the least certain regions).

Names are imported on first use: the clean-up filters need no torch, the CRF does.
"""

from __future__ import annotations

from ..lazy import lazy_exports

# Public name -> module of this package that defines it (imported on first use).
_LAZY = {
    "refine_array": "raster",
    "refine_raster": "raster",
    "iter_refine_labels": "labels",
    "refine_labels": "labels",
    "area_to_pixels": "postprocess",
    "fill_holes": "postprocess",
    "majority_filter": "postprocess",
    "pixel_area": "postprocess",
    "remove_small_regions": "postprocess",
    "UncertainRegion": "uncertainty",
    "margin_uncertainty": "uncertainty",
    "uncertain_regions": "uncertainty",
}

__all__ = sorted(_LAZY)


__getattr__, __dir__ = lazy_exports(__name__, _LAZY)
