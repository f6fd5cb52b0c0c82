"""Vectorize speed and memory: streaming (segdeep) vs polygonizing the whole array at once.

For generated label rasters of 16 and 256 megapixels (smooth regions of 6 classes, like a CNN's
output, plus 0.05 % single-pixel specks), each measurement runs in its own subprocess so its peak
RSS is its own: megapixels of label raster per second and peak resident memory, for
``vectorize_raster`` (block by block, border merging, GeoPackage) with each ``--workers`` setting
(threads; ``auto`` = one per usable core, the default), and for the common approach of
``rasterio.features.shapes`` over the whole array + ``shapely.geometry.shape`` per polygon + one
pyogrio write (what Raster Vision and Deepness do). CPU seconds include all threads (and worker
processes, for a baseline version that used them).

    .venv/bin/python benchmarks/vectorize.py [--sizes 16 256] [--whole 16 256] [--workers 1 auto]
        [--baseline DIR]

``--baseline DIR`` (a checkout of another segdeep version, e.g. ``git worktree add /tmp/old COMMIT``)
runs that version's ``vectorize_raster`` too, right before each current run with the same settings,
so both are measured in one run under the same machine load ("auto" becomes the number of usable
cores for it).

Rasters are generated block by block into a temporary folder (kept between runs with --keep).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

CELL = 48  # pixels per cell of the smooth random field: regions are a few cells wide
K = 6


def _field(side: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.random((K, side // CELL + 2, side // CELL + 2)).astype(np.float32)


def _labels_block(field: np.ndarray, r0: int, c0: int, h: int, w: int, seed: int) -> np.ndarray:
    y, x = (np.arange(r0, r0 + h) / CELL), (np.arange(c0, c0 + w) / CELL)
    y0, x0 = y.astype(int), x.astype(int)
    fy, fx = (y - y0)[:, None].astype(np.float32), (x - x0)[None, :].astype(np.float32)
    best = np.full((h, w), -1.0, np.float32)
    labels = np.zeros((h, w), np.uint8)
    for k in range(K):
        f = field[k]
        v = (f[y0][:, x0] * (1 - fy) * (1 - fx) + f[y0 + 1][:, x0] * fy * (1 - fx)
             + f[y0][:, x0 + 1] * (1 - fy) * fx + f[y0 + 1][:, x0 + 1] * fy * fx)
        better = v > best
        labels[better], best = k, np.maximum(best, v)
    rng = np.random.default_rng(seed)
    specks = rng.random((h, w)) < 0.0005
    labels[specks] = rng.integers(0, K, int(specks.sum()))
    return labels


def generate(path: Path, side: int) -> None:
    from affine import Affine
    from rasterio.crs import CRS
    from rasterio.windows import Window
    from segdeep.classes import DUBAI_CLASSES
    from segdeep.io.raster import LabelWriter

    field = _field(side)
    transform = Affine(0.5, 0, 500_000.0, 0, -0.5, 4_000_000.0)
    with LabelWriter(path, side, side, crs=CRS.from_epsg(32640), transform=transform, classes=DUBAI_CLASSES,
                     cog=False) as writer:
        for i, r in enumerate(range(0, side, 2048)):
            for j, c in enumerate(range(0, side, 2048)):
                h, w = min(2048, side - r), min(2048, side - c)
                writer.write(Window(c, r, w, h), _labels_block(field, r, c, h, w, seed=i * 1000 + j))


def _usable_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def stream(path: Path, out: Path, block_size: int, workers: int | str = 1) -> dict:
    import pyogrio.raw  # noqa: F401 - imports are not timed
    import scipy.sparse.csgraph  # noqa: F401
    from segdeep.export.vectorize import vectorize_raster

    t0, c0 = time.perf_counter(), time.process_time()  # process time: all threads
    summary = vectorize_raster(path, out, block_size=block_size, workers=workers)
    seconds = time.perf_counter() - t0
    children = resource.getrusage(resource.RUSAGE_CHILDREN)  # worker processes (older versions)
    return {"seconds": seconds, "cpu_seconds": time.process_time() - c0 + children.ru_utime + children.ru_stime,
            "worker_peak_rss_mb": children.ru_maxrss / 1024,
            "polygons": summary["polygons"],
            "max_open_pieces": summary["max_open_pieces"]}


def whole(path: Path, out: Path) -> dict:
    import pyogrio.raw
    import rasterio
    import shapely
    from rasterio.features import shapes
    from shapely.geometry import shape

    t0, c0 = time.perf_counter(), time.process_time()
    with rasterio.open(path) as ds:
        labels, crs, transform = ds.read(1), ds.crs, ds.transform
    items = list(shapes(labels, mask=labels != 255, transform=transform))
    geoms = np.array([shape(g) for g, _ in items], dtype=object)
    values = np.array([v for _, v in items], dtype=np.int32)
    pyogrio.raw.write(out, shapely.to_wkb(geoms), [values, shapely.area(geoms)], ["class_index", "area"],
                      driver="GPKG", geometry_type="Polygon", crs=crs.to_wkt())
    return {"seconds": time.perf_counter() - t0, "cpu_seconds": time.process_time() - c0, "polygons": len(geoms)}


def _child(argv: list[str]) -> None:
    mode, path, out = argv[0], Path(argv[1]), Path(argv[2])
    if mode == "generate":
        generate(path, int(argv[3]))
        result = {}
    elif mode == "stream":
        result = stream(path, out, int(argv[3]), argv[4] if argv[4] == "auto" else int(argv[4]))
    else:
        result = whole(path, out)
    result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps(result))


def _run(*args, baseline: Path | None = None) -> dict:
    env = None
    if baseline is not None:  # import segdeep from the baseline checkout
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(baseline), os.environ.get("PYTHONPATH")]))}
    proc = subprocess.run([sys.executable, __file__, "--child", *map(str, args)], capture_output=True, text=True,
                          check=False, env=env)
    if proc.returncode:
        raise SystemExit(proc.stderr)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[16, 256], help="megapixels (square rasters)")
    parser.add_argument("--whole", type=int, nargs="*", default=[16, 256], help="sizes also run whole-array")
    parser.add_argument("--block-size", type=int, default=2048)
    parser.add_argument("--workers", nargs="+", default=["1", "auto"],
                        help="vectorize_raster workers settings to run (numbers of processes or auto)")
    parser.add_argument("--baseline", type=Path, default=None, metavar="DIR",
                        help="a checkout of another segdeep version to run as well, interleaved")
    parser.add_argument("--folder", default=None, help="where rasters go (default: a temporary folder)")
    parser.add_argument("--keep", action="store_true", help="keep the generated rasters")
    args = parser.parse_args()
    folder = Path(args.folder or tempfile.mkdtemp(prefix="segdeep_bench_vec_"))
    folder.mkdir(parents=True, exist_ok=True)
    baseline_path = None
    if args.baseline is not None:
        if not (args.baseline / "core" / "vectorize.py").is_file():
            raise SystemExit(f"--baseline {args.baseline}: no core/vectorize.py there (a segdeep checkout?)")
        baseline_path = folder / "baseline_path"
        baseline_path.mkdir(exist_ok=True)
        link = baseline_path / "segdeep"
        if link.is_symlink() or link.exists():
            link.unlink()
        link.symlink_to(args.baseline.resolve() / "core")
    print(f"load average {Path('/proc/loadavg').read_text().split()[0] if Path('/proc/loadavg').exists() else '?'}, "
          f"{_usable_cpus()} usable cores (MP/cpu-s is less sensitive to other jobs than wall-clock MP/s)")
    print(f"{'raster':>10} {'method':>26} {'seconds':>8} {'MP/s':>7} {'MP/cpu-s':>9} {'peak RSS MB':>12} "
          f"{'worker RSS':>10} {'polygons':>9}")
    try:
        for mp in args.sizes:
            side = int(round((mp * 1e6) ** 0.5))
            path = folder / f"labels_{mp}mp.tif"
            if not path.exists():
                _run("generate", path, "-", side)
            runs = []
            for w in args.workers:
                if baseline_path is not None:
                    old_w = str(_usable_cpus()) if w == "auto" else w
                    runs.append(("stream", f"baseline workers={old_w}", (args.block_size, old_w), baseline_path))
                runs.append(("stream", f"segdeep workers={w}", (args.block_size, w), None))
            if mp in args.whole:
                runs.append(("whole", "whole array at once", (), None))
            for mode, name, extra, base in runs:
                out = folder / f"out_{mode}_{mp}.gpkg"
                r = _run(mode, path, out, *extra, baseline=base)
                out.unlink(missing_ok=True)
                mps, cpu_mps = side * side / 1e6 / r["seconds"], side * side / 1e6 / r["cpu_seconds"]
                worker = f"{r['worker_peak_rss_mb']:.0f}" if r.get("worker_peak_rss_mb") else "-"
                print(f"{mp:>7} MP {name:>26} {r['seconds']:>8.2f} {mps:>7.1f} {cpu_mps:>9.1f} "
                      f"{r['peak_rss_mb']:>12.0f} {worker:>10} {r['polygons']:>9}", flush=True)
    finally:
        if not args.keep and not args.folder:
            shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        _child(sys.argv[2:])
    else:
        main()
