"""Test-time fusion (``--scales``, ``--flip``) on real data: mean IoU and time on Dubai tile 6.

    .venv/bin/python benchmarks/multiscale.py                       # the shipped model, 3 settings
    .venv/bin/python benchmarks/multiscale.py --scales 0.5,1,1.5 --threads 2

Each image of the tile (9 images, 6.5 MP) goes through :func:`segdeep.predict.predict_array` with the
shipped model's tile size and overlap defaults, once per setting: 1 scale; 3 scales; 3 scales + flip.
Prints per setting the four scores' mean IoU and pixel accuracy over the whole tile, per-class IoU,
and wall-clock and CPU seconds (the CPU figure is less disturbed by other jobs on a shared machine).
The data stays in ``../shared/data`` (or ``SEGDEEP_SHARED_DATA``); nothing is copied.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch
from _dubai import dubai_pairs, load_pair
from segdeep.evaluate.metrics import ConfusionMatrix, scores
from segdeep.models.bundle import load_bundle
from segdeep.predict import parse_scales, predict_array

BUNDLE = Path(__file__).resolve().parents[1] / "sample_data" / "models" / "default.safetensors"


def run(model, card, pairs, scales: tuple[float, ...], flip: bool, workers: int) -> tuple[dict, float, float]:
    """(scores, wall seconds, CPU seconds) of the model over ``pairs`` with these test-time settings."""
    matrix = ConfusionMatrix(len(card.classes))
    wall = cpu = 0.0
    for image, mask in pairs:
        rgb, truth = load_pair(image, mask)
        start, start_cpu = time.perf_counter(), time.process_time()
        labels = predict_array(model, card, rgb.transpose(2, 0, 1), scales=scales, flip=flip, workers=workers)
        wall += time.perf_counter() - start
        cpu += time.process_time() - start_cpu
        matrix.update(truth, labels)
    return scores(matrix, card.classes), wall, cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bundle", default=str(BUNDLE), help="model bundle (default: the shipped model)")
    parser.add_argument("--tile", type=int, default=6, help="Dubai tile folder (default 6, the validation tile)")
    parser.add_argument("--scales", default="0.75,1,1.25", help="the 3-scale setting (default 0.75,1,1.25)")
    parser.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    parser.add_argument("--workers", default="auto", help="predict's workers (default auto)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    pairs = dubai_pairs(args.tile)
    if not pairs:
        raise SystemExit("Dubai data not found: set SEGDEEP_SHARED_DATA to the folder holding dubai/")
    model, card = load_bundle(args.bundle)
    scales = parse_scales(args.scales)
    settings = [("1 scale", (1.0,), False), (f"{len(scales)} scales", scales, False),
                (f"{len(scales)} scales + flip", scales, True)]
    pixels = sum(np.prod(load_pair(*p)[1].shape) for p in pairs) / 1e6
    print(f"{args.bundle}: tile {args.tile}, {len(pairs)} images, {pixels:.1f} MP; torch {torch.__version__}, "
          f"{args.threads} threads, workers {args.workers}")
    names = [c.name for c in card.classes]
    print(f"{'setting':<22} {'scales':<16} {'mIoU':>6} {'acc':>6} {'wall s':>7} {'cpu s':>7}  "
          + " ".join(f"{n[:8]:>8}" for n in names))
    for name, s, flip in settings:
        result, wall, cpu = run(model, card, pairs, s, flip, args.workers)
        per_class = " ".join(f"{(c['iou'] if c['iou'] is not None else float('nan')):>8.3f}"
                             for c in result["classes"])
        print(f"{name:<22} {','.join(f'{v:g}' for v in s):<16} {result['mean_iou']:>6.3f} "
              f"{result['pixel_accuracy']:>6.3f} {wall:>7.1f} {cpu:>7.1f}  {per_class}", flush=True)


if __name__ == "__main__":
    main()
