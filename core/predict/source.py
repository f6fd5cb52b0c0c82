"""Source stage of the prediction pipeline: block pixels and validity, read ahead in a thread.

The reader prefetches the next block's pixels with its own rasterio handle while the model works on
the current one. It is bounded, so at most ``depth`` blocks wait and memory does not grow with the
raster. GDAL's block cache is bounded too (:func:`gdal_env`).
"""

from __future__ import annotations

import contextlib
import queue
import threading
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import rasterio
from rasterio.windows import Window

from ..io.raster import finite_pixels, open_dataset, read_pixels
from .tiles import Rect

__all__ = ["GDAL_CACHE_MB", "READ_ROWS", "BlockReader", "gdal_env", "read_block", "rio_window"]

#: GDAL block cache (MB) while segdeep reads and writes: GDAL's default (5% of RAM) would let a
#: decimated read of a huge raster hold that much memory.
GDAL_CACHE_MB = 64


def gdal_env() -> rasterio.Env:
    """rasterio environment with a bounded GDAL block cache."""
    return rasterio.Env(GDAL_CACHEMAX=GDAL_CACHE_MB * 2**20)  # rasterio passes an int on as bytes


def rio_window(rect: Rect) -> Window:
    return Window(rect.col_off, rect.row_off, rect.width, rect.height)


#: Rows read per call by :func:`read_block` (rounded to the source's block height): bounds the
#: temporaries of a read to a few MB whatever the block size.
READ_ROWS = 256


def read_block(ds, rect: Rect, bands: list[int]) -> tuple[np.ndarray, np.ndarray]:
    """:func:`segdeep.io.raster.read_window` of ``rect`` (same pixels and validity, padded with 0 and
    invalid outside the raster), with less memory: GDAL reads strips of whole source blocks straight
    into the result, and validity is read only when some band has nodata, a mask or an alpha band.
    ``read_window`` holds three more block-sized arrays while it reads (a copy of the pixels, the
    per-band masks and their comparison), as much as 70 MB for a 2304 px block of 3 bands. A pixel
    with NaN or infinity in any band is invalid, and 0 in ``out``."""
    out = np.zeros((len(bands), rect.height, rect.width), dtype=ds.dtypes[bands[0] - 1])
    valid = np.zeros((rect.height, rect.width), dtype=bool)
    inner = rect.intersect(Rect(0, 0, ds.width, ds.height))
    if inner.empty:
        return out, valid
    all_valid = all(ds.mask_flag_enums[b - 1] == [rasterio.enums.MaskFlags.all_valid] for b in bands)
    block_rows = max(1, min(ds.block_shapes[b - 1][0] for b in bands))
    rows = max(1, READ_ROWS // block_rows) * block_rows
    r0 = inner.row_off
    while r0 < inner.row_end:
        r1 = min(inner.row_end, (r0 // rows + 1) * rows)  # strips end on the source's block rows
        strip = Rect(inner.col_off, r0, inner.width, r1 - r0)
        dst = strip.slices(rect)
        data = read_pixels(ds, bands, rio_window(strip))
        finite = finite_pixels(data) if data.dtype.kind in "fc" else True  # NaN, inf: nodata, as read_window
        out[(slice(None), *dst)] = data
        if all_valid:
            valid[dst] = finite
        else:  # valid where any band is valid, as read_window
            valid[dst] = (read_pixels(ds, bands, rio_window(strip), masks=True) > 0).any(axis=0) & finite
        r0 = r1
    return out, valid


class BlockReader:
    """Read ``jobs`` (``(key, Rect)`` pairs, in order) in a background thread, at most ``depth``
    blocks ahead of :meth:`get` (counting the one being read)."""

    def __init__(self, path: str | Path, bands: list[int], jobs: Sequence[tuple[object, Rect]],
                 depth: int = 1) -> None:
        self._queue: queue.Queue = queue.Queue()
        self._slots = threading.Semaphore(max(1, depth))  # released by get()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(path, bands, list(jobs)),
                                        name="segdeep-reader", daemon=True)
        self._thread.start()

    def _slot(self) -> bool:
        while not self._stop.is_set():
            if self._slots.acquire(timeout=0.1):
                return True
        return False

    def _run(self, path, bands, jobs) -> None:
        try:
            with gdal_env(), open_dataset(path) as ds:
                for key, rect in jobs:
                    if not self._slot():
                        return
                    data, valid = read_block(ds, rect, bands)
                    self._queue.put((key, rect, data, valid))
        except BaseException as exc:  # handed to the consumer
            self._queue.put(exc)

    def get(self):
        """The next ``(key, rect, data bands x h x w, valid h x w)``; re-raises a reader error."""
        item = self._queue.get()
        self._slots.release()
        if isinstance(item, BaseException):
            raise item
        return item

    def close(self) -> None:
        self._stop.set()
        with contextlib.suppress(queue.Empty):
            while True:
                self._queue.get_nowait()
        self._thread.join(timeout=30)
