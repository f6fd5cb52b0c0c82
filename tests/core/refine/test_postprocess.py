"""Label-map clean-up: small regions, holes, majority smoothing, m^2 -> pixels."""

from __future__ import annotations

import numpy as np
import pytest
from affine import Affine
from rasterio.crs import CRS
from segdeep.errors import SegdeepError
from segdeep.refine.postprocess import (
    area_to_pixels,
    fill_holes,
    majority_filter,
    postprocess,
    remove_small_regions,
)


def _scene() -> np.ndarray:
    a = np.zeros((20, 30), np.uint8)
    a[:, 15:] = 1            # two large fields
    a[5:7, 3:5] = 2          # 4-px speck inside class 0
    a[10, 20] = 3            # 1-px speck inside class 1
    a[0:3, 13:15] = 2        # 6-px speck on the 0/1 border, mostly touching class 0
    a[15:20, 25:30] = 255    # nodata corner
    a[14, 29] = 4            # 1-px speck touching only nodata and class 1
    return a


def test_remove_small_regions_merges_into_surrounding_majority():
    a = _scene()
    before = a.copy()
    out = remove_small_regions(a, 5)
    np.testing.assert_array_equal(a, before)  # input untouched
    assert out.dtype == np.uint8
    assert (out[5:7, 3:5] == 0).all()
    assert out[10, 20] == 1
    assert (out[0:3, 13:15] == 2).all()  # 6 px >= 5: kept
    assert out[14, 29] == 1
    assert (out[15:20, 25:30] == 255).all()  # nodata stays nodata
    out7 = remove_small_regions(a, 7)
    assert (out7[0:3, 13:15] == 0).all()  # borders class 0 on 5 edges, class 1 on 3
    assert set(np.unique(out7)) == {0, 1, 255}


def test_remove_small_regions_resolves_clusters_of_specks():
    rng = np.random.default_rng(0)
    a = np.zeros((40, 40), np.uint8)
    a[10:20, 10:20] = rng.integers(1, 5, (10, 10))  # salt-and-pepper patch inside class 0
    out = remove_small_regions(a, 200)
    assert (out == 0).all()


def test_connectivity_changes_what_a_region_is():
    a = np.zeros((6, 6), np.uint8)
    a[1, 1] = a[2, 2] = a[3, 3] = 1  # a diagonal line: three 1-px regions, or one 3-px region
    assert (remove_small_regions(a, 2, connectivity=4) == 0).all()
    assert (remove_small_regions(a, 2, connectivity=8) == a).all()


def test_fill_holes_only_fills_enclosed_small_regions():
    a = np.zeros((12, 12), np.uint8)
    a[3:6, 3:6] = 1          # 9-px hole in class 0
    a[0:2, 8:10] = 2         # touches the border: not a hole
    a[8, 8] = 255            # nodata gap
    out = fill_holes(a, 9)
    assert (out[3:6, 3:6] == 0).all()
    assert (out[0:2, 8:10] == 2).all()
    assert out[8, 8] == 255
    assert (fill_holes(a, 8)[3:6, 3:6] == 1).all()  # larger than the limit
    assert fill_holes(a, 9, fill_nodata=True)[8, 8] == 0
    b = a.copy()
    b[5, 6] = 2              # the region now touches two classes: not a hole
    assert (fill_holes(b, 9)[3:6, 3:6] == 1).all()


def test_majority_filter():
    a = np.zeros((9, 9), np.uint8)
    a[4, 4] = 1
    a[:, 7:] = 2
    a[0, 0] = 255
    out = majority_filter(a, 3)
    assert out[4, 4] == 0
    assert (out[:, 8] == 2).all() and out[0, 0] == 255
    assert (majority_filter(a, 1) == a).all()
    with pytest.raises(SegdeepError, match="odd"):
        majority_filter(a, 4)


def test_area_to_pixels():
    t = Affine(0.5, 0, 1000, 0, -0.5, 2000)  # 0.25 m^2 pixels
    assert area_to_pixels(10, t, CRS.from_epsg(32640)) == 40
    assert area_to_pixels(10.1, t) == 41
    with pytest.raises(SegdeepError, match="geographic"):
        area_to_pixels(10, t, CRS.from_epsg(4326))


def test_postprocess_chain_and_errors():
    a = _scene()
    out = postprocess(a, min_region_px=5, fill_holes_px=0, majority_size=1)
    np.testing.assert_array_equal(out, remove_small_regions(a, 5))
    with pytest.raises(SegdeepError, match="2-D integer"):
        remove_small_regions(np.zeros((3, 3), np.float32), 2)
    with pytest.raises(SegdeepError, match="min_size_px"):
        remove_small_regions(a, -1)
