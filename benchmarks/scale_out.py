"""Scale-out benchmark (issue 10): in-process (1 thread) vs a LocalCluster of 2 x 1-thread workers.

  python benchmarks/scale_out.py                 # 8448 x 8448 px (71 MP), the shipped model, defaults
  python benchmarks/scale_out.py --size 4224     # quicker (4 blocks)
  python benchmarks/scale_out.py --model random  # the earlier setting: random U-Net (base 8, depth 3)

Both runs segment the same raster with the same bundle and the same settings in this machine's spare
CPU. The raster is a mosaic of the committed sample scene (``sample_data/scene.tif``, flipped and
rotated copies), so the shipped model (``sample_data/models/default.safetensors``) produces the
kind of label map a real run does (a random-weight model gives noise labels, which cost several
times more to compress into the COG than real ones). Settings are predict's defaults for that
model: tile 256, overlap 64, block 2048 (2112 px after snapping to the tile stride), so 8448 px is
4 x 4 blocks. Printed: wall and CPU seconds of each run, the speed-up, and the distributed run's
per-block costs from Dask's task stream (scheduling gap, transfers between workers,
deserialisation) and from the tasks' own timings (model load per worker, read, model, finish,
part write), plus the client's final assembly (VRT -> COG). Labels are checked to be identical.
The load average is printed: on a shared machine, read the speed-up with it.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from predict import make_raster  # noqa: E402 - the predict benchmark's generated raster

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = ROOT / "sample_data" / "models" / "default.safetensors"
SCENE = ROOT / "sample_data" / "scene.tif"


def random_bundle(path: Path) -> Path:
    """A random-weight U-Net (base 8, depth 3, tile 256): the first version of this benchmark."""
    import torch
    from segdeep.classes import DUBAI_CLASSES
    from segdeep.models.bundle import ModelCard, save_bundle
    from segdeep.models.registry import create_model

    torch.manual_seed(0)
    model = create_model("unet", num_classes=6, base_channels=8, depth=3).eval()
    card = ModelCard(architecture="unet", classes=list(DUBAI_CLASSES), name="bench",
                     kwargs={"base_channels": 8, "depth": 3}, tile_size=256)
    return save_bundle(model, card, path)


def mosaic(source: Path, path: Path, size: int) -> Path:
    """A ``size`` x ``size`` px tiled GeoTIFF of flipped and rotated copies of ``source`` (its CRS,
    transform, bands and dtype), so that no two neighbouring copies look alike to the model."""
    import rasterio
    from rasterio.windows import Window

    with rasterio.open(source) as src:
        data = src.read()
        profile = dict(driver="GTiff", width=size, height=size, count=src.count, dtype=src.dtypes[0],
                       crs=src.crs, transform=src.transform, nodata=src.nodata, tiled=True, blockxsize=256,
                       blockysize=256, compress="deflate", BIGTIFF="IF_SAFER")
    n = data.shape[1]
    with rasterio.open(path, "w", **profile) as ds:
        for k, r in enumerate(range(0, size, n)):
            for m, c in enumerate(range(0, size, n)):
                piece = np.rot90(data, k=(k + m) % 4, axes=(1, 2))
                piece = piece[:, :, ::-1] if (k * 7 + m) % 2 else piece
                h, w = min(n, size - r), min(n, size - c)
                ds.write(np.ascontiguousarray(piece[:, :h, :w]), window=Window(c, r, w, h))
    return path


def scene_mosaic(path: Path, size: int) -> Path:
    """:func:`mosaic` of the sample scene."""
    return mosaic(SCENE, path, size)


def cpu_s() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=8448, help="raster side in pixels")
    parser.add_argument("--model", default=str(SHIPPED), help="bundle path, or 'random' (random U-Net, tile 256, "
                        "overlap 32, block 1024: the first version of this benchmark)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--skip-in-process", action="store_true")
    args = parser.parse_args()

    import torch

    torch.set_num_threads(1)
    work = Path(tempfile.mkdtemp(prefix="segdeep-scale-out-"))
    try:
        run(args, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def run(args, work: Path) -> None:
    import distributed
    import rasterio
    from segdeep.distributed import connect, predict_distributed
    from segdeep.distributed import tasks as _dask_tasks
    from segdeep.models.bundle import read_card
    from segdeep.predict.run import predict_raster

    if args.model == "random":
        image = make_raster(work / "image.tif", args.size)
        model = random_bundle(work / "model.safetensors")
        settings = dict(tile_size=256, overlap=32, block_size=1024, preview=False)
    else:
        image = scene_mosaic(work / "image.tif", args.size)
        model = Path(args.model)
        settings = dict(preview=False)
    card = read_card(model)
    print(f"raster {args.size} x {args.size} px ({args.size ** 2 / 1e6:.1f} MP), model {model.name} "
          f"({card.architecture} {card.kwargs}), settings {settings or 'defaults'}; "
          f"load average {os.getloadavg()} on {os.cpu_count()} CPUs")

    if not args.skip_in_process:
        from segdeep import runtime

        cores, runtime.available_cores = runtime.available_cores, lambda: 1  # 1 worker x 1 torch thread
        try:
            t0, c0 = time.perf_counter(), cpu_s()
            ref = predict_raster(image, model, work / "in-process", workers=1, **settings)
            wall_in, cpu_in = time.perf_counter() - t0, cpu_s() - c0
        finally:
            runtime.available_cores = cores
        print(f"in-process, 1 thread: {wall_in:.1f} s wall, {cpu_in:.1f} s CPU, {ref.blocks_computed} blocks, "
              f"{ref.tiles_computed} tiles; load average {os.getloadavg()}")

    t0 = time.perf_counter()
    with connect(f"local:{args.workers}") as client:
        start_s = time.perf_counter() - t0
        print(f"LocalCluster {args.workers} x 1 thread: started in {start_s:.1f} s")
        # Warm-up: each worker loads the model once (what the first block of a run pays), timed here.
        t0 = time.perf_counter()
        client.run(_dask_tasks.load_model, str(model), "cpu")
        warm_s = time.perf_counter() - t0
        # Scheduling round trip of a task that does nothing (submit -> run on a worker -> result).
        t0 = time.perf_counter()
        client.gather(client.map(abs, range(-200, 0), pure=False))
        noop_ms = 1000 * (time.perf_counter() - t0) / 200
        before = client.run(lambda: sum(resource.getrusage(resource.RUSAGE_SELF)[:2]))
        with distributed.get_task_stream(client) as stream:
            t0, c0 = time.perf_counter(), cpu_s()
            got = predict_distributed(image, model, work / "dask", scheduler=client, **settings)
            wall_d, cpu_client = time.perf_counter() - t0, cpu_s() - c0
        after = client.run(lambda: sum(resource.getrusage(resource.RUSAGE_SELF)[:2]))
        loads = client.run(_dask_tasks.model_loads)
    cpu_workers = sum(after[w] - before[w] for w in after)
    n = got.blocks_computed
    t = got.timings
    print(f"distributed: {wall_d:.1f} s wall, CPU {cpu_workers:.1f} s in workers + {cpu_client:.1f} s client, "
          f"{n} blocks, {got.tiles_computed} tiles; load average {os.getloadavg()}")
    if not args.skip_in_process:
        with rasterio.open(ref.labels) as a, rasterio.open(got.labels) as b:
            same = np.array_equal(a.read(), b.read())
        print(f"labels identical: {same}")
        print(f"speed-up (wall): {wall_in / wall_d:.2f}x   CPU overhead: {(cpu_workers + cpu_client) / cpu_in:.2f}x")

    # Per-block costs. Task stream: start/stop of each task's actions on the workers.
    busy = {"compute": 0.0, "transfer": 0.0, "deserialize": 0.0, "disk-read": 0.0, "disk-write": 0.0}
    kinds: dict[str, list[float]] = {}
    for task in stream.data:
        for ss in task["startstops"]:
            busy[ss["action"]] = busy.get(ss["action"], 0.0) + ss["stop"] - ss["start"]
            if ss["action"] == "compute":
                kind = str(task["key"]).split("-")[1]
                kinds.setdefault(kind, []).append(ss["stop"] - ss["start"])
    idle = args.workers * wall_d - sum(busy.values())
    print("per block (ms): " + ", ".join(f"{k} task {1000 * sum(v) / n:.0f}" for k, v in sorted(kinds.items())
                                         if k in ("compute", "pieces", "finish")))
    print(f"  inside the tasks: read {1000 * t.get('worker_read', 0) / n:.0f}, model+blend "
          f"{1000 * t.get('worker_compute', 0) / n:.0f}, finish {1000 * t.get('worker_finish', 0) / n:.0f}, "
          f"part write {1000 * t.get('worker_write', 0) / n:.0f}")
    print(f"  transfers between workers {1000 * busy['transfer'] / n:.1f}, deserialisation "
          f"{1000 * busy['deserialize'] / n:.1f}, worker idle (scheduling, waiting for dependencies, "
          f"client) {1000 * idle / n:.0f}")
    print(f"  tasks per block {len(stream.data) / n:.1f}; an empty task's round trip {noop_ms:.1f} ms "
          f"(x {len(stream.data) / n:.1f} = {noop_ms * len(stream.data) / n:.0f} ms of scheduling per block)")
    print("model load per worker, once, before the timed run (s): "
          + ", ".join(f"{v['seconds']:.2f} ({v['loads']} load)" for v in loads.values())
          + f"; warm-up wall {warm_s:.1f} s (imports included)")
    task_cpu = t.get("worker_cpu", 0.0)
    print(f"CPU in the block tasks (thread time, without the workers' background): {task_cpu:.1f} s, "
          f"{1000 * task_cpu / n:.0f} ms per block")
    if not args.skip_in_process:
        print(f"CPU per block: in-process {1000 * cpu_in / n:.0f} ms (whole run, final COG included); "
              f"distributed tasks {1000 * task_cpu / n:.0f} ms + client {1000 * cpu_client / n:.0f} ms; "
              f"workers' processes {1000 * cpu_workers / n:.0f} ms")
        # On an idle machine each worker has a core: wall ~ task CPU / workers + the client's serial part.
        # On an idle machine each worker has a core: wall ~ tasks' CPU / workers + task round trips
        # / workers + the client's CPU (serial: submission, assembly of the COG).
        est = cpu_in / (task_cpu / args.workers + noop_ms / 1000 * len(stream.data) / args.workers + cpu_client)
        print(f"estimated speed-up with a free core per worker (CPU-time model): {est:.2f}x")
    print(f"client: final labels COG from the VRT of {n} parts {t.get('labels_file', 0):.2f} s "
          f"({1000 * t.get('labels_file', 0) / n:.0f} ms per block); total {t.get('total', 0):.1f} s")


if __name__ == "__main__":
    main()
