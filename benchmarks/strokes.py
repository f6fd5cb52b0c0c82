"""Learn from a few strokes: mean IoU on the unpainted pixels before and after adapting the
default model to each Dubai tile-6 image from simulated strokes, and the wall time per image.

Protocol (issue #21): strokes from the truth, seeded by the image's index (segdeep.training.
simulate_strokes: per class with >= 2000 px, 3 random walks of <= 150 steps of 2 px turning <= 20
degrees, disk brush 4 px, inside the class mask eroded by 6 px, <= 2 % of the image). Confusion
matrices summed over the 9 images, unpainted pixels only (truth's ignore pixels excluded).

    .venv/bin/python benchmarks/strokes.py [--seconds 20] [--images 9]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _dubai import dubai_pairs, load_pair  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def mean_iou(cm: np.ndarray) -> float:
    inter = np.diag(cm).astype(float)
    union = cm.sum(0) + cm.sum(1) - inter
    present = union > 0
    return float((inter[present] / union[present]).mean())


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=str(REPO / "sample_data" / "models" / "default.safetensors"))
    parser.add_argument("--seconds", type=float, default=20.0, help="training wall time per image")
    parser.add_argument("--images", type=int, default=9)
    parser.add_argument("--lr", type=float, default=1e-3)
    args = parser.parse_args(argv)
    pairs = dubai_pairs(6)[: args.images]
    if not pairs:
        print("strokes: skipped: no Dubai data (../shared/data/dubai)")
        return 0
    import torch
    from segdeep.models import load_bundle
    from segdeep.predict import predict_array
    from segdeep.runtime import drain
    from segdeep.training import iter_learn_strokes, simulate_strokes, stroke_config

    torch.set_num_threads(2)
    model, card = load_bundle(args.model)
    k = len(card.classes)
    before = np.zeros((k, k), np.int64)
    after = np.zeros((k, k), np.int64)
    print(f"model {args.model} ({card.architecture}); {args.seconds:g} s of training per image; "
          f"torch threads {torch.get_num_threads()}")
    for index, (image_path, mask_path) in enumerate(pairs):
        rgb, truth = load_pair(image_path, mask_path)
        image = np.moveaxis(rgb, -1, 0)
        strokes = simulate_strokes(truth, seed=index)
        judged = (truth != 255) & (strokes == 255)
        pred0 = predict_array(model, card, image)
        t0 = time.perf_counter()
        config = stroke_config(args.seconds, height=truth.shape[0], width=truth.shape[1], lr=args.lr, seed=index)
        result = drain(iter_learn_strokes(image, strokes, init=args.model, config=config))
        t_train = time.perf_counter() - t0
        pred1 = predict_array(result.model, result.card, image)
        wall = time.perf_counter() - t0
        cm0 = np.bincount(truth[judged] * k + pred0[judged], minlength=k * k).reshape(k, k)
        cm1 = np.bincount(truth[judged] * k + pred1[judged], minlength=k * k).reshape(k, k)
        before += cm0
        after += cm1
        print(f"{image_path.name}: {truth.shape[1]} x {truth.shape[0]} px, painted "
              f"{100 * (strokes != 255).mean():.2f} %, mIoU {mean_iou(cm0):.3f} -> {mean_iou(cm1):.3f}, "
              f"train {t_train:.1f} s + predict {wall - t_train:.1f} s = {wall:.1f} s")
    print(f"mean IoU on unpainted pixels over {len(pairs)} images: before {mean_iou(before):.3f}, "
          f"after {mean_iou(after):.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
