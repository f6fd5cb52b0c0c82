"""Compute side of the prediction pipeline: device, precision, normalisation, tiles -> blended scores.

Blending is done in fixed point: each tile adds ``floor(softmax x blend weight x 2**24 + 0.5)`` as int32
to the block's accumulator. The blend weights of the tiles covering a pixel sum to 1
(:mod:`segdeep.predict.tiles`), so the accumulator holds probabilities x 2**24, and because integer addition
does not depend on order, a pixel's value is the same whichever block computed each of its tiles and
in whichever order they were added. That is what makes the labels identical for every block size.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections import deque
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from ..classes import NODATA_LABEL
from ..crf.colour import crf_colours, read_colour_limits
from ..errors import SegdeepError
from ..runtime import all_cores, autocast_dtype
from .fusion import TestTimeFusion, fused_probabilities
from .tiles import Rect, TileGrid

#: Fixed-point scale of the blend accumulator (probability 1.0 = 2**24).
SCALE = float(2**24)


def _per_band(value, n: int, name: str) -> np.ndarray:
    arr = np.atleast_1d(np.asarray(value, dtype=np.float32))
    if arr.size == 1:
        arr = np.repeat(arr, n)
    if arr.size != n:
        raise SegdeepError(f"model card: {name} has {arr.size} values but the model takes {n} bands")
    return arr.reshape(n, 1, 1)


@dataclass
class Timings:
    """Seconds spent in each stage of the compute side; the stages run by the workers (normalise,
    forward, part of blend) are summed over them, so with 2 workers they can exceed the wall time."""

    normalise: float = 0.0
    forward: float = 0.0
    blend: float = 0.0
    crf: float = 0.0
    labels: float = 0.0
    extra: dict = field(default_factory=dict)


@dataclass
class BlockTiles:
    """A block's tiles queued for the model (:meth:`Engine.prepare`)."""

    x: np.ndarray  # raw pixels, bands x h x w over read_rect
    valid: np.ndarray
    read_rect: Rect
    skipped: int  # tiles without a valid pixel: not computed
    batches: int  # batches to compute
    chunks: deque  # batches (lists of (tile, rect)) not yet submitted

    @property
    def submitted(self) -> bool:
        """True once every batch of the block is with the workers (or computed)."""
        return not self.chunks


