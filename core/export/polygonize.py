"""Streaming polygonization of a label raster in global pixel coordinates, seam-free across blocks.

Each block is polygonized by GDAL's polygonizer (:mod:`segdeep.export.gdal_shapes`, returning WKB; else
:func:`rasterio.features.shapes`, the same polygons) with 4-connectivity, so pixels touching
only at a corner are separate polygons and every polygon is valid, in *global pixel coordinates*:
vertices are exact integers, so pieces of one region cut by a block edge share their edge exactly.
Polygons that touch no inner block edge are final at once. Pieces touching an inner block edge wait
until their block row is done; pieces of the same class that share an edge (not just a corner) are
grouped (STRtree + DE-9IM boundary/boundary dimension 1, connected components) and a group is
unioned as soon as it cannot grow into the next block row. Memory is one block (per worker) plus
the pieces of regions still open across the current block-row border.

In parallel (``workers`` > 1), threads polygonize blocks and also finish their interior polygons
(``finish``: coordinates, attributes, WKB); GDAL, reading and shapely release the GIL, so they use
several cores. The calling thread merges border pieces and writes. The same ``finish`` runs where
a ``map_blocks`` hook sends the blocks (e.g. a Dask cluster), so little crosses the network.
"""

from __future__ import annotations

import contextlib
import itertools
import threading
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import numpy as np
import shapely
from affine import Affine
from rasterio.enums import MaskFlags
from rasterio.features import shapes
from rasterio.windows import Window

from ..classes import NODATA_LABEL
from ..errors import SegdeepError
from ..io.raster import open_dataset, read_pixels, read_window
from ..runtime import resolve_threads
from .gdal_shapes import polygonize_wkb


