"""Benchmarks of `segdeep predict` (issue 5). Prints its figures; see benchmarks/README.md.

  python benchmarks/predict.py p1      # efficiency: predict throughput / raw batched forward throughput
  python benchmarks/predict.py p1 --model deeplab_v3plus:mobilenet_v3_large   # the same with a heavier model
  python benchmarks/predict.py p2      # peak RSS at 16, 64 and 256 MP (each size in its own process)
  python benchmarks/predict.py naive   # whole-image sliding window with a C x H x W logit array
  python benchmarks/predict.py forward # channels_last and batch size on this CPU

P1 runs on the generated sample scene (4096 x 4096, `segdeep sample`) with the shipped U-Net (or
`--model`) and the default tiling (tile 512, overlap 64, block 2048); the raw forward pass runs over
the same tiles, already in memory and normalised, in the same process (see `p1`). P2 and naive use generated rasters and a
small fast model, so they measure the pipeline's memory rather than the model's.
"""

from __future__ import annotations

import argparse
import copy
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def card(tile_size=512):
    from segdeep.classes import DUBAI_CLASSES
    from segdeep.models.bundle import ModelCard

    return ModelCard(architecture="unet", classes=list(DUBAI_CLASSES), name="bench",
                     kwargs={"base_channels": 8, "depth": 4}, tile_size=tile_size)


def unet():
    import torch
    from segdeep.models.registry import create_model

    torch.manual_seed(0)
    return create_model("unet", num_classes=6, in_channels=3, base_channels=8, depth=4).eval()


def small_model():
    """Two 3x3 convolutions (8 channels): fast, so the pipeline's own cost and memory show."""
    import torch

    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.ReLU(),
                               torch.nn.Conv2d(8, 6, 3, padding=1)).eval()


def make_raster(path: Path, size: int, block: int = 2048) -> Path:
    """A smooth pattern + noise RGB GeoTIFF of size x size px, written block by block."""
    import rasterio
    from rasterio.transform import from_origin
    from rasterio.windows import Window

    if path.exists():
        return path
    rng = np.random.default_rng(0)
    profile = dict(driver="GTiff", width=size, height=size, count=3, dtype="uint8", tiled=True,
                   blockxsize=256, blockysize=256, compress="deflate", crs="EPSG:32640",
                   transform=from_origin(500000, 2780000, 0.5, 0.5), BIGTIFF="IF_SAFER")
    tmp = path.with_suffix(".tmp.tif")
    with rasterio.open(tmp, "w", **profile) as ds:
        for r in range(0, size, block):
            for c in range(0, size, block):
                h, w = min(block, size - r), min(block, size - c)
                yy, xx = np.mgrid[r:r + h, c:c + w].astype(np.float32)
                base = np.stack([np.sin(xx / 97.0) + np.cos(yy / 53.0), np.sin((xx + yy) / 71.0),
                                 np.cos(xx / 31.0) * np.sin(yy / 43.0)])
                data = (base * 60 + 128 + rng.normal(0, 6, (3, h, w))).clip(0, 255).astype(np.uint8)
                ds.write(data, window=Window(c, r, w, h))
    tmp.rename(path)
    return path


def p1_model(name: str):
    """``shipped``: the trained default bundle (real-looking labels); else an architecture of the
    registry with random weights (seed 0) and the default card (its noisier labels cost the
    pipeline more to store than a trained model's)."""
    if name == "shipped":
        shipped = ROOT / "sample_data" / "models" / "default.safetensors"
        if shipped.exists():
            from segdeep.models.bundle import load_bundle

            return load_bundle(shipped)
        return unet(), card()
    import torch
    from segdeep.classes import DUBAI_CLASSES
    from segdeep.models.bundle import ModelCard
    from segdeep.models.registry import create_model

    arch, _, backbone = name.partition(":")
    kwargs = {"backbone": backbone} if backbone else {}
    torch.manual_seed(0)
    model = create_model(arch, num_classes=6, in_channels=3, **kwargs).eval()
    return model, ModelCard(architecture=arch, classes=list(DUBAI_CLASSES), name=name, kwargs=kwargs, tile_size=512)


