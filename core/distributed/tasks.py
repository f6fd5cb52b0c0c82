"""Worker side of :mod:`segdeep.distributed.run`: the tasks a Dask worker process runs.

A prediction block is two tasks. ``compute_block`` reads the block's pixels directly from the
source path, runs the model on the tiles the block owns (the same plan as the in-process engine:
each tile is computed by exactly one block) and keeps the int32 blend accumulator in the worker's
memory; the pieces of its tiles that later blocks need are small separate results
(``pieces_for``). ``finish_block`` adds those pieces, makes the labels with the engine's own
``finish_block`` (CRF included) and writes the block as part GeoTIFFs in the shared work folder.
Integer sums do not depend on their order, so the labels are the in-process ones, bit for bit.

The model is loaded once per worker process (``load_model`` keeps it, keyed by bundle path, file
size and modification time, and device), not once per block.
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
import time
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import rasterio
from affine import Affine

from ..classes import NODATA_LABEL
from ..crf.colour import Limits, crf_colours
from ..crf.dense import CRFParams
from ..evaluate.metrics import ConfusionMatrix
from ..evaluate.rasters import window_confusion
from ..io.atomic import temp_path
from ..io.label_sources import open_labels
from ..io.raster import label_profile, read_window
from ..io.raster import open_dataset as _open
from ..models.bundle import load_bundle
from ..predict.engine import Engine
from ..predict.fusion import TestTimeFusion
from ..predict.source import rio_window
from ..predict.tiles import Rect, TileGrid
from ..runtime import drain, resolve_batch_size, resolve_device, resolve_precision

try:  # an optional extra: this module is only imported by segdeep.distributed.run, which checks for it
    from distributed import WorkerPlugin
except ImportError:  # pragma: no cover
    WorkerPlugin = object

#: Tag of a part file: the digest of the run settings it belongs to (checked on resume).
RUN_TAG = "segdeep_run"

_LOCK = threading.Lock()
_MODELS: dict[tuple, tuple] = {}
#: Models loaded by this process (read by tests and the benchmark through ``client.run``).
LOAD_COUNT = {"loads": 0, "seconds": 0.0}


def load_model(bundle: str, device: str):
    """``(model, card)`` of a bundle on ``device``, loaded once per process."""
    path = Path(bundle).resolve()
    st = path.stat()
    key = (str(path), st.st_size, st.st_mtime_ns, device)
    with _LOCK:
        if key not in _MODELS:
            t0 = time.perf_counter()
            _MODELS.clear()  # one model per worker: a new bundle replaces the old one
            _MODELS[key] = load_bundle(path, device=device)
            LOAD_COUNT["loads"] += 1
            LOAD_COUNT["seconds"] += time.perf_counter() - t0
        return _MODELS[key]


def model_loads() -> dict:
    """How many times this process loaded a model, and the seconds it took."""
    return dict(LOAD_COUNT)


def gpu_for_worker(name, gpu_count: int) -> int | None:
    """The CUDA device a worker of a ``local:N`` cluster uses: worker ``i`` (LocalCluster names its
    workers 0..N-1) takes GPU ``i mod gpu_count``; None without GPUs."""
    if gpu_count < 1:
        return None
    text = str(name)
    index = int(text) if text.isdigit() else zlib.crc32(text.encode())
    return index % gpu_count


class TorchThreads(WorkerPlugin):
    """Dask worker plugin for ``local:N`` clusters: torch uses ``n`` threads in every worker (one task
    = one core), and on a multi-GPU machine each worker makes its own GPU the current CUDA device
    (:func:`gpu_for_worker`), so ``device="auto"`` / ``"cuda"`` spreads the workers over the GPUs."""

    name = "segdeep-torch-threads"

    def __init__(self, n: int = 1) -> None:
        self.n = int(n)

    def setup(self, worker) -> None:
        import torch

        torch.set_num_threads(self.n)
        gpu = gpu_for_worker(worker.name, torch.cuda.device_count() if torch.cuda.is_available() else 0)
        if gpu is not None:
            torch.cuda.set_device(gpu)


@dataclass(frozen=True)
class BlockJob:
    """What every block task of one prediction run shares (small and picklable)."""

    image: str
    bundle: str
    parts: str  # shared work folder for the part files
    run_id: str  # digest of the settings; tagged on every part
    width: int  # raster size (the tile grid covers the whole raster)
    height: int
    tile_size: int
    overlap: int
    bands: tuple[int, ...]
    device: str = "auto"
    precision: str = "auto"
    batch_size: int | str = "auto"
    crf: dict | None = None
    crf_limits: Limits | None = None  # the CRF colour stretch of the whole raster (segdeep.crf.colour)
    probabilities: bool = False
    scales: tuple[float, ...] = (1.0,)  # test-time fusion (segdeep.predict.fusion)
    flip: bool = False
    truth: str | None = None
    num_classes: int = 0  # confusion matrix size (with truth)
    ignore_index: int = NODATA_LABEL
    crs_wkt: str | None = None
    transform: tuple[float, ...] = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)  # the raster's (affine order a..f)


def _engine(job: BlockJob) -> tuple[Engine, float]:
    dev = resolve_device(job.device)
    loads = LOAD_COUNT["seconds"]
    model, card = load_model(job.bundle, str(dev))
    load_s = LOAD_COUNT["seconds"] - loads
    engine = Engine(model, card, grid=TileGrid(job.width, job.height, job.tile_size, job.overlap), device=dev,
                    precision=resolve_precision(job.precision, dev),
                    batch_size=resolve_batch_size(job.batch_size, dev, job.tile_size),
                    fusion=TestTimeFusion(job.scales, job.flip))
    return engine, load_s


def compute_block(job: BlockJob, index: int, region: Rect, core: Rect, own: list, read: Rect,
                  later: dict) -> dict:
    """Model pass over the tiles block ``index`` owns; the accumulator stays in worker memory."""
    t0, cpu0 = time.perf_counter(), time.thread_time()
    engine, load_s = _engine(job)
    t1 = time.perf_counter()
    with _open(job.image) as ds:
        data, valid = read_window(ds, rio_window(read), list(job.bands))
    t2 = time.perf_counter()
    store: dict[int, list] = {}
    acc = drain(engine.run_block(data, valid, read, region, own, [], later, store))
    image = crf_colours(data[(slice(None), *region.slices(read))], limits=job.crf_limits) if job.crf else None
    return {
        "acc": acc, "valid_core": valid[core.slices(read)], "image": image, "pieces": store,
        "tiles_computed": engine.tiles_computed, "tiles_skipped": engine.tiles_skipped,
        "seconds": {"model_load": load_s, "setup": t1 - t0 - load_s, "read": t2 - t1,
                    "compute": time.perf_counter() - t2, "cpu": time.thread_time() - cpu0},
    }


def pieces_for(computed: dict, index: int) -> list:
    """The pieces (rect, int32 array) of a computed block's tiles that block ``index`` needs."""
    return computed["pieces"].get(index, [])


