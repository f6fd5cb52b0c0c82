"""Uncertainty from probabilities (margin of the two best classes) and the regions to look at first."""

from __future__ import annotations

import numpy as np
import pytest
from segdeep.errors import SegdeepError
from segdeep.refine import margin_uncertainty, uncertain_regions


def test_margin_uncertainty_float_and_uint8():
    p = np.zeros((3, 2, 2), np.float32)
    p[:, 0, 0] = (1.0, 0.0, 0.0)  # certain
    p[:, 0, 1] = (0.5, 0.5, 0.0)  # a tie
    p[:, 1, 0] = (0.6, 0.3, 0.1)  # margin 0.3
    # p[:, 1, 1] all zero: nodata
    u = margin_uncertainty(p)
    assert u.dtype == np.float32 and np.allclose(u, [[0.0, 1.0], [0.7, 0.0]])
    assert np.allclose(margin_uncertainty(np.round(p * 255).astype(np.uint8)), u, atol=0.01)
    with pytest.raises(SegdeepError, match="classes x height x width"):
        margin_uncertainty(np.zeros((4, 4)))


def test_regions_ranked_worst_first():
    u = np.zeros((60, 80), np.float32)
    u[5:10, 5:10] = 0.9  # 25 px, score 22.5
    u[30:40, 50:60] = 0.6  # 100 px, score 60: first
    u[50, 70] = 1.0  # one pixel: below min_area
    regions = uncertain_regions(u, threshold=0.5, min_area=16)
    assert [(r.row, r.col, r.width, r.height, r.area) for r in regions] == [(30, 50, 10, 10, 100), (5, 5, 5, 5, 25)]
    assert regions[0].score == pytest.approx(60.0) and regions[0].center_row == pytest.approx(34.5)
    assert uncertain_regions(u, threshold=0.95) == []


def test_default_threshold_splits_a_model_unsure_everywhere():
    rng = np.random.default_rng(0)
    u = np.full((200, 200), 0.7, np.float32) + rng.uniform(0, 0.01, (200, 200)).astype(np.float32)
    u[20:30, 20:30] = 0.99
    u[150:170, 100:110] = 0.98
    assert len(uncertain_regions(u, threshold=0.5)) == 1  # everything: no help
    regions = uncertain_regions(u)  # the least certain 5 %
    first, second = regions[:2]
    assert abs(first.center_row - 159.5) < 1 and abs(first.center_col - 104.5) < 1  # the larger, first
    assert abs(second.center_row - 24.5) < 1 and abs(second.center_col - 24.5) < 1
