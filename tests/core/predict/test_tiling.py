"""Geometry of tiled inference: tile grid, block grid, blend weights."""

from __future__ import annotations

import numpy as np
import pytest
from segdeep.errors import SegdeepError
from segdeep.predict.tiles import (
    BlockGrid,
    Rect,
    TileGrid,
    blend_ramp,
    check_tiling,
    snap_block_size,
)


@pytest.mark.parametrize("width,height,tile,overlap", [(300, 250, 64, 16), (512, 512, 128, 64), (100, 97, 32, 0),
                                                        (129, 64, 64, 31)])
def test_blend_weights_are_a_partition_of_unity(width, height, tile, overlap):
    """Weights of the tiles covering each pixel add up to 1, so blending needs no normalisation."""
    grid = TileGrid(width, height, tile, overlap)
    total = np.zeros((grid.n_rows * grid.stride + tile, grid.n_cols * grid.stride + tile))
    count = np.zeros_like(total)
    for r in range(grid.n_rows):
        for c in range(grid.n_cols):
            rect = grid.rect(r, c)
            total[rect.slices()] += grid.weights(r, c)
            count[rect.slices()] += 1
    inside = total[:height, :width]
    assert np.allclose(inside, 1.0, atol=1e-6)
    assert count[:height, :width].min() >= 1  # every pixel covered
    assert grid.weights(0, 0).min() > 0


def test_tiles_start_on_one_global_grid_and_cover_the_raster():
    grid = TileGrid(1000, 700, 256, 64)
    assert grid.stride == 192
    assert grid.rect(2, 3) == Rect(576, 384, 256, 256)
    last = grid.rect(grid.n_rows - 1, grid.n_cols - 1)
    assert last.col_end >= 1000 and last.row_end >= 700
    assert last.col_off < 1000 and last.row_off < 700  # no tile lies wholly outside


@pytest.mark.parametrize("rect", [Rect(0, 0, 10, 10), Rect(190, 190, 3, 3), Rect(500, 300, 400, 350),
                                  Rect(999, 699, 1, 1), Rect(0, 0, 1000, 700)])
def test_tiles_touching_matches_brute_force(rect):
    grid = TileGrid(1000, 700, 256, 64)
    brute = [(r, c) for r in range(grid.n_rows) for c in range(grid.n_cols)
             if not grid.rect(r, c).intersect(rect).empty]
    assert list(grid.tiles_touching(rect)) == brute


def test_blend_ramp_keeps_weight_one_at_raster_edges():
    w = blend_ramp(64, 16, first=True, last=False)
    assert w[0] == 1 and w[-1] < 0.01 and w[-1] > 0
    np.testing.assert_allclose(blend_ramp(64, 16)[:16] + blend_ramp(64, 16)[48:], 1.0, atol=1e-6)


def test_block_grid_partitions_the_area_and_is_anchored_at_the_origin():
    area = Rect(100, 50, 700, 500)
    blocks = BlockGrid(area, 256)
    seen = np.zeros((area.row_end, area.col_end), dtype=int)
    for i, b in enumerate(blocks):
        assert b.index == i
        seen[b.rect.slices()] += 1
        assert b.rect.col_off % 256 == 0 or b.rect.col_off == area.col_off
    assert (seen[50:, 100:] == 1).all() and seen.sum() == 700 * 500
    probe = Rect(250, 250, 20, 20)
    brute = [b.index for b in blocks if not b.rect.intersect(probe).empty]
    assert blocks.blocks_touching(probe) == brute


def test_block_size_snaps_up_to_whole_strides():
    assert snap_block_size(2048, 448) == 2240
    assert snap_block_size(100, 448) == 448
    assert snap_block_size(896, 448) == 896


@pytest.mark.parametrize("tile,overlap,msg", [(64, 64, "smaller than the tile"), (64, 40, "half"),
                                              (512, 16, "larger than the image"), (0, 0, "positive"),
                                              (64, -1, ">= 0")])
def test_bad_tiling_is_a_clear_error(tile, overlap, msg):
    with pytest.raises(SegdeepError, match=msg):
        check_tiling(tile, overlap, 300, 200)


def test_fixed_point_argmax_equals_numpy_argmax_with_ties():
    from segdeep.predict.engine import argmax_fixed

    rng = np.random.default_rng(0)
    acc = rng.integers(0, 2**24, (6, 50, 40)).astype(np.int32)
    acc[3, :10] = acc[1, :10]  # ties: the first class wins
    acc[:, 20] = 0
    assert np.array_equal(argmax_fixed(acc), np.argmax(acc, axis=0))
    assert np.array_equal(argmax_fixed(acc[:, 5:30, 7:33]), np.argmax(acc[:, 5:30, 7:33], axis=0))