def p1(work: Path, model_name: str = "shipped", repeat: int = 2) -> dict:
    """P1: predict's throughput over the raw forward pass's, on the same tiles, in one process.

    The raw pass runs both ways a predict could run the model (one tile at a time on all torch
    threads, and as many tiles at once as predict's workers, each on its share of the threads); the
    denominator is the faster way's best time. Raw and predict alternate ``repeat`` times, and the
    best time of each is kept (the machine is shared; a slow outlier is load, not the code)."""
    import rasterio
    import torch
    from segdeep.io.raster import read_window
    from segdeep.predict.engine import Engine
    from segdeep.predict.run import predict_raster
    from segdeep.predict.tiles import Rect, TileGrid
    from segdeep.runtime import resolve_workers
    from segdeep.sample.scene import make_sample_scene

    scene = work / "scene4096" / "scene.tif"
    if not scene.exists():
        make_sample_scene(work / "scene4096", size=4096)
    model, c = p1_model(model_name)
    grid = TileGrid(4096, 4096, 512, 64)
    tiles = list(grid.tiles_touching(Rect(0, 0, 4096, 4096)))
    engine = Engine(model, c, grid=grid, device=torch.device("cpu"), precision="fp32", batch_size=1)
    inputs = []
    for t in tiles:
        rect = grid.rect(*t)
        data, valid = read_window(str(scene), rasterio.windows.Window(rect.col_off, rect.row_off, rect.width,
                                                                       rect.height))
        inputs.append(torch.from_numpy(engine.normalise(data, valid)[None]).contiguous(
            memory_format=torch.channels_last))
    n, threads = resolve_workers("auto", torch.device("cpu"))

    def raw_serial() -> float:
        """The model alone over the tiles, one after the other on torch's threads (batch 1,
        channels_last, inference mode)."""
        t0 = time.perf_counter()
        with torch.inference_mode():
            for x in inputs:
                engine.model(x)
        return time.perf_counter() - t0

    def part(i: int) -> None:
        torch.set_num_threads(threads)
        with torch.inference_mode():
            for x in inputs[i::n]:
                engine.model(x)

    def raw_concurrent() -> float:
        """The model alone over the tiles, ``n`` at once on ``threads`` torch threads each (as predict)."""
        from concurrent.futures import ThreadPoolExecutor

        t0 = time.perf_counter()
        with ThreadPoolExecutor(n) as pool:
            list(pool.map(part, range(n)))
        return time.perf_counter() - t0

    with torch.inference_mode():
        engine.model(inputs[0])  # warm-up
    runs: dict[str, list[float]] = {"serial": [], "concurrent": [], "predict": []}
    result = None
    for _ in range(repeat):
        runs["serial"].append(raw_serial())
        runs["concurrent"].append(raw_concurrent())
        t0 = time.perf_counter()
        result = predict_raster(scene, (model, c), work / "p1-out", tile_size=512, overlap=64, block_size=2048,
                                batch_size=1)
        runs["predict"].append(time.perf_counter() - t0)
    raw_s = min(runs["serial"] + runs["concurrent"])
    predict_s = min(runs["predict"])
    return {"model": c.name, "tiles": len(tiles), "tiles_computed": result.tiles_computed,
            "raw_forward_s": round(raw_s, 2), "predict_s": round(predict_s, 2),
            "runs_s": {k: [round(v, 2) for v in vs] for k, vs in runs.items()},
            "workers": [n, threads], "timings_last_run": result.timings,
            "efficiency": round(raw_s / predict_s, 3),
            "efficiency_compute": round(raw_s / result.timings["compute"], 3)}


