"""Sink stage of the prediction pipeline: a writer thread, and the final outputs.

The writer saves finished blocks to the resume journal while the next block is computed. It is
bounded, so at most ``depth`` blocks wait and memory does not grow with the raster. When every
block is done, the saved blocks are streamed into the final files (labels COG, probabilities, confusion matrix, preview, polygons).
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import queue
import shutil
import threading
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import rasterio
from affine import Affine

from ..classes import NODATA_LABEL
from ..io.atomic import temp_path
from ..io.raster import LabelWriter, open_dataset, read_window, to_cog
from .source import gdal_env, rio_window
from .tiles import Rect

_STOP = object()


class PieceSpill:
    """Tile pieces waiting for a later block, kept on disk in ``folder`` until that block runs.

    Each computed tile keeps the parts later blocks need (int32 fixed-point scores, see
    :mod:`segdeep.predict.engine`). Those for the next row of blocks add up to a strip ~``overlap`` px
    high across the whole output (6 classes: 24 bytes per pixel, ~40 MB for a 16k px wide raster):
    kept in memory, the strip would make memory grow with the raster's width. One append-only
    file per waiting block, removed when the block takes its pieces; ``folder`` is emptied first
    (a killed run's leftovers) and removed by :meth:`close`."""

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)
        shutil.rmtree(self.folder, ignore_errors=True)  # left by a killed run
        self._entries: dict[int, list[tuple[Rect, tuple[int, ...], str, int]]] = {}

    def _path(self, block: int) -> Path:
        return self.folder / f"pieces_{block:06d}.bin"

    def put(self, block: int, pieces: Sequence[tuple[Rect, np.ndarray]]) -> None:
        """Append ``pieces`` (``(rect, array)`` pairs) for ``block``."""
        if not pieces:
            return
        self.folder.mkdir(parents=True, exist_ok=True)
        entries = self._entries.setdefault(block, [])
        with open(self._path(block), "ab") as f:
            for rect, array in pieces:
                array = np.ascontiguousarray(array)
                entries.append((rect, array.shape, array.dtype.str, f.tell()))
                f.write(array.data)

    def take(self, block: int) -> list[tuple[Rect, np.ndarray]]:
        """The pieces saved for ``block`` (in the order they were put); forgets them."""
        entries = self._entries.pop(block, None)
        if not entries:
            return []
        path = self._path(block)
        out = []
        with open(path, "rb") as f:
            for rect, shape, dtype, offset in entries:
                f.seek(offset)
                out.append((rect, np.fromfile(f, dtype=dtype, count=math.prod(shape)).reshape(shape)))
        path.unlink()
        return out

    def close(self) -> None:
        """Remove the folder and whatever is left in it."""
        self._entries.clear()
        shutil.rmtree(self.folder, ignore_errors=True)


