"""Metric area and perimeter in any CRS; geodesic on EPSG:4326, checked against formulas written here
(Vincenty's inverse for edge lengths, the closed-form ellipsoidal area of a lat/lon rectangle)."""

from __future__ import annotations

import math
import sqlite3

import numpy as np
import pyogrio
import pytest
import shapely
from affine import Affine
from rasterio.crs import CRS
from segdeep.classes import ClassInfo
from segdeep.export.measure import has_metric_measures, metric_measures
from segdeep.export.vectorize import vectorize_raster
from segdeep.io import write_labels

A, F = 6378137.0, 1 / 298.257223563  # WGS84
B, E2 = A * (1 - F), F * (2 - F)


def vincenty(lon1: float, lat1: float, lon2: float, lat2: float) -> float:
    """Geodesic distance in metres on WGS84 (Vincenty 1975, inverse problem)."""
    u1, u2 = math.atan((1 - F) * math.tan(math.radians(lat1))), math.atan((1 - F) * math.tan(math.radians(lat2)))
    lam = big_l = math.radians(lon2 - lon1)
    for _ in range(200):
        sl, cl = math.sin(lam), math.cos(lam)
        ss = math.hypot(math.cos(u2) * sl, math.cos(u1) * math.sin(u2) - math.sin(u1) * math.cos(u2) * cl)
        cs = math.sin(u1) * math.sin(u2) + math.cos(u1) * math.cos(u2) * cl
        sigma = math.atan2(ss, cs)
        sa = math.cos(u1) * math.cos(u2) * sl / ss
        c2a = 1 - sa * sa
        c2sm = cs - 2 * math.sin(u1) * math.sin(u2) / c2a
        c = F / 16 * c2a * (4 + F * (4 - 3 * c2a))
        prev, lam = lam, big_l + (1 - c) * F * sa * (sigma + c * ss * (c2sm + c * cs * (-1 + 2 * c2sm ** 2)))
        if abs(lam - prev) < 1e-13:
            break
    u_sq = c2a * (A * A - B * B) / (B * B)
    k1 = u_sq / 1024 * (256 + u_sq * (-128 + u_sq * (74 - 47 * u_sq)))
    ka = 1 + u_sq / 16384 * (4096 + u_sq * (-768 + u_sq * (320 - 175 * u_sq)))
    ds = k1 * ss * (c2sm + k1 / 4 * (cs * (-1 + 2 * c2sm ** 2) - k1 / 6 * c2sm * (-3 + 4 * ss ** 2) * (-3 + 4 * c2sm ** 2)))
    return B * ka * (sigma - ds)


def rect_area(lon1: float, lat1: float, lon2: float, lat2: float) -> float:
    """Area in m^2 on WGS84 between two meridians and two parallels (closed form)."""
    e = math.sqrt(E2)

    def q(lat: float) -> float:
        s = math.sin(math.radians(lat))
        return s / (1 - E2 * s * s) + math.log((1 + e * s) / (1 - e * s)) / (2 * e)

    return abs(math.radians(lon2 - lon1)) * B * B / 2 * abs(q(lat2) - q(lat1))


def ring_length(corners: list[tuple[float, float]]) -> float:
    return sum(vincenty(*corners[i], *corners[(i + 1) % len(corners)]) for i in range(len(corners)))


def test_geodesic_measures_of_a_raster_in_epsg_4326(tmp_path):
    px = 1e-4  # degrees (about 9 x 11 m at 36 N)
    left, top = -115.2, 36.2
    transform = Affine(px, 0, left, 0, -px, top)
    lab = np.zeros((60, 80), dtype=np.uint8)
    lab[10:50, 5:70] = 1  # a 'roof' with a 'yard' hole
    lab[20:30, 30:45] = 2
    classes = [ClassInfo(0, "ground", (0, 0, 0)), ClassInfo(1, "roof", (255, 0, 0)), ClassInfo(2, "yard", (0, 255, 0))]
    path = write_labels(tmp_path / "labels.tif", lab, crs=CRS.from_epsg(4326), transform=transform, classes=classes)
    vectorize_raster(path, tmp_path / "p.gpkg", exclude=[0])
    got = pyogrio.read_dataframe(tmp_path / "p.gpkg", layer="p").set_index("class_name")

    def corners(r0, r1, c0, c1):  # (lon, lat) of a pixel rectangle, counter-clockwise
        x0, x1, y0, y1 = left + c0 * px, left + c1 * px, top - r1 * px, top - r0 * px
        return [(x0, y0), (x1, y0), (x1, y1), (x0, y1)]

    outer, hole = corners(10, 50, 5, 70), corners(20, 30, 30, 45)
    roof_area = rect_area(*outer[0], *outer[2]) - rect_area(*hole[0], *hole[2])
    assert got.loc["roof", "area_m2"] == pytest.approx(roof_area, rel=1e-6)
    assert got.loc["yard", "area_m2"] == pytest.approx(rect_area(*hole[0], *hole[2]), rel=1e-6)
    assert got.loc["roof", "perimeter_m"] == pytest.approx(ring_length(outer) + ring_length(hole), rel=1e-9)
    assert got.loc["yard", "perimeter_m"] == pytest.approx(ring_length(hole), rel=1e-9)
    assert got.loc["roof", "perimeter"] == pytest.approx(2 * (65 + 40) * px + 2 * (15 + 10) * px)  # degrees


def test_projected_units_become_metres_and_pixel_space_has_none():
    square = np.array([shapely.box(0, 0, 100, 50)], dtype=object)
    area, perimeter = metric_measures(square, CRS.from_epsg(32616))
    assert area[0] == pytest.approx(5000.0) and perimeter[0] == pytest.approx(300.0)
    area, perimeter = metric_measures(square, CRS.from_epsg(2236))  # Florida East, US survey feet
    foot = 1200 / 3937
    assert area[0] == pytest.approx(5000.0 * foot * foot) and perimeter[0] == pytest.approx(300.0 * foot)
    assert metric_measures(square, None) is None and not has_metric_measures(None)


@pytest.mark.parametrize("version, user_version", [(None, 10200), ("1.4", 10400)])
def test_geopackage_version(tmp_path, version, user_version):
    lab = np.zeros((20, 20), dtype=np.uint8)
    lab[5:10, 5:10] = 1
    path = write_labels(tmp_path / "l.tif", lab, crs=CRS.from_epsg(32616), transform=Affine(1, 0, 500_000, 0, -1, 3_700_000),
                        classes=[ClassInfo(0, "a", (0, 0, 0)), ClassInfo(1, "b", (9, 9, 9))])
    kwargs = {"gpkg_version": version} if version else {}
    vectorize_raster(path, tmp_path / "p.gpkg", layer_per_class=True, **kwargs)
    con = sqlite3.connect(tmp_path / "p.gpkg")
    try:
        assert con.execute("PRAGMA user_version").fetchone()[0] == user_version
        assert con.execute("PRAGMA application_id").fetchone()[0] == 0x47504B47  # 'GPKG'
    finally:
        con.close()
