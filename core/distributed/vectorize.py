"""Vectorizing on a Dask cluster: blocks are polygonized by the workers, the client merges the
regions cut by block edges and writes the file, as in-process."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np

from ..export.polygonize import iter_polygons
from ..export.vectorize import vectorize_raster
from .client import cluster_map_blocks, connect

__all__ = ["iter_polygons_distributed", "vectorize_distributed"]


def iter_polygons_distributed(client, labels_path: str | Path, *, block_size: int = 2048, exclude=(),
                              workers: int = 1, progress: Callable[[int, int], None] | None = None,
                              stats: dict | None = None, retries: int = 3) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """:func:`segdeep.export.vectorize.iter_polygons` with the blocks polygonized on a Dask cluster; regions cut
    by block edges are merged here, as in-process. ``workers`` is ignored (the cluster's)."""
    return iter_polygons(labels_path, block_size=block_size, exclude=exclude, progress=progress, stats=stats,
                         map_blocks=cluster_map_blocks(client, retries))


def vectorize_distributed(labels_path: str | Path, out_path: str | Path, *, scheduler, **kwargs) -> dict:
    """:func:`segdeep.export.vectorize.vectorize_raster` (same arguments and result) with the blocks
    polygonized on a Dask cluster; attributes, simplification and writing are vectorize_raster's own."""
    kwargs.pop("workers", None)
    with connect(scheduler) as client:
        return vectorize_raster(labels_path, out_path, map_blocks=cluster_map_blocks(client), **kwargs)