class Engine:
    """A model on a device with its normalisation; turns blocks of pixels into blended scores.

    With ``workers`` >= 1, batches run on that many threads of the engine's own, each with
    ``threads`` torch threads (see :func:`resolve_workers`); the blocks' accumulators are only
    touched by the thread that runs :meth:`run_block`, so results do not depend on the number of
    workers. ``workers=0`` runs each batch in the calling thread (the CUDA path, and Dask tasks,
    whose worker threads are set up by the cluster). Call :meth:`close` when done. ``fusion``:
    test-time scales and flips (:mod:`segdeep.predict.fusion`); None or the identity is the plain
    forward pass.
    """

    def __init__(self, model: torch.nn.Module, card, *, grid: TileGrid, device: torch.device,
                 precision: str, batch_size: int, workers: int = 0, threads: int = 1,
                 fusion: TestTimeFusion | None = None) -> None:
        self.card = card
        self.grid = grid
        self.device = device
        self.precision = precision
        self.batch_size = batch_size
        self.fusion = None if fusion is None or fusion.identity else fusion
        self.classes = list(card.classes)
        self.num_classes = len(self.classes)
        n = len(card.bands)
        self.scale = _per_band(getattr(card, "scale", 1.0), n, "scale")
        self.mean = _per_band(card.mean, n, "mean")
        self.std = _per_band(card.std, n, "std")
        if np.any(self.std == 0):
            raise SegdeepError("model card: std has a zero; normalisation would divide by zero")
        self.channels_last = device.type == "cpu"
        self.model = model.to(device).eval()
        if self.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.lut = np.array([c.index for c in self.classes], dtype=np.uint8)
        self.timings = Timings()
        self.workers = int(workers) if device.type == "cpu" else 0
        self.threads = max(1, int(threads))
        self._pool: ThreadPoolExecutor | None = None
        self._colour_limits: tuple | None = None  # (raster, bands), its CRF colour stretch
        self._pending: deque[tuple[BlockTiles, list, Future]] = deque()  # submitted batches, oldest first
        self._ready: deque[BlockTiles] = deque()  # prepared blocks with batches not yet submitted
        self._lock = threading.Lock()  # timings and counters are added to from the workers
        self._local = threading.local()  # each thread's batch buffer
        self._weights: dict[tuple[bool, bool, bool, bool], np.ndarray] = {}
        self.tiles_computed = 0
        self.tiles_skipped = 0

    def close(self) -> None:
        """Drop batches not started, wait for running ones and stop the worker threads (idempotent)."""
        self._abandon()
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None

    def _time(self, name: str, seconds: float) -> None:
        with self._lock:
            setattr(self.timings, name, getattr(self.timings, name) + seconds)

    def _submit(self, fn, *args) -> Future:
        """``fn(*args)`` on a worker, or now in this thread without workers."""
        if self.workers:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(self.workers, thread_name_prefix="segdeep-tiles",
                                                initializer=torch.set_num_threads, initargs=(self.threads,))
            return self._pool.submit(fn, *args)
        done: Future = Future()
        done.set_result(fn(*args))
        return done

    def _fill(self, limit: int) -> None:
        """Submit batches of the prepared blocks, in block order, until ``limit`` are in flight."""
        while len(self._pending) < limit and self._ready:
            tiles = self._ready[0]
            if not tiles.chunks:
                self._ready.popleft()
                continue
            chunk = tiles.chunks.popleft()
            self._pending.append((tiles, chunk, self._submit(self._fixed_scores, tiles.x, tiles.valid,
                                                             tiles.read_rect, chunk)))

    def _abandon(self) -> None:
        """Cancel the batches in flight (those running finish) and forget the prepared blocks."""
        self._ready.clear()
        pending, self._pending = list(self._pending), deque()
        for _, _, future in pending:
            future.cancel()
        for _, _, future in pending:
            if not future.cancelled():
                with contextlib.suppress(BaseException):
                    future.result()

    def prepare(self, x: np.ndarray, valid: np.ndarray, read_rect: Rect,
                own_tiles: Sequence[tuple[int, int]]) -> BlockTiles:
        """Queue a block's tiles that have valid pixels (see :meth:`run_block` for the arguments).

        With workers, they start as soon as the blocks prepared before have all theirs submitted:
        preparing the next block before running this one keeps the workers busy across the
        boundary (``2 x workers`` batches in flight). Blocks must then be run in the order prepared.
        """
        todo: list[tuple[tuple[int, int], Rect]] = []
        for tile in own_tiles:
            rect = self.grid.rect(*tile)
            if valid[rect.slices(read_rect)].any():
                todo.append((tile, rect))
        chunks = deque(todo[i:i + self.batch_size] for i in range(0, len(todo), self.batch_size))
        tiles = BlockTiles(x, valid, read_rect, len(own_tiles) - len(todo), len(chunks), chunks)
        self._ready.append(tiles)
        if self.workers:
            self._fill(2 * self.workers)
        return tiles

    def crf_colours(self, data: np.ndarray, raster: str | Path, bands: Sequence[int]) -> np.ndarray:
        """3 x h x w uint8 colours for the CRF (:func:`segdeep.crf.colour.crf_colours`) of block pixels
        ``data`` (``bands`` of the raster file ``raster``), stretched with the statistics of the whole
        raster, read on the first call and kept: every block gets the same colours for the same values."""
        key = (str(raster), tuple(bands))
        if self._colour_limits is None or self._colour_limits[0] != key:
            self._colour_limits = (key, read_colour_limits(raster, bands))
        return crf_colours(data, limits=self._colour_limits[1])

    def _autocast(self):
        dtype = autocast_dtype(self.precision)
        if dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=dtype)

    def normalise(self, data: np.ndarray, valid: np.ndarray) -> np.ndarray:
        """(pixel x scale - mean) / std per band, float32; invalid pixels become 0 (the mean)."""
        t0 = time.perf_counter()
        x = data.astype(np.float32)
        self._normalise_in_place(x)
        x[:, ~valid] = 0.0
        self._time("normalise", time.perf_counter() - t0)
        return x

    def _normalise_in_place(self, x: np.ndarray) -> None:
        x *= self.scale
        x -= self.mean
        x /= self.std

    def _batch(self, x: np.ndarray, valid: np.ndarray, read_rect: Rect, rects: Sequence[Rect]) -> np.ndarray:
        """The float32 model input (N x bands x T x T) of the tiles at ``rects`` of the raw pixels
        ``x``, in a buffer reused from batch to batch, normalised with the same float32 operations as
        :meth:`normalise` (identical values), so a block never needs a float32 copy of all its
        pixels (4 bytes x bands x block area). Each thread has its own buffer."""
        t = self.grid.tile_size
        shape = (len(rects), x.shape[0], t, t)
        buffer = getattr(self._local, "batch", None)
        if buffer is None or buffer.shape[1:] != shape[1:] or buffer.shape[0] < shape[0]:
            buffer = self._local.batch = np.empty((max(shape[0], self.batch_size), *shape[1:]), dtype=np.float32)
        batch = buffer[:shape[0]]
        for i, rect in enumerate(rects):
            batch[i] = x[(slice(None), *rect.slices(read_rect))]
        t0 = time.perf_counter()
        self._normalise_in_place(batch)
        for i, rect in enumerate(rects):
            tile_valid = valid[rect.slices(read_rect)]
            if not tile_valid.all():
                batch[i][:, ~tile_valid] = 0.0
        self._time("normalise", time.perf_counter() - t0)
        return batch

    def forward(self, batch: np.ndarray) -> torch.Tensor:
        """Softmax probabilities (float32, N x C x T x T, on the device) of a batch of tiles."""
        t0 = time.perf_counter()
        x = torch.from_numpy(batch).to(self.device, non_blocking=True)
        with torch.inference_mode():
            if self.fusion is None:
                probs = self._probabilities(x)
            else:
                probs = fused_probabilities(self._probabilities, x, self.fusion)
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        self._time("forward", time.perf_counter() - t0)
        return probs

    def _probabilities(self, x: torch.Tensor) -> torch.Tensor:
        """The model's softmax probabilities (float32, N x C x h x w) of model inputs ``x``."""
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with self._autocast():
            logits = self.model(x)
        if not isinstance(logits, torch.Tensor) or logits.shape[1] != self.num_classes:
            got = tuple(logits.shape) if isinstance(logits, torch.Tensor) else type(logits).__name__
            raise SegdeepError(f"model returned {got}; expected N x {self.num_classes} x H x W logits "
                               f"(one channel per class of the card)")
        return torch.softmax(logits.float(), dim=1)

    def _fixed_scores(self, x: np.ndarray, valid: np.ndarray, read_rect: Rect,
                      chunk: Sequence[tuple[tuple[int, int], Rect]]) -> np.ndarray:
        """A batch of tiles -> their blend-weighted probabilities in fixed point (int32, N x C x T x T)."""
        probs = self.forward(self._batch(x, valid, read_rect, [rect for _, rect in chunk]))
        t0 = time.perf_counter()
        # numpy: the same steps in torch on 1 thread took 3.9 ms per 512 px tile against numpy's 3.7 ms
        fixed = probs.cpu().numpy()
        for i, (tile, _) in enumerate(chunk):
            fixed[i] *= self._scaled_weights(*tile)
        fixed += np.float32(0.5)  # then truncate: round half up, the same on every run
        out = fixed.astype(np.int32)
        self._time("blend", time.perf_counter() - t0)
        return out

    def run_block(self, x: np.ndarray, valid: np.ndarray, read_rect: Rect, region: Rect,
                  own_tiles: Sequence[tuple[int, int]], pieces: Sequence[tuple[Rect, np.ndarray]],
                  later: dict[tuple[int, int], list[tuple[int, Rect]]],
                  store: dict[int, list], prepared: BlockTiles | None = None) -> Iterator[int]:
        """Accumulate the block's region; yields the number of tiles finished after each batch.

        ``x``/``valid``: raw pixels (bands x h x w, source dtype) and validity over ``read_rect``;
        each batch of tiles is normalised as it is made. ``region``: the pixels
        to accumulate (block + halo). ``own_tiles``: tiles to compute here (row-major);
        ``pieces``: contributions of tiles computed for earlier blocks; ``later[tile]``: (block
        index, rect) pieces of a tile that later blocks need, saved into ``store``. ``prepared``:
        this block's :meth:`prepare` when it was called beforehand. Returns (via
        ``StopIteration.value``) the int32 accumulator, classes x region.
        """
        tiles = prepared if prepared is not None else self.prepare(x, valid, read_rect, own_tiles)
        acc = np.zeros((self.num_classes, region.height, region.width), dtype=np.int32)
        for rect, piece in pieces:
            acc[(slice(None), *rect.slices(region))] += piece
        piece = pieces = None  # not held while the block runs
        try:
            if tiles.skipped:
                self.tiles_skipped += tiles.skipped
                yield tiles.skipped
            for _ in range(tiles.batches):
                if not self._pending:
                    self._fill(1)  # without workers: this batch, computed now
                owner, chunk, future = self._pending.popleft()
                if owner is not tiles:
                    raise RuntimeError("blocks must be run in the order they were prepared")
                fixed = future.result()
                if self.workers:
                    self._fill(2 * self.workers)  # keeps the workers busy while this batch is added
                t0 = time.perf_counter()
                for (tile, rect), q in zip(chunk, fixed, strict=True):
                    inside = rect.intersect(region)
                    if not inside.empty:
                        acc[(slice(None), *inside.slices(region))] += q[(slice(None), *inside.slices(rect))]
                    for block_index, piece_rect in later.get(tile, ()):
                        store.setdefault(block_index, []).append(
                            (piece_rect, q[(slice(None), *piece_rect.slices(rect))].copy()))
                del fixed
                self.tiles_computed += len(chunk)
                self._time("blend", time.perf_counter() - t0)
                yield len(chunk)
        except BaseException:  # closed early (cancel) or failed: nothing more is computed
            self._abandon()
            raise
        return acc

    def finish_block(self, acc: np.ndarray, region: Rect, core: Rect, valid_core: np.ndarray,
                     image_region: np.ndarray | None, crf, want_probabilities: bool):
        """Labels (uint8, 255 = nodata) of ``core`` and optional uint8 probabilities (0-255).

        With ``crf`` the CRF refines ``core`` window by window (the grid of ``crf.window_size``
        anchored at the raster origin, each window with ``crf.halo`` pixels of context inside
        ``region``), so a pixel's label does not depend on the block it falls in."""
        h, w = core.height, core.width
        labels = np.empty((h, w), dtype=np.uint8)
        probabilities = np.empty((acc.shape[0], h, w), dtype=np.uint8) if want_probabilities else None
        if crf is None:
            self._labels(acc[(slice(None), *core.slices(region))], valid_core, labels, probabilities,
                         np.float32(255.0 / SCALE), fixed=True)
            return labels, probabilities
        from ..crf.dense import iter_crf_windows

        t0 = time.perf_counter()
        local = core.slices(region)
        box = (local[0].start, local[1].start, h, w)
        # in-process (workers) the CRF takes all the cores: 1.5x faster on 2 threads than on the 1
        # a napari job thread starts with; a cluster's tasks keep the threads their worker has
        with all_cores() if self.workers else contextlib.nullcontext():
            for (r0, c0, bh, bw), refined in iter_crf_windows(acc, image_region, crf, core=box,
                                                              origin=(region.row_off, region.col_off),
                                                              scale=1.0 / SCALE, device=self.device):
                rows, cols = slice(r0 - box[0], r0 - box[0] + bh), slice(c0 - box[1], c0 - box[1] + bw)
                self.timings.crf += time.perf_counter() - t0
                self._labels(refined.cpu().numpy(), valid_core[rows, cols], labels[rows, cols],
                             None if probabilities is None else probabilities[:, rows, cols], np.float32(255.0),
                             fixed=False)
                t0 = time.perf_counter()
        self.timings.crf += time.perf_counter() - t0
        return labels, probabilities

    def _labels(self, scores: np.ndarray, valid: np.ndarray, labels: np.ndarray, probabilities: np.ndarray | None,
                factor: np.float32, fixed: bool) -> None:
        """Fill ``labels`` (and ``probabilities``, ``scores`` x ``factor`` rounded) from classes x h x w
        ``scores``: fixed-point accumulator values (``fixed``) or float probabilities."""
        t0 = time.perf_counter()
        h, w = scores.shape[1:]
        # A few rows at a time: the temporaries stay ~1 MB instead of several arrays of the block's size.
        step = max(1, (1 << 18) // max(1, w))
        for r0 in range(0, h, step):
            rows = slice(r0, min(h, r0 + step))
            part, ok = scores[:, rows], valid[rows]
            labels[rows] = self.lut[argmax_fixed(part) if fixed else np.argmax(part, axis=0)]
            labels[rows][~ok] = NODATA_LABEL
            if probabilities is not None:
                probabilities[:, rows] = np.rint(part * factor).clip(0, 255).astype(np.uint8)
                probabilities[:, rows][:, ~ok] = 0
        self.timings.labels += time.perf_counter() - t0

    def _scaled_weights(self, row: int, col: int) -> np.ndarray:
        """Blend weights x :data:`SCALE` (float32, exact: SCALE is a power of two) of a tile; there are
        only 9 different windows (edge or not on each side), so they are made once."""
        g = self.grid
        key = (row == 0, row == g.n_rows - 1, col == 0, col == g.n_cols - 1)
        w = self._weights.get(key)
        if w is None:
            w = self._weights[key] = g.weights(row, col) * np.float32(SCALE)
        return w


def argmax_fixed(acc: np.ndarray) -> np.ndarray:
    """``np.argmax(acc, axis=0)`` (first maximum on ties) for non-negative int32 scores below 2**25,
    as one running maximum of ``score << bits | (top - class)``: 4x faster than np.argmax here."""
    c = acc.shape[0]
    bits = max(1, (c - 1).bit_length())
    if bits > 6:
        return np.argmax(acc, axis=0)
    top = (1 << bits) - 1
    best = np.left_shift(acc[0], bits)
    best |= top
    tmp = np.empty_like(best)
    for k in range(1, c):
        np.left_shift(acc[k], bits, out=tmp)
        tmp |= top - k
        np.maximum(best, tmp, out=best)
    best &= top
    return (top - best).astype(np.uint8)
