"""Pure geometry of tiled inference: the global tile grid, the block grid and the blend weights.

All coordinates are in pixels of the source raster (column, row), with (0, 0) its top-left corner.

- **Tiles** (model inputs, ``tile_size`` x ``tile_size``) start at multiples of
  ``stride = tile_size - overlap`` in both directions: one grid for the whole raster, whatever the
  output region or block size. Tiles at the right/bottom edge may extend past the raster (they are
  padded there), so the model input never shrinks.
- **Blocks** (the unit of work, memory and resume) start at multiples of ``block_size`` rounded up to
  a whole number of strides (of CRF windows when the CRF runs), clipped to the output region.
- **Blend weights** are a separable window per tile: 1 in the middle and a sin^2 ramp over the
  ``overlap`` pixels on each side that has a neighbouring tile. Neighbouring ramps add up to exactly 1,
  so the weights of the tiles covering any pixel form a partition of unity (requires
  ``overlap <= tile_size / 2``): blended probabilities need no renormalisation and there are no seams.

No I/O and no torch here.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from ..errors import SegdeepError


@dataclass(frozen=True)
class Rect:
    """A pixel rectangle: ``col_off, row_off, width, height`` (as rasterio's ``Window``)."""

    col_off: int
    row_off: int
    width: int
    height: int

    @property
    def col_end(self) -> int:
        return self.col_off + self.width

    @property
    def row_end(self) -> int:
        return self.row_off + self.height

    @property
    def empty(self) -> bool:
        return self.width <= 0 or self.height <= 0

    def intersect(self, other: Rect) -> Rect:
        """The overlap of two rectangles (possibly empty: width or height 0)."""
        c0, r0 = max(self.col_off, other.col_off), max(self.row_off, other.row_off)
        c1, r1 = min(self.col_end, other.col_end), min(self.row_end, other.row_end)
        return Rect(c0, r0, max(0, c1 - c0), max(0, r1 - r0))

    def union(self, other: Rect) -> Rect:
        """The bounding box of two rectangles."""
        c0, r0 = min(self.col_off, other.col_off), min(self.row_off, other.row_off)
        c1, r1 = max(self.col_end, other.col_end), max(self.row_end, other.row_end)
        return Rect(c0, r0, c1 - c0, r1 - r0)

    def expand(self, margin: int) -> Rect:
        """Grow by ``margin`` pixels on every side."""
        return Rect(self.col_off - margin, self.row_off - margin, self.width + 2 * margin,
                    self.height + 2 * margin)

    def slices(self, within: Rect | None = None) -> tuple[slice, slice]:
        """(row slice, column slice) of this rectangle inside an array covering ``within``."""
        c0, r0 = (within.col_off, within.row_off) if within else (0, 0)
        return (slice(self.row_off - r0, self.row_end - r0), slice(self.col_off - c0, self.col_end - c0))


def check_whole(value, what: str, minimum: int) -> int:
    """``value`` as an int, or a one-line :class:`SegdeepError` unless it is a whole number of pixels
    >= ``minimum`` (0 or 1); ``what`` names the setting."""
    try:
        ok = int(value) == value and value >= minimum and not isinstance(value, bool)
    except (TypeError, ValueError):
        ok = False
    if not ok:
        rule = "a positive whole number of pixels" if minimum == 1 else f"a whole number of pixels >= {minimum}"
        raise SegdeepError(f"{what} {value!r} must be {rule}")
    return int(value)


def check_tile_overlap(tile_size: int, overlap: int) -> None:
    """Raise :class:`SegdeepError` unless ``tile_size`` and ``overlap`` (pixels) fit each other."""
    check_whole(tile_size, "tile size", minimum=1)
    check_whole(overlap, "overlap", minimum=0)
    if overlap >= tile_size:
        raise SegdeepError(f"overlap {overlap} must be smaller than the tile size {tile_size}")
    if 2 * overlap > tile_size:
        raise SegdeepError(f"overlap {overlap} is more than half the tile size {tile_size}; "
                           f"use an overlap of at most {tile_size // 2}")


def check_tiling(tile_size: int, overlap: int, width: int, height: int, where: str = "image") -> None:
    """Raise :class:`SegdeepError` unless ``tile_size`` / ``overlap`` (pixels) suit a raster."""
    check_tile_overlap(tile_size, overlap)
    if tile_size > width or tile_size > height:
        raise SegdeepError(f"{where}: tile size {tile_size} is larger than the image ({width} x {height} px); "
                           f"use a tile size of at most {min(width, height)}")


def snap_block_size(block_size: int, stride: int) -> int:
    """``block_size`` rounded up to a whole number of ``stride`` pixels (the tile stride, or the CRF
    window with the CRF), at least one."""
    check_whole(block_size, "block size", minimum=1)
    return max(1, math.ceil(block_size / stride)) * stride


def _axis_count(length: int, tile_size: int, stride: int) -> int:
    return 1 + max(0, math.ceil((length - tile_size) / stride))


@dataclass(frozen=True)
class TileGrid:
    """The global tile grid of a ``width`` x ``height`` raster (pixels)."""

    width: int
    height: int
    tile_size: int
    overlap: int

    @property
    def stride(self) -> int:
        return self.tile_size - self.overlap

    @property
    def n_rows(self) -> int:
        return _axis_count(self.height, self.tile_size, self.stride)

    @property
    def n_cols(self) -> int:
        return _axis_count(self.width, self.tile_size, self.stride)

    def rect(self, row: int, col: int) -> Rect:
        """Pixel rectangle of tile (row, col) of the grid (may extend past the raster)."""
        s = self.stride
        return Rect(col * s, row * s, self.tile_size, self.tile_size)

    def _range(self, start: int, end: int, n: int) -> range:
        s, t = self.stride, self.tile_size
        if end <= start:
            return range(0)
        first = max(0, (start - t) // s + 1)
        last = min(n - 1, (end - 1) // s)
        return range(first, last + 1)

    def touching(self, rect: Rect) -> tuple[range, range]:
        """(tile rows, tile columns) of the tiles that overlap ``rect``."""
        return (self._range(rect.row_off, rect.row_end, self.n_rows),
                self._range(rect.col_off, rect.col_end, self.n_cols))

    def tiles_touching(self, rect: Rect) -> Iterator[tuple[int, int]]:
        """(row, col) of every tile overlapping ``rect``, in row-major order."""
        rows, cols = self.touching(rect)
        for r in rows:
            for c in cols:
                yield r, c

    def weights(self, row: int, col: int) -> np.ndarray:
        """Blend weights (float32, tile_size x tile_size) of tile (row, col); see the module notes."""
        wy = blend_ramp(self.tile_size, self.overlap, first=row == 0, last=row == self.n_rows - 1)
        wx = blend_ramp(self.tile_size, self.overlap, first=col == 0, last=col == self.n_cols - 1)
        return np.outer(wy, wx)


def blend_ramp(tile_size: int, overlap: int, *, first: bool = False, last: bool = False) -> np.ndarray:
    """1-D blend weights (float32, length ``tile_size``): sin^2 ramps over ``overlap`` pixels.

    A side without a neighbouring tile (``first``: left/top, ``last``: right/bottom) keeps weight 1.
    Ramp values are ``sin^2(pi/2 * (k + 0.5) / overlap)`` for k = 0 .. overlap-1, so a tile's falling
    ramp and its neighbour's rising ramp add up to 1 at every pixel, and no weight is 0.
    """
    w = np.ones(tile_size, dtype=np.float64)
    if overlap > 0:
        ramp = np.sin(0.5 * np.pi * (np.arange(overlap) + 0.5) / overlap) ** 2
        if not first:
            w[:overlap] = ramp
        if not last:
            w[tile_size - overlap:] = ramp[::-1]
    return w.astype(np.float32)


@dataclass(frozen=True)
class Block:
    """One block: its position in the block grid and its pixel rectangle (inside the output area)."""

    index: int  # row-major position among the blocks of the output area
    row: int  # block-grid row (global, anchored at the raster origin)
    col: int
    rect: Rect


@dataclass(frozen=True)
class BlockGrid:
    """Blocks of ``block_size`` pixels (a multiple of the stride or CRF window), anchored at the raster origin,
    clipped to ``area`` (the output region)."""

    area: Rect
    block_size: int

    def _axis(self, start: int, length: int) -> range:
        b = self.block_size
        return range(start // b, (start + length - 1) // b + 1)

    @property
    def shape(self) -> tuple[int, int]:
        """(rows, columns) of blocks."""
        return (len(self._axis(self.area.row_off, self.area.height)),
                len(self._axis(self.area.col_off, self.area.width)))

    def __len__(self) -> int:
        rows, cols = self.shape
        return rows * cols

    def __iter__(self) -> Iterator[Block]:
        b = self.block_size
        i = 0
        for br in self._axis(self.area.row_off, self.area.height):
            for bc in self._axis(self.area.col_off, self.area.width):
                rect = Rect(bc * b, br * b, b, b).intersect(self.area)
                yield Block(i, br, bc, rect)
                i += 1

    def blocks_touching(self, rect: Rect) -> list[int]:
        """Indices of the blocks whose rectangles overlap ``rect``."""
        inter = rect.intersect(self.area)
        if inter.empty:
            return []
        b = self.block_size
        rows0 = self._axis(self.area.row_off, self.area.height)[0]
        cols = self._axis(self.area.col_off, self.area.width)
        n_cols = len(cols)
        out = []
        for br in range(inter.row_off // b, (inter.row_end - 1) // b + 1):
            for bc in range(inter.col_off // b, (inter.col_end - 1) // b + 1):
                out.append((br - rows0) * n_cols + (bc - cols[0]))
        return out
