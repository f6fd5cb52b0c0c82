"""Memory benchmark (issue 16): peak RSS over time of `predict --crf`, `refine` and
`predict --scheduler local:2` on rasters of 16, 64 and 256 MP.

  python benchmarks/memory.py                              # all modes, 16 / 64 / 256 MP
  python benchmarks/memory.py --sizes 16 --modes crf       # one quick case
  python benchmarks/memory.py --max-seconds 600            # stop each run after 10 min (slope only)

Each case runs the `segdeep` command in a subprocess on a mosaic of the committed sample scene
(benchmarks/scale_out.py's ``scene_mosaic``, flipped and rotated copies, so the shipped model gives
real label maps) and samples the resident memory of the whole process tree (the command and, with
``local:2``, its Dask workers) every half second. Printed per case: wall seconds, the peak, and the
RSS at each tenth of the run, so a rising line shows as rising numbers; then, per mode, the 256 MP
peak over the 16 MP peak (target: within 10 %) and whether the CRF peak is under 3 GB (default block
size). Memory figures hold on a loaded machine; times do not (the load average is printed).
``refine`` refines the labels of the same mosaic's truth (``sample_data/scene_labels.tif`` tiled the
same way) with the default block size.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
from scale_out import mosaic, scene_mosaic  # noqa: E402

SEGDEEP = [sys.executable, "-m", "segdeep.cli"]
MODEL = ROOT / "sample_data" / "models" / "default.safetensors"


def tree_rss_mb(pid: int) -> float:
    """Resident memory (MB) of ``pid`` and all its descendants, from /proc."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
                children.setdefault(ppid, []).append(int(entry))
            except (OSError, IndexError, ValueError):
                continue
    total, todo = 0.0, [pid]
    while todo:
        p = todo.pop()
        todo += children.get(p, [])
        try:
            with open(f"/proc/{p}/status") as f:
                total += next(int(line.split()[1]) for line in f if line.startswith("VmRSS:")) / 1024
        except (OSError, StopIteration):
            continue
    return total


def label_mosaic(path: Path, size: int) -> Path:
    """The truth labels tiled as :func:`scene_mosaic` tiles the image (same flips and rotations)."""
    return mosaic(ROOT / "sample_data" / "scene_labels.tif", path, size)


def run(cmd: list[str], max_seconds: float | None) -> tuple[float, float, list[float], bool]:
    """(wall s, peak MB, RSS samples, finished) of ``cmd`` and its descendants."""
    samples: list[float] = []
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    stop = threading.Event()

    def sample():
        while not stop.is_set():
            samples.append(tree_rss_mb(proc.pid))
            stop.wait(0.5)

    th = threading.Thread(target=sample, daemon=True)
    th.start()
    finished = True
    try:
        proc.wait(timeout=max_seconds)
    except subprocess.TimeoutExpired:
        finished = False
        proc.terminate()
        proc.wait()
    stop.set()
    th.join()
    if finished and proc.returncode:
        raise SystemExit(f"{' '.join(map(str, cmd))} failed: {proc.stderr.read()[-2000:]}")
    return time.perf_counter() - t0, max(samples, default=0.0), samples, finished


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[16, 64, 256], help="raster sizes in megapixels")
    ap.add_argument("--modes", nargs="+", default=["crf", "refine", "local2"], choices=["crf", "refine", "local2"])
    ap.add_argument("--max-seconds", type=float, default=None, help="stop each run after this long")
    ap.add_argument("--keep", default=None, help="folder for the rasters (default: a temporary folder)")
    args = ap.parse_args(argv)
    work = Path(args.keep or tempfile.mkdtemp(prefix="segdeep-mem-"))
    work.mkdir(parents=True, exist_ok=True)
    print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores; RSS of the process tree, MB")
    peaks: dict[tuple[str, int], float] = {}
    try:
        for mp in args.sizes:
            size = int(round(np.sqrt(mp * 1e6)))
            image = work / f"scene_{mp}mp.tif"
            if not image.exists():
                scene_mosaic(image, size)
            for mode in args.modes:
                out = work / f"out_{mode}_{mp}"
                shutil.rmtree(out, ignore_errors=True)
                if mode == "refine":
                    labels = work / f"labels_{mp}mp.tif"
                    if not labels.exists():
                        label_mosaic(labels, size)
                    out.mkdir()
                    cmd = [*SEGDEEP, "refine", str(image), str(labels), "--out", str(out / "refined.tif")]
                else:
                    cmd = [*SEGDEEP, "predict", str(image), "--model", str(MODEL), "--out", str(out)]
                    cmd += ["--crf"] if mode == "crf" else ["--scheduler", "local:2"]
                wall, peak, samples, finished = run(cmd, args.max_seconds)
                peaks[(mode, mp)] = peak
                tenths = [samples[min(len(samples) - 1, len(samples) * k // 10)] for k in range(1, 11)] if samples else []
                print(f"{mode:7s} {mp:4d} MP ({size} px): {wall:7.0f} s{'' if finished else ' (stopped)'}, "
                      f"peak {peak:6.0f} MB; RSS at each tenth: {' '.join(f'{v:.0f}' for v in tenths)}", flush=True)
                shutil.rmtree(out, ignore_errors=True)
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    lo, hi = min(args.sizes), max(args.sizes)
    for mode in args.modes:
        if (mode, lo) in peaks and (mode, hi) in peaks and hi != lo:
            ratio = peaks[(mode, hi)] / peaks[(mode, lo)]
            print(f"{mode}: {hi} MP peak / {lo} MP peak = {ratio:.2f} ({'within' if ratio <= 1.10 else 'NOT within'} 10 %)")
    for (mode, mp), peak in sorted(peaks.items()):
        if mode == "crf":
            print(f"crf {mp} MP peak {peak / 1024:.2f} GB: {'under' if peak < 3072 else 'NOT under'} 3 GB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