def polygonize_block(labels: np.ndarray, mask: np.ndarray | None, col_off: int = 0,
                     row_off: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Polygons of a label block in global pixel coordinates: ``(geometries, class values uint8)``.

    ``mask`` (bool, or None for all) selects the pixels that may become polygons; ``col_off``/``row_off`` place the
    block in the raster (pixels). Vertices are integers, 4-connectivity.
    """
    fast = polygonize_wkb(labels, mask, col_off, row_off)  # the same polygons, without GeoJSON dicts
    if fast is not None:
        return shapely.from_wkb(np.array(fast[0], dtype=object)), fast[1]
    items = list(shapes(labels, mask=mask, connectivity=4, transform=Affine.translation(col_off, row_off)))
    if not items:
        return np.empty(0, dtype=object), np.empty(0, dtype=np.uint8)
    rings = [r for geom, _ in items for r in geom["coordinates"]]
    ring_len = np.fromiter((len(r) for r in rings), dtype=np.int64, count=len(rings))
    n_rings = np.fromiter((len(g["coordinates"]) for g, _ in items), dtype=np.int64, count=len(items))
    flat = itertools.chain.from_iterable(itertools.chain.from_iterable(rings))
    coords = np.fromiter(flat, dtype=np.float64, count=2 * int(ring_len.sum())).reshape(-1, 2)
    geoms = shapely.from_ragged_array(
        shapely.GeometryType.POLYGON, coords,
        (np.concatenate([[0], np.cumsum(ring_len)]), np.concatenate([[0], np.cumsum(n_rings)])),
    )
    values = np.fromiter((v for _, v in items), dtype=np.float64, count=len(items)).astype(np.uint8)
    return geoms, values


def _components(n: int, pairs: list[tuple[np.ndarray, np.ndarray]]) -> np.ndarray:
    """Connected-component label of each of ``n`` nodes, given edges as pairs of index arrays."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    a = np.concatenate([p[0] for p in pairs] + [np.empty(0, dtype=np.int64)])
    b = np.concatenate([p[1] for p in pairs] + [np.empty(0, dtype=np.int64)])
    graph = coo_matrix((np.ones(len(a), dtype=np.int8), (a, b)), shape=(n, n))
    return connected_components(graph, directed=False)[1].astype(np.int64)


class BorderMerger:
    """Merge polygon pieces cut by block edges, one block row at a time (pixel coordinates).

    Call :meth:`add` with the border pieces of each block of a row, then :meth:`finish_row` with the
    row's last pixel row (exclusive); it returns the regions that are complete. Regions still
    touching the row's bottom edge stay open until a later row completes them.
    """

    def __init__(self, height: int) -> None:
        self.height = height
        self._geoms = np.empty(0, dtype=object)   # pieces of open regions
        self._cls = np.empty(0, dtype=np.uint8)
        self._comp = np.empty(0, dtype=np.int64)  # region id of each open piece
        self._new: list[tuple[np.ndarray, np.ndarray]] = []
        self.max_open = 0  # most pieces held at once (for memory diagnostics)

    def add(self, geoms: np.ndarray, cls: np.ndarray) -> None:
        if len(geoms):
            self._new.append((geoms, cls))

    def finish_row(self, row_start: int, row_end: int) -> Iterator[tuple[int, object]]:
        """Group and return finished regions as ``(class value, polygon)`` (pixel coordinates)."""
        n_old = len(self._geoms)
        new_g = [g for g, _ in self._new]
        geoms = np.concatenate([self._geoms, *new_g]) if new_g else self._geoms
        cls = np.concatenate([self._cls, *[c for _, c in self._new]]) if new_g else self._cls
        self._new = []
        n = len(geoms)
        self.max_open = max(self.max_open, n)
        if n == 0:
            return
        maxy = shapely.bounds(geoms)[:, 3]
        # Old pieces of one region are linked to its first piece.
        pairs = []
        if n_old:
            _, first, inverse = np.unique(self._comp, return_index=True, return_inverse=True)
            pairs.append((np.arange(n_old), first[inverse]))
        # Pieces that may share an edge: everything new, and old pieces on this row's top edge.
        active = np.flatnonzero((np.arange(n) >= n_old) | (maxy == row_start))
        if len(active) > 1:
            tree = shapely.STRtree(geoms[active])
            qi, qj = tree.query(geoms[active], predicate="intersects")
            a, b = active[qi], active[qj]
            keep = (a < b) & (cls[a] == cls[b])
            a, b = a[keep], b[keep]
            shared_edge = shapely.relate_pattern(geoms[a], geoms[b], "****1****")
            pairs.append((a[shared_edge], b[shared_edge]))
        comp = _components(n, pairs)
        # A region is finished unless one of its pieces reaches this row's bottom edge.
        if row_end < self.height:
            open_comps = np.unique(comp[maxy == row_end])
            still_open = np.isin(comp, open_comps)
        else:
            still_open = np.zeros(n, dtype=bool)
        self._geoms, self._cls, self._comp = geoms[still_open], cls[still_open], comp[still_open]
        done = np.flatnonzero(~still_open)
        order = done[np.argsort(comp[done], kind="stable")]
        starts = np.flatnonzero(np.r_[True, comp[order][1:] != comp[order][:-1]])
        ends = np.r_[starts[1:], len(order)]
        for s, e in zip(starts.tolist(), ends.tolist(), strict=True):
            members = order[s:e]
            if e - s == 1:
                yield int(cls[members[0]]), geoms[members[0]]
            else:
                # Union, then drop the collinear vertices left where block edges crossed the region.
                merged = shapely.simplify(shapely.union_all(geoms[members]), 0.0, preserve_topology=True)
                for part in shapely.get_parts(merged):  # one Polygon, by construction
                    yield int(cls[members[0]]), part


def _read_block(ds, window: Window, where: str) -> tuple[np.ndarray, np.ndarray]:
    """Labels (uint8) and validity of a window inside the raster."""
    flags = ds.mask_flag_enums[0]
    if ds.dtypes[0] == "uint8" and all(f in (MaskFlags.nodata, MaskFlags.all_valid) for f in flags):
        labels = read_pixels(ds, 1, window)  # validity follows from the value: one read, not two
        valid = labels != ds.nodata if ds.nodata is not None else np.ones(labels.shape, dtype=bool)
        return labels, valid
    data, valid = read_window(ds, window)
    labels = data[0]
    if labels.dtype != np.uint8:
        if valid.any() and (labels[valid].min() < 0 or labels[valid].max() > 254):
            raise SegdeepError(f"{where}: label values must be 0-254 (255 = nodata), got "
                               f"{labels[valid].min()}..{labels[valid].max()}")
        labels = np.where(valid, labels, 0).astype(np.uint8)
    return labels, valid


class _BlockReader:
    """Reads blocks of one raster, reopening it every ``reopen_pixels`` pixels: closing frees GDAL's
    cache of the blocks read, which would otherwise grow with the raster (up to GDAL_CACHEMAX)
    although every block is read once."""

    def __init__(self, path: str, reopen_pixels: int = 32 * 2**20) -> None:
        self.path, self.reopen_pixels = path, reopen_pixels
        self._ds, self._read = None, 0

    def read(self, block: tuple[int, int, int, int]) -> tuple[np.ndarray, np.ndarray]:
        c0, r0, c1, r1 = block
        if self._ds is None or self._read >= self.reopen_pixels:
            self.close()
            self._ds, self._read = open_dataset(self.path), 0
        self._read += (c1 - c0) * (r1 - r0)
        return _read_block(self._ds, Window(c0, r0, c1 - c0, r1 - r0), self.path)

    def close(self) -> None:
        if self._ds is not None:
            self._ds.close()
            self._ds = None


#: Open readers by (path, thread): threads and cluster workers keep theirs (a GDAL dataset must
#: not be read from two threads at once).
_READERS: dict[tuple[str, int], _BlockReader] = {}


def _close_readers(path: str) -> None:
    for key in [k for k in _READERS if k[0] == path]:
        reader = _READERS.pop(key, None)
        if reader is not None:
            reader.close()


def _block_polygons(path: str, block: tuple[int, int, int, int], excluded: np.ndarray,
                    size: tuple[int, int] | None = None, finish: Callable | None = None) -> tuple:
    """Read and polygonize one block (also the task of a worker thread or a cluster worker).

    Without ``size``: ``(geometries, class values)`` of the block. With ``size`` (the raster's width,
    height): ``(interior, border geometries, border class values)``, where ``interior`` is
    ``finish(class values, geometries)`` (or that pair) for the polygons touching no inner block
    edge (final already), or None when there are none.
    """
    key = (path, threading.get_ident())
    reader = _READERS.get(key) or _READERS.setdefault(key, _BlockReader(path))
    labels, valid = reader.read(block)
    mask = valid & ~excluded[labels]
    geoms, cls = polygonize_block(labels, None if mask.all() else mask, block[0], block[1])
    if size is None:
        return geoms, cls
    (c0, r0, c1, r1), (width, height) = block, size
    border = np.zeros(len(geoms), dtype=bool)
    if len(geoms):
        b = shapely.bounds(geoms)
        border = (((c0 > 0) & (b[:, 0] == c0)) | ((c1 < width) & (b[:, 2] == c1))
                  | ((r0 > 0) & (b[:, 1] == r0)) | ((r1 < height) & (b[:, 3] == r1)))
    interior = None
    if (~border).any():
        interior = (cls[~border], geoms[~border])
        if finish is not None:
            interior = finish(*interior)
    return interior, geoms[border], cls[border]


def _threaded_in_order(args: list[tuple], workers: int, stack: contextlib.ExitStack) -> Iterator[tuple]:
    """``_block_polygons(*a)`` for each ``a`` of ``args``, in order, computed by ``workers`` threads:
    GDAL's polygonizer (called through ctypes), reading and shapely's functions run outside Python's
    GIL, so threads use several cores without starting processes or copying results between them.
    At most ``2 * workers`` blocks are in flight."""
    import collections
    from concurrent.futures import ThreadPoolExecutor

    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="segdeep-polygonize")
    stack.callback(pool.shutdown, wait=True, cancel_futures=True)
    pending: collections.deque = collections.deque()
    todo = iter(args)
    for a in itertools.islice(todo, 2 * workers):
        pending.append(pool.submit(_block_polygons, *a))
    while pending:
        result = pending.popleft().result()
        for a in itertools.islice(todo, 1):
            pending.append(pool.submit(_block_polygons, *a))
        yield result