class BlockWriter:
    """Call ``save(*item)`` for every item put, in a background thread (bounded queue)."""

    def __init__(self, save: Callable[..., None], depth: int = 2) -> None:
        self._save = save
        self._queue: queue.Queue = queue.Queue(maxsize=max(1, depth))
        self._error: BaseException | None = None
        self.seconds = 0.0
        self._thread = threading.Thread(target=self._run, name="segdeep-writer", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        with gdal_env():
            self._loop()

    def _loop(self) -> None:
        import time

        while True:
            item = self._queue.get()
            if item is _STOP:
                return
            if self._error is not None:
                continue
            try:
                t0 = time.perf_counter()
                self._save(*item)
                self.seconds += time.perf_counter() - t0
            except BaseException as exc:
                self._error = exc

    def _check(self) -> None:
        if self._error is not None:
            raise self._error

    def put(self, *item) -> None:
        self._check()
        self._queue.put(item)

    def close(self) -> None:
        """Wait until everything put so far is saved; re-raise a save error."""
        if self._thread.is_alive():
            self._queue.put(_STOP)
            self._thread.join()
        self._check()


# --------------------------------------------------------------------------------------------------
# Final outputs


def region_vrt(image_path: str | Path, count: int, rect: Rect, vrt_path: Path) -> Path:
    """A small VRT showing ``rect`` of the image (so the preview's image matches a region's labels)."""
    with open_dataset(image_path) as ds:
        dtypes, width, height = ds.dtypes, ds.width, ds.height
        transform = ds.transform * Affine.translation(rect.col_off, rect.row_off)
        crs = ds.crs.to_wkt() if ds.crs else None
    gdal_types = {"uint8": "Byte", "uint16": "UInt16", "int16": "Int16", "uint32": "UInt32",
                  "int32": "Int32", "float32": "Float32", "float64": "Float64", "int8": "Int8"}
    src = os.path.abspath(image_path)
    bands = []
    for b in range(1, count + 1):
        bands.append(
            f'<VRTRasterBand dataType="{gdal_types.get(dtypes[b - 1], "Float64")}" band="{b}"><SimpleSource>'
            f'<SourceFilename relativeToVRT="0">{src}</SourceFilename><SourceBand>{b}</SourceBand>'
            f'<SourceProperties RasterXSize="{width}" RasterYSize="{height}" DataType="{gdal_types.get(dtypes[b - 1], "Float64")}"/>'
            f'<SrcRect xOff="{rect.col_off}" yOff="{rect.row_off}" xSize="{rect.width}" ySize="{rect.height}"/>'
            f'<DstRect xOff="0" yOff="0" xSize="{rect.width}" ySize="{rect.height}"/></SimpleSource></VRTRasterBand>')
    geo = (f"<SRS>{crs.replace('&', '&amp;').replace('<', '&lt;')}</SRS>" if crs else "")
    gt = ", ".join(repr(v) for v in transform.to_gdal())
    vrt_path.write_text(f'<VRTDataset rasterXSize="{rect.width}" rasterYSize="{rect.height}">{geo}'
                        f"<GeoTransform>{gt}</GeoTransform>{''.join(bands)}</VRTDataset>")
    return vrt_path


class Sinks:
    """Where finished blocks go as they come: the label GeoTIFF (a COG when closed), optional
    probabilities (uint8 per class, 255 = 1.0), and the confusion matrix against ``truth``.

    Used from one thread at a time (the writer thread while blocks are computed)."""

    def __init__(self, out: Path, area: Rect, *, crs, transform: Affine, classes, probabilities: bool,
                 truth: str | Path | None = None, confusion=None) -> None:
        self.area = area
        self.labels = LabelWriter(out / "labels.tif", area.width, area.height, crs=crs, transform=transform,
                                  classes=classes).open()
        self.probabilities_path = out / "probabilities.tif" if probabilities else None
        self._probs = None
        if probabilities:
            self._probs_tmp = temp_path(self.probabilities_path)
            profile = dict(driver="GTiff", width=area.width, height=area.height, count=len(classes),
                           dtype="uint8", tiled=True, blockxsize=256, blockysize=256, compress="deflate",
                           predictor=2, interleave="band", BIGTIFF="IF_SAFER")
            if crs is not None:
                profile.update(crs=crs, transform=transform)
            self._probs = rasterio.open(self._probs_tmp, "w", **profile)
            for i, c in enumerate(classes):
                self._probs.set_band_description(i + 1, c.name)
            self._probs.update_tags(classes=json.dumps([c.to_dict() for c in classes]), scale="1/255")
        self._truth = open_dataset(truth) if truth is not None else None
        self.confusion = confusion

    def add(self, rect: Rect, labels: np.ndarray, probabilities: np.ndarray | None) -> None:
        """Write one finished block (``rect`` in raster pixels)."""
        rel = rio_window(Rect(rect.col_off - self.area.col_off, rect.row_off - self.area.row_off,
                              rect.width, rect.height))
        self.labels.write(rel, labels)
        if self._probs is not None:
            self._probs.write(probabilities, window=rel)
        if self._truth is not None:
            t, t_valid = read_window(self._truth, rio_window(rect))
            self.confusion.update(np.where(t_valid, t[0], NODATA_LABEL).astype(np.uint8), labels)

    def close(self, ok: bool) -> None:
        """Finish the files (COGs under their final names) when ``ok``, else remove them."""
        if self._truth is not None:
            self._truth.close()
            self._truth = None
        if self._probs is not None:
            self._probs.close()
            self._probs = None
            try:
                if ok:
                    to_cog(self._probs_tmp, self.probabilities_path)
            finally:
                with contextlib.suppress(FileNotFoundError):
                    self._probs_tmp.unlink()
        self.labels.close(ok=ok)
