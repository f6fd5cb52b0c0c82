"""Streaming tiled inference over rasters of any size: ``iter_predict``, ``predict_raster``, ``predict_array``.

The raster is cut into blocks (default 2048 px, the unit of work, memory and resume); model tiles lie
on one grid anchored at the raster origin (:mod:`segdeep.predict.tiles`). Blocks are processed in
row-major order: a reader thread prefetches the next block, tiles go to the model in batches, their
softmax x blend weight is accumulated, and a writer thread saves finished blocks to the resume
journal. Each tile is computed once: the parts of a tile that later blocks need are kept until those
blocks run (the next block's in memory; the strip about ``overlap`` px high, plus the CRF halo, that
the next row of blocks needs waits on disk). Memory depends on block size and tile size, not on the
raster's size.

Labels do not depend on the block size, on where a run was interrupted and resumed, or on the
region asked for (see :mod:`segdeep.predict.engine` for why the sums are exact). With the CRF, each block
is refined with a halo of context and cropped, so CRF labels can differ slightly at block borders.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Generator, Sequence
from dataclasses import asdict
from pathlib import Path

import numpy as np
from affine import Affine

from .. import __version__
from ..crf.colour import crf_colours
from ..errors import SegdeepError
from ..evaluate.metrics import ConfusionMatrix
from ..io.paths import FolderLock
from ..io.raster import open_raster
from ..models.bundle import load_bundle
from ..runtime import drain, resolve_batch_size, resolve_device, resolve_precision, resolve_workers
from .config import PredictConfig, resolve_config, run_parameters
from .engine import Engine
from .events import BlockDone, Finishing, PredictResult, PredictStarted, TilesDone
from .finish import PreviewSampler, card_dict, finish_outputs
from .fusion import TestTimeFusion
from .journal import Journal, check_free_space, model_identity, run_fingerprint, scratch_bytes
from .plan import default_overlap, model_tile_size, plan_blocks, plan_run
from .sinks import BlockWriter, PieceSpill, Sinks
from .source import BlockReader
from .tiles import Rect, TileGrid, check_tiling

__all__ = ["BlockDone", "Finishing", "PredictConfig", "PredictResult", "PredictStarted", "TilesDone",
           "iter_predict", "predict_array", "predict_raster"]


def _resolve_model(config: PredictConfig, device):
    model, card = config.model, config.card
    if config.bundle is not None:
        if not Path(config.bundle).exists():
            raise SegdeepError(f"{config.bundle}: no such model bundle (a .safetensors file made by segdeep train)")
        model, card = load_bundle(config.bundle, device=str(device))
    if model is None or card is None:
        raise SegdeepError("no model: pass bundle=PATH or both model= and card=")
    return model, card


def iter_predict(
    image: str | Path | None = None,
    bundle: str | Path | tuple | None = None,
    out_dir: str | Path | None = None,
    *,
    config: PredictConfig | None = None,
    **settings,
) -> Generator[object, None, PredictResult]:
    """Segment a raster block by block; a generator of progress events returning a :class:`PredictResult`.

    Pass a :class:`segdeep.predict.config.PredictConfig` as ``config=``, or its settings as keywords
    (``image``, ``bundle`` and ``out_dir`` may be positional): ``iter_predict("scene.tif",
    "model.safetensors", "out/", overlap=32, crf=CRFParams())``. The settings and their units are
    described on :class:`PredictConfig`; ``bundle`` may be a ``(model, card)`` pair, or pass
    ``model=`` and ``card=``. ``workers``: the model's ``forward`` runs on several threads at once
    (every segdeep architecture keeps no state in ``forward``); pass ``workers=1`` for a model of
    your own that does.

    Events (:mod:`segdeep.predict.events`): :class:`PredictStarted`, :class:`TilesDone` (after every
    batch), :class:`BlockDone`, :class:`Finishing`. Closing the generator stops within one batch; no
    file appears under a final name, and the finished blocks stay in ``out_dir``'s journal for
    ``resume=True`` (refused when a setting that decides the results changed:
    :func:`segdeep.predict.journal.run_fingerprint`). ``out_dir`` is locked for the run: another
    run into it is refused (:class:`segdeep.io.paths.FolderLock`).
    """
    config = resolve_config(config, image, bundle, out_dir, settings)
    with FolderLock(config.out_dir):
        return (yield from _iter_predict(config))


def _iter_predict(config: PredictConfig) -> Generator[object, None, PredictResult]:
    t_start = time.perf_counter()
    image, crf, probabilities, truth = config.image, config.crf, config.probabilities, config.truth
    info = open_raster(image, warn=False)
    dev = resolve_device(config.device)
    model, card = _resolve_model(config, dev)
    prec = resolve_precision(config.precision, dev)
    batch = resolve_batch_size(config.batch_size, dev, model_tile_size(card, config.tile_size))
    n_workers, threads = resolve_workers(config.workers, dev)
    plan = plan_run(config, info, card)
    bands, area, out, grid, block, blocks = plan.bands, plan.area, plan.out, plan.grid, plan.block, plan.blocks
    halo, raster = plan.halo, plan.raster
    engine = Engine(model, card, grid=grid, device=dev, precision=prec, batch_size=batch, workers=n_workers,
                    threads=threads, fusion=config.fusion)

    fingerprint = run_fingerprint(config, plan, info, card, model=model_identity(config, model), device=str(dev),
                                  precision=prec)
    journal = Journal(out, fingerprint, config.resume)
    all_blocks = list(blocks)
    todo = [b for b in all_blocks if b.index not in journal.done]
    check_free_space(journal.parts, scratch_bytes(sum(b.rect.width * b.rect.height for b in todo),
                                                  len(engine.classes), probabilities))
    plans, later = plan_blocks(grid, blocks, todo, halo, raster)
    total_tiles = sum(len(p[2]) for p in plans)
    yield PredictStarted(total_tiles, len(all_blocks), len(all_blocks) - len(todo), str(dev), prec, batch, block,
                  n_workers, threads)

    confusion = None
    if truth is not None:
        confusion = ConfusionMatrix(max(c.index for c in engine.classes) + 1,
                                    ignore_index=int(getattr(card, "ignore_index", 255)))
    sinks = Sinks(out, area, crs=info.crs, transform=info.transform * Affine.translation(area.col_off, area.row_off),
                  classes=engine.classes, probabilities=probabilities, truth=truth, confusion=confusion)
    ok = False
    done_blocks = []
    try:
        for blk in all_blocks:  # blocks finished by an interrupted run
            if blk.index in journal.done:
                labels = journal.load(blk.index, "labels")
                sinks.add(blk.rect, labels, journal.load(blk.index, "probabilities") if probabilities else None)
                done_blocks.append(blk)
    except BaseException:
        sinks.close(ok=False)
        raise

    sampler = PreviewSampler(area, np.dtype(info.dtype), len(bands)) if config.preview else None

    def save(blk, labels, probs) -> None:
        journal.finish_block(blk.index, labels, probs)
        sinks.add(blk.rect, labels, probs)

    reader = BlockReader(image, bands, [(b.index, b.rect) for b in done_blocks if sampler is not None]
                         + [(p[0].index, p[3]) for p in plans], depth=1)
    writer = BlockWriter(save, depth=2)
    store: dict[int, list] = {}  # tile pieces for later blocks: the next one's stay here, others go to disk
    spill = PieceSpill(out / ".segdeep-pieces")
    tiles_done = 0
    waits = {"read_wait": 0.0, "write_wait": 0.0}
    try:
        for blk in done_blocks if sampler is not None else ():  # resumed: pixels for the preview
            _, rect, data, _valid = reader.get()
            sampler.add(blk.rect, journal.load(blk.index, "labels"), data, rect)
        def read_next(own) -> tuple:
            """The next block's pixels from the reader, its tiles queued on the engine."""
            t0 = time.perf_counter()
            _, read_rect, data, valid = reader.get()
            waits["read_wait"] += time.perf_counter() - t0
            return read_rect, data, valid, engine.prepare(data, valid, read_rect, own)

        ahead = None  # the next block, read and queued once this one's tiles are all submitted
        for n, (blk, region, own, _read) in enumerate(plans):
            read_rect, data, valid, tiles = ahead if ahead is not None else read_next(own)
            ahead = None
            pieces = spill.take(blk.index) + store.pop(blk.index, [])
            run = engine.run_block(data, valid, read_rect, region, own, pieces, later, store, prepared=tiles)
            del pieces
            while True:
                try:
                    k = next(run)
                except StopIteration as stop:
                    acc = stop.value
                    break
                tiles_done += k
                yield TilesDone(tiles_done, total_tiles)
                if ahead is None and tiles.submitted and n + 1 < len(plans) and crf is None:
                    # the workers go on with the next block while this one is finished; not beside
                    # the CRF, which uses all the cores itself (7 % slower overlapped, measured)
                    ahead = read_next(plans[n + 1][2])
            del tiles
            following = plans[n + 1][0].index if n + 1 < len(plans) else None
            for j in [j for j in store if j != following]:
                spill.put(j, store.pop(j))
            image_region = engine.crf_colours(data[(slice(None), *region.slices(read_rect))], image, bands) if crf else None
            labels, probs = engine.finish_block(acc, region, blk.rect, valid[blk.rect.slices(read_rect)],
                                                image_region, crf, probabilities)
            if sampler is not None:
                sampler.add(blk.rect, labels, data, read_rect)
            del acc, data, valid
            t0 = time.perf_counter()
            writer.put(blk, labels, probs)
            waits["write_wait"] += time.perf_counter() - t0
            r = blk.rect
            yield BlockDone(blk.index, len(all_blocks) - len(todo) + n + 1, len(all_blocks),
                            (r.col_off, r.row_off, r.width, r.height))
        ok = True
    finally:
        engine.close()
        reader.close()
        spill.close()
        if ok:
            writer.close()
        else:  # cancelled or failed: keep what is finished for resume, then stop
            try:
                writer.close()
            except BaseException:  # noqa: S110 - the original exception matters more
                pass
            sinks.close(ok=False)
    compute_s = time.perf_counter() - t_start
    timings = {"compute": compute_s, **waits, "write_blocks": writer.seconds,
               **{k: v for k, v in asdict(engine.timings).items() if k != "extra"}}
    result = PredictResult(out_dir=out, labels=out / "labels.tif", run_json=out / "run.json", device=str(dev),
                           precision=prec, batch_size=batch, tiles_computed=engine.tiles_computed,
                           tiles_skipped=engine.tiles_skipped, blocks_computed=len(todo),
                           blocks_resumed=len(all_blocks) - len(todo))
    params = run_parameters(config, plan, device=str(dev), precision=prec, batch_size=batch, workers=n_workers,
                            threads_per_worker=threads)
    yield from finish_outputs(result, journal, sinks, area, info, engine.classes, params=params,
                              card_data=card_dict(card), truth=truth, vector=config.vector, preview=sampler,
                              timings=timings, t_start=t_start, version=__version__)
    return result