def part_path(parts: str | Path, kind: str, index: int) -> Path:
    return Path(parts) / f"{kind}_{index:06d}.tif"


def _write_part(path: Path, array: np.ndarray, job: BlockJob, core: Rect, tags: dict) -> None:
    crs = rasterio.crs.CRS.from_wkt(job.crs_wkt) if job.crs_wkt else None
    transform = Affine(*job.transform) * Affine.translation(core.col_off, core.row_off)
    profile = label_profile(core.width, core.height, crs, transform, intermediate=True)  # copied into the COG
    if array.ndim == 3:  # probabilities: no nodata, one band per class
        profile.update(count=array.shape[0], nodata=None, interleave="band")
    else:
        array = array[None]
    if crs is None:
        profile["transform"] = transform
    tmp = temp_path(path)
    try:
        with rasterio.open(tmp, "w", **profile) as ds:
            ds.write(array)
            ds.update_tags(**tags)
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


def finish_block(job: BlockJob, index: int, region: Rect, core: Rect, computed: dict, *pieces: list) -> dict:
    """Labels (and probabilities) of block ``index`` from its accumulator plus earlier blocks' pieces,
    written as part GeoTIFFs; returns a summary (with the block's confusion matrix with truth)."""
    t0, cpu0 = time.perf_counter(), time.thread_time()
    engine, load_s = _engine(job)
    acc = computed["acc"].copy()  # the computed result may be reused if this task is retried
    for plist in pieces:
        for rect, piece in plist:
            acc[(slice(None), *rect.slices(region))] += piece
    crf = None
    if job.crf is not None:
        crf = CRFParams.from_dict(job.crf)
    labels, probs = engine.finish_block(acc, region, core, computed["valid_core"], computed["image"], crf,
                                        job.probabilities)
    del acc
    t1 = time.perf_counter()
    tags = {RUN_TAG: job.run_id, "block": str(index)}
    if job.truth is not None:
        cm = ConfusionMatrix(job.num_classes, ignore_index=job.ignore_index)
        with _open(job.truth) as ds:  # as segdeep.predict.sinks.write_labels_from_parts
            t, t_valid = read_window(ds, rio_window(core))
        cm.update(np.where(t_valid, t[0], NODATA_LABEL).astype(np.uint8), labels)
        tags["confusion"] = json.dumps({"matrix": cm.matrix.tolist(), "ignored": cm.ignored_by_reason})
    if probs is not None:
        _write_part(part_path(job.parts, "probabilities", index), probs, job, core, tags)
    _write_part(part_path(job.parts, "labels", index), labels, job, core, tags)  # last: marks the block done
    seconds = dict(computed["seconds"])
    seconds["model_load"] += load_s
    seconds.update(finish=t1 - t0 - load_s, write=time.perf_counter() - t1)
    seconds["cpu"] += time.thread_time() - cpu0  # this thread's CPU in both tasks (torch: 1 thread)
    return {"index": index, "tags": tags, "worker_pid": os.getpid(), "seconds": seconds,
            "tiles_computed": computed["tiles_computed"], "tiles_skipped": computed["tiles_skipped"]}


