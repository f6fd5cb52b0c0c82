"""Scale-out: the block pipeline on a Dask cluster (``dask.distributed``, the extra ``napari-segdeep[dask]``).

``scheduler`` is ``"tcp://host:8786"`` (an existing cluster), ``"local:N"`` (a
``LocalCluster`` of N single-threaded worker processes on loopback) or a ``distributed.Client``.

Prediction (:func:`iter_predict_distributed`) uses the in-process engine's plan: every tile is
computed by exactly one block, a block's task keeps its blend accumulator in worker memory, and only
the strips of tiles shared with later blocks move between workers (see :mod:`segdeep.distributed.tasks`).
Workers read their windows directly from the source path and write their blocks as part GeoTIFFs
in ``<out>/.segdeep-dask-parts/`` (a folder every worker and the client can reach); the client
builds a VRT of the parts and copies it to the ``labels.tif`` COG. Labels are identical to an
in-process run (integer blend sums), with or without the CRF.

Resume: a part file is written under a temporary name and renamed, and carries the digest of the
run's settings, so a finished block is a valid part with the right digest: those are not
resubmitted. A worker that dies has its tasks rerun elsewhere (Dask's lineage and ``retries``).
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from collections.abc import Callable, Generator
from pathlib import Path

from ..crf.colour import read_colour_limits
from ..errors import SegdeepError
from ..io.atomic import write_json_atomic
from ..io.paths import FolderLock
from ..io.raster import open_raster
from ..models.bundle import read_card
from ..predict.config import PredictConfig, resolve_config, run_parameters
from ..predict.events import BlockDone, PredictResult, PredictStarted, TilesDone
from ..predict.journal import (
    check_free_space,
    check_same_run,
    model_identity,
    run_fingerprint,
    scratch_bytes,
    shared_path,
)
from ..predict.plan import plan_blocks, plan_run
from ..runtime import drain, resolve_batch_size, resolve_device, resolve_precision
from . import tasks
from .client import cluster_ready, connect, require_dask
from .finish import finish_outputs

PARTS_NAME = ".segdeep-dask-parts"
STATE_NAME = ".segdeep-dask-run.json"


def _worker_settings(device: str, precision: str, batch_size, tile_size: int) -> tuple[str, str, int]:
    dev = resolve_device(device)
    return str(dev), resolve_precision(precision, dev), resolve_batch_size(batch_size, dev, tile_size)


def _finished_parts(state: Path, parts_dir: Path, fingerprint: dict, run_id: str, blocks, *, resume: bool,
                   probabilities: bool) -> dict[int, dict]:
    """Blocks an interrupted run finished (index -> part tags), after checking its fingerprint; without
    ``resume`` the parts are cleared. Records this run's fingerprint."""
    done: dict[int, dict] = {}
    if resume and state.exists():
        try:
            stored = json.loads(state.read_text()).get("fingerprint") or {}
        except (OSError, json.JSONDecodeError) as exc:
            raise SegdeepError(f"{state}: unreadable resume state ({exc}); run without --resume") from None
        check_same_run(state, stored, fingerprint)
        for b in blocks:
            tags = tasks.read_part_tags(parts_dir, b.index, run_id, (b.rect.width, b.rect.height), probabilities)
            if tags is not None:
                done[b.index] = tags
    else:
        shutil.rmtree(parts_dir, ignore_errors=True)
    parts_dir.mkdir(parents=True, exist_ok=True)
    write_json_atomic(state, {"fingerprint": fingerprint})
    return done


def iter_predict_distributed(
    image: str | Path | None = None,
    bundle: str | Path | None = None,
    out_dir: str | Path | None = None,
    *,
    scheduler,
    config: PredictConfig | None = None,
    retries: int = 3,
    max_in_flight: int | None = None,
    **settings,
) -> Generator[object, None, PredictResult]:
    """:func:`segdeep.predict.run.iter_predict` with the blocks mapped over a Dask cluster.

    Same settings (a :class:`segdeep.predict.config.PredictConfig` as ``config=``, or its keywords),
    outputs and events (plus :class:`ClusterReady` first), and identical labels. ``bundle`` must be a
    path every worker can read, as must ``image``, ``truth`` and ``out_dir``. ``device``,
    ``precision`` and ``batch_size`` are resolved on the workers; ``workers`` stays ``auto`` (the
    cluster's workers come from ``scheduler``). ``retries``: reruns of a failed task.
    ``max_in_flight``: blocks submitted ahead (default 4 per worker thread). Resume uses the same
    fingerprint as a run in this process (:func:`segdeep.predict.journal.run_fingerprint`); ``out_dir``
    is locked for the run as there (:class:`segdeep.io.paths.FolderLock`).
    """
    config = resolve_config(config, image, bundle, out_dir, settings)
    with FolderLock(config.out_dir):
        return (yield from _iter_predict_distributed(config, scheduler, retries, max_in_flight))


