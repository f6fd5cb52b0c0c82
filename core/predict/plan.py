"""Planning a prediction run: checking its settings and laying out its tiles and blocks.

Shared by :func:`segdeep.predict.run.iter_predict` and :func:`segdeep.distributed.run.iter_predict_distributed`;
no I/O besides opening the truth raster and creating the output folder (:func:`plan_run`), no torch.
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass
from pathlib import Path

from ..errors import SegdeepError
from ..evaluate.report import REPORT_FILES
from ..export.vectorize import format_from_path, vector_outputs
from ..io.paths import check_outputs
from ..io.raster import check_bands
from .config import PredictConfig
from .finish import prepare_out_dir
from .tiles import BlockGrid, Rect, TileGrid, check_tile_overlap, snap_block_size


def model_tile_size(card, tile_size: int | None = None) -> int:
    """Tile size in pixels: ``tile_size`` when given, else the card's, else 512."""
    return int(tile_size or getattr(card, "tile_size", None) or 512)


def default_overlap(tile_size: int) -> int:
    """Default overlap in pixels: 64, or a quarter of the tile for tiles under 256 px."""
    return min(64, int(tile_size) // 4)


def _region(info, window: tuple[int, int, int, int] | None, bounds: tuple[float, ...] | None) -> Rect:
    """The pixels to segment; ``window`` and ``bounds`` are already checked by :class:`PredictConfig`."""
    full = Rect(0, 0, info.width, info.height)
    if bounds is not None:
        if not info.georeferenced:
            raise SegdeepError(f"{info.path}: bounds need a georeferenced raster; use a pixel window instead")
        left, bottom, right, top = bounds
        inv = ~info.transform
        cols, rows = zip(*(inv * (x, y) for x, y in ((left, top), (right, top), (left, bottom), (right, bottom))),
                         strict=True)
        c0, r0 = math.floor(min(cols) + 1e-9), math.floor(min(rows) + 1e-9)
        c1, r1 = math.ceil(max(cols) - 1e-9), math.ceil(max(rows) - 1e-9)
        rect = Rect(c0, r0, c1 - c0, r1 - r0).intersect(full)
        if rect.empty:
            raise SegdeepError(f"bounds {tuple(bounds)} do not overlap {info.path} (bounds {info.bounds})")
        return rect
    if window is not None:
        c, r, w, h = window
        rect = Rect(c, r, w, h)
        if w < 1 or h < 1 or c < 0 or r < 0 or rect.col_end > info.width or rect.row_end > info.height:
            raise SegdeepError(f"window {tuple(window)} is not inside {info.path} ({info.width} x {info.height} px); "
                               "expected col,row,width,height with width, height >= 1")
        return rect
    return full


def predict_outputs(config: PredictConfig, card) -> list[tuple[str, Path]]:
    """``(what, path)`` of every file a run with ``config`` may leave under a final name (for
    :func:`segdeep.io.paths.check_outputs`): the files in ``out_dir`` and the vector output."""
    out = Path(config.out_dir)
    names = ["labels.tif", "labels.tif.aux.xml", "labels.qml", "preview.png", "run.json", "probabilities.tif"]
    names += list(REPORT_FILES) if config.truth is not None else []
    found = [(f"output {name} in --out", out / name) for name in names]
    if config.vector is not None:
        vector = Path(config.vector) if Path(config.vector).is_absolute() else out / config.vector
        with contextlib.suppress(SegdeepError):
            found += [("--vector", p) for p in vector_outputs(vector, format_from_path(vector),
                                                             classes=list(card.classes))]
    return found


def plan_blocks(grid: TileGrid, blocks: BlockGrid, todo, halo: int, raster: Rect):
    """Per block: region (block + halo), tiles to compute, the read rectangle; and for each computed
    tile, the (later block, rect) pieces it must keep."""
    todo_index = {b.index for b in todo}
    assigned: set[tuple[int, int]] = set()
    later: dict[tuple[int, int], list[tuple[int, Rect]]] = {}
    plans = []
    for block in todo:
        region = block.rect.expand(halo).intersect(raster) if halo else block.rect
        own = [t for t in grid.tiles_touching(region) if t not in assigned]
        read = region
        for tile in own:
            assigned.add(tile)
            rect = grid.rect(*tile)
            read = read.union(rect)
            pieces = []
            for j in blocks.blocks_touching(rect.expand(halo)):
                if j > block.index and j in todo_index:
                    other = blocks_rect(blocks, j)
                    other_region = other.expand(halo).intersect(raster) if halo else other
                    piece = rect.intersect(other_region)
                    if not piece.empty:
                        pieces.append((j, piece))
            if pieces:
                later[tile] = pieces
        plans.append((block, region, own, read))
    return plans, later


def blocks_rect(blocks: BlockGrid, index: int) -> Rect:
    rows0 = blocks.area.row_off // blocks.block_size
    cols0 = blocks.area.col_off // blocks.block_size
    n_cols = blocks.shape[1]
    b = blocks.block_size
    br, bc = rows0 + index // n_cols, cols0 + index % n_cols
    return Rect(bc * b, br * b, b, b).intersect(blocks.area)


@dataclass(frozen=True)
class RunPlan:
    """The checked settings and the block layout of one prediction run (:func:`plan_run`)."""

    tile_size: int  # model input, pixels
    overlap: int  # pixels shared by neighbouring tiles
    bands: list[int]  # 1-based raster bands fed to the model
    area: Rect  # region to segment, pixels of the raster
    out: Path  # output folder (created)
    grid: TileGrid  # the global tile grid (anchored at the raster origin)
    block: int  # block side in pixels, snapped to whole tile strides (whole CRF windows with the CRF)
    blocks: BlockGrid  # the blocks covering ``area``
    halo: int  # CRF context around each block, pixels (0 without CRF)
    raster: Rect  # the whole raster


def plan_run(config: PredictConfig, info, card) -> RunPlan:
    """Check a run's settings against the raster (``info``, :func:`segdeep.io.raster.open_raster`) and
    the model card (one-line :class:`SegdeepError` before any compute) and lay out its tiles and
    blocks; creates the output folder."""
    image = config.image
    tile_size = model_tile_size(card, config.tile_size)
    overlap = default_overlap(tile_size) if config.overlap is None else config.overlap
    check_tile_overlap(tile_size, overlap)  # a raster smaller than a tile: the tile is padded (as nodata)
    want = list(card.bands)
    bands = list(config.bands) if config.bands else want
    if len(bands) != len(want):
        raise SegdeepError(f"bands {bands}: the model takes {len(want)} band(s) (card bands {want}); "
                           f"give {len(want)} band numbers")
    if max(bands) > info.count:
        raise SegdeepError(f"{image}: has {info.count} band(s) but the model needs band(s) {bands}; "
                           f"choose {len(bands)} of bands 1-{info.count} with bands=/--bands")
    bands = check_bands(info, bands)
    area = _region(info, config.window, config.bounds)
    check_outputs([("image", image), ("model bundle", config.bundle), ("truth", config.truth)],
                  predict_outputs(config, card))
    out = prepare_out_dir(config.out_dir, truth=config.truth, info=info, vector=config.vector)
    grid = TileGrid(info.width, info.height, tile_size, int(overlap))
    crf = config.crf
    # with the CRF, a block holds whole CRF windows (their grid is anchored at the raster origin)
    block = snap_block_size(config.block_size, grid.stride if crf is None else int(crf.window_size))
    return RunPlan(tile_size, int(overlap), bands, area, out, grid, block, BlockGrid(area, block),
                   int(crf.halo) if crf is not None else 0, Rect(0, 0, info.width, info.height))