def read_part_tags(parts: str | Path, index: int, run_id: str, size: tuple[int, int],
                   probabilities: bool) -> dict | None:
    """Tags of a finished block's part files when they belong to run ``run_id``, else None."""
    kinds = ["labels"] + (["probabilities"] if probabilities else [])
    tags = None
    for kind in kinds:
        path = part_path(parts, kind, index)
        if not path.exists():
            return None
        try:
            with rasterio.open(path) as ds:
                if ds.tags().get(RUN_TAG) != run_id or (ds.width, ds.height) != size:
                    return None
                tags = tags or ds.tags()
        except rasterio.errors.RasterioIOError:
            return None
    return tags


# --------------------------------------------------------------------------------------------------
# Evaluation and vectorization tasks

_SOURCES: dict[tuple, tuple] = {}


def confusion_block(prediction: str, truth: str, classes: list, ignore_index: int, attribute: str | None,
                    window: tuple[int, int, int, int]):
    """Confusion matrix of one window, as :func:`segdeep.evaluate.rasters.evaluate_rasters` computes it."""
    from rasterio.windows import Window

    key = (prediction, truth, ignore_index, attribute, repr([c.to_dict() for c in classes]))
    with _LOCK:
        if key not in _SOURCES:
            _SOURCES.clear()
            pred = open_labels(prediction, classes)
            ref = open_labels(truth, classes, like=pred.info, attribute=attribute, ignore_index=ignore_index)
            _SOURCES[key] = (pred, ref)
        pred, ref = _SOURCES[key]
    return window_confusion(pred, ref, Window(*window), ignore_index)
