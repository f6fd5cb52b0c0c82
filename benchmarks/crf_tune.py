"""Choose segdeep's dense-CRF defaults on validation imagery (Dubai tile 6, 9 images).

The unary comes from corrupted ground truth (``_dubai.corrupted_probs``: blurred one-hot masks plus
smooth logit noise), not from a trained model: it stands in for a network's soft, blobby output.
Prints mIoU / pixel accuracy (confusion matrix accumulated over all images) for the unary alone,
DeepLab's published CRF weights, and a grid of settings, best first.

    .venv/bin/python benchmarks/crf_tune.py [--grid defaults|small|near|full] [--tile N]
"""

from __future__ import annotations

import argparse
import itertools
import sys
import time

import numpy as np
import torch
from _dubai import corrupted_probs, dubai_pairs, load_pair
from segdeep.crf.dense import CRFParams, dense_crf_params

NUM_CLASSES = 6


def scores(cm: np.ndarray) -> tuple[float, float]:
    inter = np.diag(cm)
    union = cm.sum(0) + cm.sum(1) - inter
    present = union > 0
    return float((inter[present] / union[present]).mean()), float(inter.sum() / max(cm.sum(), 1))


def confusion(truth: np.ndarray, pred: np.ndarray) -> np.ndarray:
    keep = truth < NUM_CLASSES
    idx = truth[keep].astype(np.int64) * NUM_CLASSES + pred[keep]
    return np.bincount(idx, minlength=NUM_CLASSES ** 2).reshape(NUM_CLASSES, NUM_CLASSES)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tile", type=int, default=6)
    ap.add_argument("--grid", choices=["defaults", "small", "near", "full"], default="small", help="settings to try (default small)")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    pairs = dubai_pairs(args.tile)
    if not pairs:
        print("Dubai data not found (../shared/data/dubai or SEGDEEP_SHARED_DATA); nothing to do")
        return 1
    data = []
    for i, (image, mask) in enumerate(pairs):
        rgb, labels = load_pair(image, mask)
        probs = corrupted_probs(labels, NUM_CLASSES, seed=i, noise=1.2)
        data.append((torch.from_numpy(rgb.transpose(2, 0, 1).copy()), torch.from_numpy(probs), labels))

    def evaluate(params: CRFParams | None) -> tuple[float, float]:
        cm = np.zeros((NUM_CLASSES, NUM_CLASSES), np.int64)
        for image, probs, labels in data:
            out = probs if params is None else dense_crf_params(probs, image, params)
            cm += confusion(labels, out.argmax(0).numpy())
        return scores(cm)

    rows = [("unary only (no CRF)", *evaluate(None)), ("DeepLab " + str(CRFParams.deeplab().to_dict()),
                                                         *evaluate(CRFParams.deeplab()))]
    print(f"{rows[0][0]}: mIoU {rows[0][1]:.4f} acc {rows[0][2]:.4f}", flush=True)
    print(f"{rows[1][0]}: mIoU {rows[1][1]:.4f} acc {rows[1][2]:.4f}", flush=True)
    if args.grid == "defaults":  # just segdeep's defaults (e.g. on another tile, as a held-out check)
        d = CRFParams()
        grid = [(d.bilateral_sxy, d.bilateral_srgb, d.bilateral_compat)]
    elif args.grid == "small":
        grid = [(10, 5, 6), (10, 13, 6), (10, 13, 10), (20, 13, 6), (20, 13, 10), (40, 13, 6), (40, 13, 10)]
    elif args.grid == "near":  # around the best of "small"
        grid = [(20, 13, 4), (20, 20, 6), (15, 13, 6), (20, 13, 6, 10)]
    else:
        grid = itertools.product([10, 20, 40, 80], [5, 13, 30], [4, 6, 10])
    grid = [(g[0], g[1], g[2], 3.0, 3.0, g[3] if len(g) > 3 else 5) for g in grid]
    for bsxy, bsrgb, bcompat, gsxy, gcompat, iterations in grid:
        p = CRFParams(iterations=iterations, gaussian_sxy=gsxy, gaussian_compat=gcompat, bilateral_sxy=bsxy,
                      bilateral_srgb=bsrgb, bilateral_compat=bcompat)
        t = time.perf_counter()
        m, a = evaluate(p)
        rows.append((str(p.to_dict()), m, a))
        print(f"{p.to_dict()}: mIoU {m:.4f} acc {a:.4f} ({time.perf_counter() - t:.1f} s)", flush=True)
    print("\nbest first:")
    for name, m, a in sorted(rows, key=lambda r: -r[1])[:10]:
        print(f"  mIoU {m:.4f} acc {a:.4f}  {name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