def _iter_predict_distributed(config: PredictConfig, scheduler, retries: int,
                              max_in_flight: int | None) -> Generator[object, None, PredictResult]:
    t_start = time.perf_counter()
    if config.workers != "auto":
        raise SegdeepError(f"--workers {config.workers}: applies to runs in this process; a cluster's workers "
                           "come from --scheduler (local:N starts N)")
    bundle = config.bundle
    if bundle is None or not Path(bundle).is_file():
        raise SegdeepError(f"{bundle if bundle is not None else 'an in-memory model'}: no such model bundle; on a "
                           "cluster the model is a .safetensors path every worker can read")
    image, crf, probabilities, truth = config.image, config.crf, config.probabilities, config.truth
    info = open_raster(image, warn=False)
    card = read_card(bundle)
    plan = plan_run(config, info, card)
    tile_size, overlap, bands, area, out = plan.tile_size, plan.overlap, plan.bands, plan.area, plan.out
    grid, block, blocks, halo, raster = plan.grid, plan.block, plan.blocks, plan.halo, plan.raster
    classes = list(card.classes)
    model_id = model_identity(config)
    parts_dir, state = out / PARTS_NAME, out / STATE_NAME
    all_blocks = list(blocks)
    plans, later = plan_blocks(grid, blocks, all_blocks, halo, raster)
    owner = {tile: blk.index for blk, _, own, _ in plans for tile in own}
    needs: dict[int, set[int]] = {}
    for tile, pieces in later.items():
        for j, _ in pieces:
            needs.setdefault(j, set()).add(owner[tile])
    crf_limits = read_colour_limits(image, bands) if crf is not None else None
    summaries: list[dict] = []
    timings: dict[str, float] = {}
    distributed = require_dask()
    with connect(scheduler) as client:
        ready = cluster_ready(client)
        yield ready
        dev, prec, batch = client.submit(_worker_settings, config.device, config.precision, config.batch_size,
                                         tile_size, pure=False).result()
        fingerprint = run_fingerprint(config, plan, info, card, model=model_id, device=dev, precision=prec)
        run_id = hashlib.blake2b(json.dumps(fingerprint, sort_keys=True).encode(), digest_size=12).hexdigest()
        done = _finished_parts(state, parts_dir, fingerprint, run_id, all_blocks, resume=config.resume,
                               probabilities=probabilities)
        todo = [b.index for b in all_blocks if b.index not in done]
        check_free_space(parts_dir, scratch_bytes(sum(all_blocks[i].rect.width * all_blocks[i].rect.height
                                                      for i in todo), len(classes), probabilities))
        compute = sorted(set(todo) | {i for j in todo for i in needs.get(j, ())})
        last_use = {}
        for j in todo:
            for i in [j, *needs.get(j, ())]:
                last_use[i] = max(last_use.get(i, -1), j)
        total_tiles = sum(len(plans[i][2]) for i in compute)
        job = tasks.BlockJob(
            image=shared_path(image), bundle=str(Path(bundle).resolve()), parts=str(parts_dir.resolve()),
            run_id=run_id, width=info.width, height=info.height, tile_size=tile_size, overlap=int(overlap),
            bands=tuple(bands), device=config.device, precision=config.precision, batch_size=config.batch_size,
            crf=crf.to_dict() if crf is not None else None, crf_limits=crf_limits, probabilities=probabilities,
            scales=tuple(config.scales), flip=config.flip,
            truth=shared_path(truth) if truth else None, num_classes=max(c.index for c in classes) + 1,
            ignore_index=int(getattr(card, "ignore_index", 255)), crs_wkt=info.crs.to_wkt() if info.crs else None,
            transform=tuple(info.transform)[:6])
        yield PredictStarted(total_tiles, len(all_blocks), len(done), dev, prec, batch, block)
        threads = sum(w.get("nthreads", 1) for w in client.scheduler_info()["workers"].values()) or 1
        window_size = max_in_flight or 4 * threads
        tag = run_id[:8]
        computed: dict[int, object] = {}
        strips: dict[tuple[int, int], object] = {}  # (computed block, later block) -> pieces future
        needed_by: dict[int, list[int]] = {}
        for k in todo:
            for i in sorted(needs.get(k, ())):
                needed_by.setdefault(i, []).append(k)
        live: set = set()
        ac = distributed.as_completed()
        queue = iter(range(len(all_blocks)))
        in_flight = 0

        def submit_more() -> None:
            nonlocal in_flight
            for j in queue:
                p_blk, region, own, read = plans[j]
                core = p_blk.rect
                if j in last_use:
                    later_j = {t: later[t] for t in own if t in later}
                    fut = client.submit(tasks.compute_block, job, j, region, core, own, read, later_j,
                                        key=f"segdeep-compute-{tag}-{j}", retries=retries)
                    computed[j] = fut
                    live.add(fut)
                    ac.add(fut)
                    # the strips later blocks need become futures of their own now, so the block's
                    # accumulator (and colours) are freed once it is finished, not a row of blocks later
                    for k in needed_by.get(j, ()):
                        strips[(j, k)] = client.submit(tasks.pieces_for, fut, k, key=f"segdeep-pieces-{tag}-{j}-{k}",
                                                       retries=retries, priority=1)
                if j not in done:
                    pieces = [strips.pop((i, j)) for i in sorted(needs.get(j, ()))]
                    fut = client.submit(tasks.finish_block, job, j, region, core, computed[j], *pieces,
                                        key=f"segdeep-finish-{tag}-{j}", retries=retries, priority=1)
                    live.add(fut)
                    ac.add(fut)
                    in_flight += 1
                computed.pop(j, None)  # Dask keeps it while its finish and strip tasks need it
                if in_flight >= window_size:
                    return

        tiles_done = 0
        n_done = len(done)
        try:
            submit_more()
            for fut in ac:
                live.discard(fut)
                name = str(fut.key)
                if fut.status == "error":
                    fut.result()  # raises the task's error
                if name.startswith("segdeep-compute"):
                    tiles_done += len(plans[int(name.rsplit("-", 1)[1])][2])
                    yield TilesDone(tiles_done, total_tiles)
                elif name.startswith("segdeep-finish"):
                    summary = fut.result()
                    summaries.append(summary)
                    done[summary["index"]] = summary["tags"]
                    n_done += 1
                    in_flight -= 1
                    r = all_blocks[summary["index"]].rect
                    yield BlockDone(summary["index"], n_done, len(all_blocks),
                                    (r.col_off, r.row_off, r.width, r.height))
                    submit_more()
                del fut
        finally:
            if live:
                client.cancel(list(live))
        for s in summaries:
            for k, v in s["seconds"].items():
                timings[f"worker_{k}"] = timings.get(f"worker_{k}", 0.0) + v
        timings["compute"] = time.perf_counter() - t_start
        result = PredictResult(out_dir=out, labels=out / "labels.tif", run_json=out / "run.json", device=dev,
                               precision=prec, batch_size=batch, blocks_computed=len(todo),
                               blocks_resumed=len(all_blocks) - len(todo))
        result.tiles_computed = sum(s.get("tiles_computed", 0) for s in summaries)
        result.tiles_skipped = sum(s.get("tiles_skipped", 0) for s in summaries)
        params = run_parameters(config, plan, device=dev, precision=prec, batch_size=batch,
                                scheduler=ready.scheduler, workers=ready.workers)
        yield from finish_outputs(result, client, info, card, classes, all_blocks, area, parts_dir, done, timings,
                                  truth=truth, probabilities=probabilities, vector=config.vector,
                                  preview=config.preview,
                                  bands=bands, params=params, t_start=t_start)
    shutil.rmtree(parts_dir, ignore_errors=True)
    state.unlink(missing_ok=True)
    return result


def predict_distributed(image=None, bundle=None, out_dir=None, *, scheduler,
                        callback: Callable[[object], None] | None = None, config: PredictConfig | None = None,
                        **settings) -> PredictResult:
    """Run :func:`iter_predict_distributed` to the end (``callback(event)`` per event); return its result."""
    return drain(iter_predict_distributed(image, bundle, out_dir, scheduler=scheduler, config=config, **settings),
                 callback)


