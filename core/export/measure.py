"""Polygon area and perimeter in metres, whatever the CRS.

Projected CRS: planar area and length scaled by the CRS's linear unit (metres, feet, ...), which is
what QGIS reports for a layer in that CRS. Geographic CRS (degrees): geodesic area and perimeter on
the CRS's ellipsoid (Karney's algorithm through pyproj's ``Geod``), each edge a geodesic between its
vertices, as QGIS's ellipsoidal measure. No CRS (pixel coordinates) or a CRS without linear units:
no metric values.
"""

from __future__ import annotations

import numpy as np
import shapely

__all__ = ["metric_measures", "has_metric_measures"]


def _linear_factor(crs) -> float | None:
    try:
        return float(crs.linear_units_factor[1])
    except Exception:  # noqa: BLE001 - a CRS without linear units
        return None


def has_metric_measures(crs) -> bool:
    """Whether :func:`metric_measures` gives metres for polygons in ``crs`` (a rasterio CRS or None)."""
    if crs is None:
        return False
    if crs.is_geographic:
        return True
    return bool(crs.is_projected) and _linear_factor(crs) is not None


def _geod(crs):
    from pyproj import CRS as ProjCRS

    return ProjCRS.from_wkt(crs.to_wkt()).get_geod()


def _geodesic(geoms: np.ndarray, crs) -> tuple[np.ndarray, np.ndarray]:
    """Geodesic (area m^2, perimeter m) of lon/lat polygons; holes are subtracted from the area."""
    n = len(geoms)
    area, perimeter = np.zeros(n), np.zeros(n)
    if n == 0:
        return area, perimeter
    geod = _geod(crs)
    rings, owner = shapely.get_rings(geoms, return_index=True)  # exterior first, then holes
    coords, ring_of = shapely.get_coordinates(rings, return_index=True)
    # Perimeter: all edges in one vectorised call, then summed per polygon.
    same = ring_of[1:] == ring_of[:-1]
    _, _, dist = geod.inv(coords[:-1, 0][same], coords[:-1, 1][same], coords[1:, 0][same], coords[1:, 1][same])
    perimeter = np.bincount(owner[ring_of[:-1][same]], weights=dist, minlength=n)
    # Area: per ring; the exterior counts plus, holes minus, whatever their orientation.
    starts = np.searchsorted(ring_of, np.arange(len(rings)))
    ends = np.append(starts[1:], len(coords))
    first = np.ones(len(rings), dtype=bool)
    first[1:] = owner[1:] != owner[:-1]
    for r in range(len(rings)):
        xy = coords[starts[r]:ends[r] - 1]  # the closing vertex repeats the first
        ring_area = abs(geod.polygon_area_perimeter(xy[:, 0], xy[:, 1])[0])
        area[owner[r]] += ring_area if first[r] else -ring_area
    return area, perimeter


def metric_measures(geoms: np.ndarray, crs, area: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray] | None:
    """``(area in m^2, perimeter in m)`` of each polygon in ``geoms`` (shapely array, coordinates in
    ``crs``), or None when ``crs`` gives no metres (see :func:`has_metric_measures`).

    Projected CRSs: planar measures times the linear unit (``area``, the planar areas in CRS units^2,
    is used when given, e.g. exact pixel counts); geographic CRSs: geodesic on the ellipsoid.
    """
    if not has_metric_measures(crs):
        return None
    geoms = np.asarray(geoms, dtype=object)
    if crs.is_geographic:
        return _geodesic(geoms, crs)
    factor = _linear_factor(crs)
    planar = shapely.area(geoms) if area is None else np.asarray(area, dtype=float)
    return planar * factor * factor, shapely.length(geoms) * factor