def child_pipeline(size: int, work: Path) -> dict:
    from segdeep.predict.run import predict_raster

    raster = make_raster(work / f"r{size}.tif", size)
    base = rss_mb()
    t0 = time.perf_counter()
    result = predict_raster(raster, (small_model(), card()), work / f"out{size}", overlap=64, block_size=2048)
    return {"megapixels": size * size / 1e6, "seconds": round(time.perf_counter() - t0, 1),
            "peak_rss_mb": round(rss_mb(), 1), "rss_before_run_mb": round(base, 1),
            "tiles": result.tiles_computed}


def child_naive(size: int, work: Path) -> dict:
    """Whole-image sliding window: logits summed into a C x H x W float32 array, divided by counts."""
    import rasterio
    import torch
    from segdeep.predict.tiles import TileGrid
    from segdeep.runtime import resolve_device  # noqa: F401 - same torch import cost

    raster = make_raster(work / f"r{size}.tif", size)
    model = small_model().to(memory_format=torch.channels_last)
    c = card()
    base = rss_mb()
    t0 = time.perf_counter()
    with rasterio.open(raster) as ds:
        image = ds.read().astype(np.float32)
    mean = np.asarray(c.mean, np.float32)[:, None, None]
    std = np.asarray(c.std, np.float32)[:, None, None]
    image = (image * c.scale - mean) / std
    h, w = image.shape[1:]
    grid = TileGrid(w, h, 512, 64)
    logits = np.zeros((6, h, w), np.float32)
    count = np.zeros((h, w), np.float32)
    for r in range(grid.n_rows):
        for col in range(grid.n_cols):
            rect = grid.rect(r, col)
            r0, c0 = min(rect.row_off, h - 512), min(rect.col_off, w - 512)  # shift inward at the edge
            x = torch.from_numpy(np.ascontiguousarray(image[:, r0:r0 + 512, c0:c0 + 512]))[None]
            with torch.inference_mode():
                out = model(x.contiguous(memory_format=torch.channels_last))[0].numpy()
            logits[:, r0:r0 + 512, c0:c0 + 512] += out
            count[r0:r0 + 512, c0:c0 + 512] += 1
    labels = (logits / count).argmax(0).astype(np.uint8)
    with rasterio.open(work / f"naive{size}.tif", "w", driver="GTiff", width=w, height=h, count=1,
                       dtype="uint8", tiled=True, compress="deflate") as ds:
        ds.write(labels[None])
    return {"megapixels": size * size / 1e6, "seconds": round(time.perf_counter() - t0, 1),
            "peak_rss_mb": round(rss_mb(), 1), "rss_before_run_mb": round(base, 1)}


