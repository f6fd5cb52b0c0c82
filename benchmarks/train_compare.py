"""Compare architectures for the default model under the same CPU time budget, and print the table.

Each candidate is trained from scratch by ``scripts/train_default.py`` (Dubai tiles 1-5 + generated
scenes, validation on tile 6) with the same budget; its report (whole-tile-6 mean IoU and per-class
IoU, sample-scene mean IoU, CPU MP/s at inference, parameters, training time) is printed as a
Markdown table.

    .venv/bin/python benchmarks/train_compare.py --minutes 10 --folder /tmp/cmp            # run + table
    .venv/bin/python benchmarks/train_compare.py --folder /tmp/cmp --table-only            # table only
    .venv/bin/python benchmarks/train_compare.py --folder /tmp/cmp --speed                 # MP/s, one run

``--parallel`` trains all candidates at once (same machine load for every one; one thread each).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CANDIDATES = {
    "unet8": ("unet", {"base_channels": 8}),
    "unet16": ("unet", {"base_channels": 16}),
    "dlv3p_mnv3": ("deeplab_v3plus", {"backbone": "mobilenet_v3_large", "decoder_channels": 64}),
    "pspnet_r18": ("pspnet", {"backbone": "resnet18", "head_channels": 128}),
}
CLASSES = ("building", "land", "road", "vegetation", "water", "unlabeled")


def table(folder: Path, names) -> str:
    head = ("| model | parameters | train min | steps x batch | val mIoU (tile 6) | "
            + " | ".join(CLASSES) + " | sample scene mIoU | CPU MP/s (2 threads) | load avg |")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for name in names:
        path = folder / f"{name}.json"
        if not path.exists():
            lines.append(f"| {name} | (no report) |")
            continue
        r = json.loads(path.read_text())
        ious = " | ".join(f"{r['val_class_iou'].get(c) or 0:.2f}" for c in CLASSES)
        scene = f"{r['sample_scene_mean_iou']:.3f}" if r.get("sample_scene_mean_iou") is not None else "-"
        lines.append(f"| {name}: {r['arch']} {r['kwargs']} | {r['parameters'] / 1e6:.2f} M | {r['train_minutes']} | "
                     f"{r.get('steps', '?')} x {r.get('batch_size', '?')} | {r['val_mean_iou']:.3f} | {ious} | {scene} | {r['cpu_mps_2threads']} | "
                     f"{r['load_average']:.1f} |")
    return "\n".join(lines)


def speed(folder: Path, names, threads: int = 2, tile: int = 512, rounds: int = 3) -> None:
    """Forward-pass MP/s of every trained candidate, measured interleaved in one run (fair ratios)."""
    import time

    import torch
    from segdeep.models.bundle import load_bundle

    torch.set_num_threads(threads)
    models = {n: load_bundle(folder / f"{n}.safetensors")[0] for n in names if (folder / f"{n}.safetensors").exists()}
    x = torch.randn(1, 3, tile, tile)
    best = dict.fromkeys(models, float("inf"))
    with torch.inference_mode():
        for m in models.values():
            m(x)
        for _ in range(rounds):
            for n, m in models.items():
                t = time.perf_counter()
                m(x)
                best[n] = min(best[n], time.perf_counter() - t)
    import os

    print(f"forward pass, {tile} x {tile} px tile, {threads} threads, best of {rounds}; "
          f"load average {os.getloadavg()[0]:.1f}")
    for n, t in best.items():
        print(f"  {n}: {tile * tile / 1e6 / t:.2f} MP/s")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--folder", default="/tmp/segdeep_train_compare")
    p.add_argument("--minutes", type=float, default=10.0)
    p.add_argument("--only", nargs="+", default=list(CANDIDATES), choices=list(CANDIDATES))
    p.add_argument("--parallel", action="store_true")
    p.add_argument("--table-only", action="store_true")
    p.add_argument("--speed", action="store_true", help="only measure inference MP/s of the trained candidates")
    args = p.parse_args()
    folder = Path(args.folder)
    folder.mkdir(parents=True, exist_ok=True)
    if args.speed:
        speed(folder, args.only)
        return 0
    if not args.table_only:
        procs = []
        for name in args.only:
            arch, kwargs = CANDIDATES[name]
            cmd = [sys.executable, str(ROOT / "scripts" / "train_default.py"), "--arch", arch, "--model-kwargs",
                   json.dumps(kwargs), "--minutes", str(args.minutes), "--threads", "1", "--batch-size", "8",
                   "--steps-per-epoch", "60", "--val-pixels", "3000000",
                   "--out", str(folder / f"{name}.safetensors"), "--report", str(folder / f"{name}.json")]
            log = open(folder / f"{name}.log", "w")  # noqa: SIM115 - closed when the process ends
            proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
            procs.append((proc, log))
            if not args.parallel:
                proc.wait()
                log.close()
        for proc, log in procs:
            proc.wait()
            log.close()
    print(table(folder, args.only))
    return 0


if __name__ == "__main__":
    sys.exit(main())
