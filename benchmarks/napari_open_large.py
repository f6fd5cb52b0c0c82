"""Opening a large GeoTIFF in napari with the segdeep reader: time and memory, lazy vs whole.

Writes a --size x --size RGB GeoTIFF (uint8, tiled, JPEG, with overviews; a 512-px tile of the
sample scene repeated), then, each in its own subprocess (so peak RSS is its own):

- ``lazy``: ``viewer.open(path, plugin="napari-segdeep")`` (multiscale levels read window by window),
  draw, pan to the middle at full resolution and draw again;
- ``whole``: the same raster read into memory with rasterio and added as one image (what a reader
  without multiscale does).

Run under Xvfb:  xvfb-run -a -s "-screen 0 1280x1024x24" .venv/bin/python benchmarks/napari_open_large.py
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CHILD = r"""
import json, sys, time

def hwm():  # peak RSS of this process (MB); ru_maxrss would include the parent's (kept across exec)
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024

t0 = time.perf_counter()
import napari, numpy as np
from qtpy.QtWidgets import QApplication
t_import = time.perf_counter() - t0
path, mode = sys.argv[1], sys.argv[2]
viewer = napari.Viewer(show=True)
app = QApplication.instance()
base = hwm()
t0 = time.perf_counter()
if mode == "lazy":
    layer = viewer.open(path, plugin="napari-segdeep")[0]
else:
    import rasterio
    with rasterio.open(path) as ds:
        layer = viewer.add_image(np.moveaxis(ds.read(), 0, -1), rgb=True)
for _ in range(20):
    app.processEvents()
t_open = time.perf_counter() - t0
t0 = time.perf_counter()
h, w = layer.data[0].shape[:2] if layer.multiscale else layer.data.shape[:2]
cam = viewer.scene.camera if hasattr(viewer, "scene") else viewer.camera
cam.center = (h / 2, w / 2)
cam.zoom = 1.0
for _ in range(20):
    app.processEvents()
t_pan = time.perf_counter() - t0
peak = hwm()
print(json.dumps({"open_s": t_open, "pan_full_res_s": t_pan, "rss_before_mb": base, "peak_rss_mb": peak,
                  "multiscale": bool(layer.multiscale)}))
viewer.close()
"""


def make_raster(path: Path, size: int) -> float:
    import numpy as np
    import rasterio
    from rasterio.enums import ColorInterp, Resampling
    from rasterio.transform import from_origin
    from rasterio.windows import Window
    from segdeep.sample.scene import sample_scene_window

    t0 = time.perf_counter()
    tile, _ = sample_scene_window(Window(0, 0, 512, 512), size=512)
    profile = dict(driver="GTiff", width=size, height=size, count=3, dtype="uint8", crs="EPSG:32640",
                   transform=from_origin(300000, 2800000, 0.5, 0.5), tiled=True, blockxsize=512, blockysize=512,
                   compress="JPEG", photometric="YCBCR", BIGTIFF="YES")
    with rasterio.open(path, "w", **profile) as ds:
        ds.colorinterp = [ColorInterp.red, ColorInterp.green, ColorInterp.blue]
        for r in range(0, size, 512):
            for c in range(0, size, 512):
                ds.write(np.ascontiguousarray(tile[:, : min(512, size - r), : min(512, size - c)]),
                         window=Window(c, r, min(512, size - c), min(512, size - r)))
    with rasterio.open(path, "r+") as ds:
        ds.build_overviews([2**i for i in range(1, 12) if size >> i >= 256], Resampling.average)
    return time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=12288, help="raster width = height in pixels")
    args = parser.parse_args()
    import os

    if not os.environ.get("DISPLAY"):
        print("napari_open_large: skipped (no display); run it under xvfb-run, see the docstring")
        return
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "large.tif"
        seconds = make_raster(path, args.size)
        print(f"raster {args.size} x {args.size} x 3 uint8 ({args.size**2 * 3 / 1e6:.0f} MB in memory), "
              f"{path.stat().st_size / 1e6:.0f} MB on disk, written in {seconds:.1f} s")
        print("| mode | open + first draw s | pan to full resolution s | peak RSS MB (empty viewer) |")
        print("|---|---|---|---|")
        for mode in ("lazy", "whole"):
            out = subprocess.run([sys.executable, "-c", CHILD, str(path), mode], capture_output=True, text=True)
            if out.returncode != 0:
                print(f"| {mode} | failed: {out.stderr.strip().splitlines()[-1] if out.stderr else out.returncode} |")
                continue
            r = json.loads(out.stdout.strip().splitlines()[-1])
            print(f"| {mode}{' (multiscale)' if r['multiscale'] else ''} | {r['open_s']:.2f} | "
                  f"{r['pan_full_res_s']:.2f} | {r['peak_rss_mb']:.0f} ({r['rss_before_mb']:.0f}) |")
    print(f"benchmark process peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")


if __name__ == "__main__":
    main()