def child_forward(work: Path, rounds: int = 9, model_name: str = "shipped") -> dict:
    """Per-tile forward time: contiguous vs channels_last, batch 1 / 2 / 4, and predict's CPU default
    (``workers``: 2 tiles at once, 1 torch thread each, on 2 cores).

    The variants are interleaved (one pass of 4 tiles each, ``rounds`` times) so that a change
    in the machine's load hits them alike; per variant the median pass is kept, and its ratio to
    channels_last batch 1 on all torch threads is printed with it (< 1: faster than that)."""
    from concurrent.futures import ThreadPoolExecutor

    import torch
    from segdeep.runtime import resolve_workers

    x = torch.randn(4, 3, 512, 512)
    base_model = p1_model(model_name)[0]
    variants = {}
    for layout in ("contiguous", "channels_last"):
        fmt = torch.channels_last if layout == "channels_last" else torch.contiguous_format
        model = copy.deepcopy(base_model).to(memory_format=fmt)  # .to() converts in place
        for bs in (1, 2, 4):
            variants[f"{layout}_batch{bs}"] = (model, [x[i:i + bs].contiguous(memory_format=fmt)
                                                       for i in range(0, 4, bs)])
    n, threads = resolve_workers("auto", torch.device("cpu"))
    pool = ThreadPoolExecutor(n)
    model, tiles = variants["channels_last_batch1"]

    def part(i: int) -> None:
        torch.set_num_threads(threads)
        with torch.inference_mode():
            for xb in tiles[i::n]:
                model(xb)

    def run(name: str) -> None:
        if name == "workers":
            list(pool.map(part, range(n)))
            return
        model, batches = variants[name]
        for xb in batches:
            model(xb)

    names = [*variants, "workers"]
    times: dict[str, list[float]] = {k: [] for k in names}
    with torch.inference_mode():
        for name in names:  # warm-up
            run(name)
        for _ in range(rounds):
            for name in names:
                t0 = time.perf_counter()
                run(name)
                times[name].append((time.perf_counter() - t0) / 4)
    median = {k: sorted(v)[len(v) // 2] for k, v in times.items()}
    base = median["channels_last_batch1"]
    return {"model": model_name, "rounds": rounds, "torch_threads": torch.get_num_threads(), "workers": [n, threads],
            **{f"{k}_s_per_tile": round(v, 4) for k, v in median.items()},
            **{f"{k}_vs_channels_last_batch1": round(v / base, 3) for k, v in median.items()},
            "passes_s_per_tile": {k: [round(t, 3) for t in v] for k, v in times.items()}}


def spawn(kind: str, size: int, work: Path, extra: tuple[str, ...] = ()) -> dict:
    """Run one measurement in a fresh process (its peak RSS is its own); rasters are made beforehand
    in another process so that their generation does not count."""
    if kind in ("pipeline", "naive"):
        spawn("make", size, work)
    cmd = [sys.executable, __file__, "--child", kind, "--size", str(size), "--work", str(work), *extra]
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if done.returncode:
        return {"error": done.stderr.strip().splitlines()[-1:] or done.returncode}
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("what", nargs="?", default="all", choices=["all", "p1", "p2", "naive", "forward"])
    parser.add_argument("--sizes", default="4096,8192,16384", help="P2 raster sides in pixels")
    parser.add_argument("--naive-sizes", default="4096,8192", help="naive comparison raster sides")
    parser.add_argument("--work", default=None, help="folder for generated rasters (default: a temp folder)")
    parser.add_argument("--model", default="shipped",
                        help="P1 model: shipped (the trained default bundle) or an architecture, e.g. "
                             "deeplab_v3plus:mobilenet_v3_large (random weights)")
    parser.add_argument("--repeat", type=int, default=2, help="P1: raw and predict runs, best kept (default 2)")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--size", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    work = Path(args.work or tempfile.mkdtemp(prefix="segdeep-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    if args.child:
        fn = {"pipeline": lambda: child_pipeline(args.size, work), "naive": lambda: child_naive(args.size, work),
              "make": lambda: {"path": str(make_raster(work / f"r{args.size}.tif", args.size))},
              "forward": lambda: child_forward(work, model_name=args.model),
              "p1": lambda: p1(work, args.model, args.repeat)}[args.child]
        print(json.dumps(fn()))
        return
    if args.what in ("all", "forward"):
        print("forward (512 px tiles, CPU):", json.dumps(spawn("forward", 0, work, ("--model", args.model))), flush=True)
    if args.what in ("all", "p1"):
        r = spawn("p1", 0, work, ("--model", args.model, "--repeat", str(args.repeat)))
        print(f"P1 (4096 x 4096 sample scene, {args.model} model, tile 512, overlap 64, block 2048):", json.dumps(r),
              flush=True)
    if args.what in ("all", "p2"):
        rows = {}
        for s in (int(v) for v in args.sizes.split(",")):
            rows[s] = spawn("pipeline", s, work)
            print(f"P2 segdeep {s} x {s}:", json.dumps(rows[s]), flush=True)
    if args.what in ("all", "naive"):
        for s in (int(v) for v in args.naive_sizes.split(",")):
            print(f"naive {s} x {s}:", json.dumps(spawn("naive", s, work)), flush=True)
            if args.what == "naive":
                print(f"segdeep {s} x {s}:", json.dumps(spawn("pipeline", s, work)), flush=True)


if __name__ == "__main__":
    main()