def _iter_batches(labels_path: str | Path, *, block_size: int = 2048, exclude: Sequence[int] = (),
                  workers: int | str = 1, progress: Callable[[int, int], None] | None = None,
                  stats: dict | None = None, map_blocks: Callable | None = None,
                  finish: Callable | None = None) -> Iterator:
    """:func:`iter_polygons`, each batch passed through ``finish(class values, geometries)`` (a
    picklable callable; for block interiors it runs where the block is polygonized)."""
    if block_size < 1:
        raise SegdeepError(f"block_size {block_size} must be a positive number of pixels")
    ds = open_dataset(labels_path)
    with contextlib.ExitStack() as stack:
        stack.enter_context(ds)
        stack.callback(_close_readers, str(labels_path))
        if ds.count != 1:
            raise SegdeepError(f"{labels_path}: a label raster has 1 band, this one has {ds.count}")
        width, height = ds.width, ds.height
        n_rows, n_cols = -(-height // block_size), -(-width // block_size)
        excluded = np.zeros(256, dtype=bool)
        excluded[list(exclude)] = True
        excluded[NODATA_LABEL] = True
        blocks = [(c * block_size, r * block_size, min(width, (c + 1) * block_size),
                   min(height, (r + 1) * block_size)) for r in range(n_rows) for c in range(n_cols)]
        args = [(str(labels_path), block, excluded, (width, height), finish) for block in blocks]
        workers = resolve_threads(workers, len(blocks))
        if map_blocks is not None:
            results = map_blocks(_block_polygons, args)
        elif workers > 1:
            results = _threaded_in_order(args, workers, stack)
        else:
            results = (_block_polygons(*a) for a in args)
        merger = BorderMerger(height)
        for done, ((_, r0, c1, r1), (interior, border_geoms, border_cls)) in enumerate(
                zip(blocks, results, strict=True), start=1):
            if interior is not None:
                yield interior
            merger.add(border_geoms, border_cls)
            if progress is not None:
                progress(done, len(blocks))
            if c1 == width:  # end of a block row
                merged = list(merger.finish_row(r0, r1))
                if stats is not None:
                    stats.update(blocks=done, max_open_pieces=merger.max_open)
                if merged:
                    batch = (np.array([m[0] for m in merged], dtype=np.uint8),
                             np.array([m[1] for m in merged], dtype=object))
                    yield finish(*batch) if finish is not None else batch


def iter_polygons(labels_path: str | Path, *, block_size: int = 2048, exclude: Sequence[int] = (),
                  workers: int | str = 1, progress: Callable[[int, int], None] | None = None,
                  stats: dict | None = None, map_blocks: Callable | None = None,
                  ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Stream the polygons of a label raster as batches ``(class values, polygons in pixel coords)``.

    Batches come per block (interior polygons) and per block row (merged border regions). Nodata
    (255, or masked) and ``exclude`` class values never become polygons. ``workers`` > 1
    polygonizes blocks in that many threads (at most ``2 * workers`` blocks in flight; the result
    is the same); ``"auto"`` = one per usable CPU core (:func:`segdeep.runtime.resolve_threads`). ``progress(done, total)`` is called after each block; ``stats`` (a dict)
    receives ``blocks`` and ``max_open_pieces``. ``map_blocks(func, args_list)`` replaces the local
    polygonization of blocks: it must return ``func(*args)`` for each args tuple, in order (e.g. on a
    Dask cluster, :mod:`segdeep.distributed.run`); ``args[0]`` is the raster's path; the border merging
    stays here.
    """
    return _iter_batches(labels_path, block_size=block_size, exclude=exclude, workers=workers,
                         progress=progress, stats=stats, map_blocks=map_blocks)