def predict_raster(image: str | Path | None = None, bundle=None, out_dir: str | Path | None = None, *,
                   callback: Callable[[object], None] | None = None, config: PredictConfig | None = None,
                   **settings) -> PredictResult:
    """Run :func:`iter_predict` to the end (``callback(event)`` for each event); return its result."""
    return drain(iter_predict(image, bundle, out_dir, config=config, **settings), callback)


def predict_array(model, card, image: np.ndarray, *, valid: np.ndarray | None = None, tile_size: int | None = None,
                  overlap: int | None = None, batch_size: int | str = "auto", device: str = "auto",
                  precision: str = "auto", workers: int | str = "auto", crf=None, probabilities: bool = False,
                  scales: str | Sequence[float] | None = None, flip: bool = False):
    """Segment an in-memory image (bands x height x width, raw pixel values of the card's bands).

    Same tiling, blending and normalisation as :func:`iter_predict` (an image smaller than a tile
    is padded). ``valid`` (bool height x width) marks nodata pixels (label 255). Returns labels
    (uint8 height x width), or ``(labels, probabilities uint8 classes x height x width, 255 = 1.0)``
    with ``probabilities=True``. ``crf``: a :class:`segdeep.crf.dense.CRFParams` to refine the result.
    ``workers``: as in :func:`iter_predict` (the result does not depend on it). ``scales`` and
    ``flip``: test-time fusion of each tile over scale factors and left-right flips
    (:mod:`segdeep.predict.fusion`; default: the plain forward pass).
    """
    image = np.asarray(image)
    if image.ndim == 2:
        image = image[None]
    if image.ndim != 3:
        raise SegdeepError(f"image must be bands x height x width, got shape {image.shape}")
    n, h, w = image.shape
    if n != len(card.bands):
        raise SegdeepError(f"image has {n} band(s) but the model takes {len(card.bands)} (card bands {list(card.bands)})")
    dev = resolve_device(device)
    tile = model_tile_size(card, tile_size)
    overlap = default_overlap(tile) if overlap is None else overlap
    check_tiling(tile, overlap, max(w, tile), max(h, tile), where="image")
    grid = TileGrid(w, h, tile, int(overlap))
    n_workers, threads = resolve_workers(workers, dev)
    engine = Engine(model, card, grid=grid, device=dev, precision=resolve_precision(precision, dev),
                    batch_size=resolve_batch_size(batch_size, dev, tile), workers=n_workers, threads=threads,
                    fusion=TestTimeFusion(scales, flip))
    region = Rect(0, 0, w, h)
    own = list(grid.tiles_touching(region))
    read = region
    for t in own:
        read = read.union(grid.rect(*t))
    data = np.zeros((n, read.height, read.width), dtype=image.dtype)
    data[:, :h, :w] = image
    ok = np.zeros((read.height, read.width), dtype=bool)
    ok[:h, :w] = True if valid is None else np.asarray(valid, dtype=bool)
    try:
        acc = drain(engine.run_block(data, ok, read, region, own, [], {}, {}))
    finally:
        engine.close()
    image_region = crf_colours(image, valid=ok[:h, :w]) if crf is not None else None
    labels, probs = engine.finish_block(acc, region, region, ok[:h, :w], image_region, crf, probabilities)
    return (labels, probs) if probabilities else labels
