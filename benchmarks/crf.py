"""Dense-CRF speed and agreement: segdeep (torch, CPU) against pydensecrf (the C++ reference).

For real Dubai images cropped to 512^2 and 1024^2, 6 classes, 5 and 10 mean-field iterations,
DeepLab's weights (the reference's usual settings): seconds and megapixels per second of each,
segdeep's speed-up, and the argmax agreement. segdeep "cold" builds both lattices; "warm" reuses
the position-only lattice cached for blocks of the same size (the block pipeline's case). Each
figure is the best of --repeats runs, the two implementations interleaved so that load from other
processes hits both alike; "x" is pydensecrf's time over segdeep's (wall clock), "x CPU s" the same
ratio in CPU seconds of the process (the fair figure with 1 thread on a loaded machine).

    .venv/bin/python benchmarks/crf.py [--threads 2] [--repeats 3]
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np
import torch
from _dubai import corrupted_probs, dubai_pairs, load_pair, tiled
from segdeep.crf import dense as segcrf


def reference(probs: np.ndarray, rgb: np.ndarray, iterations: int, p: segcrf.CRFParams) -> np.ndarray:
    import pydensecrf.densecrf as dcrf
    from pydensecrf.utils import unary_from_softmax

    c, h, w = probs.shape
    d = dcrf.DenseCRF2D(w, h, c)
    d.setUnaryEnergy(np.ascontiguousarray(unary_from_softmax(probs)))
    d.addPairwiseGaussian(sxy=p.gaussian_sxy, compat=p.gaussian_compat)
    d.addPairwiseBilateral(sxy=p.bilateral_sxy, srgb=p.bilateral_srgb, rgbim=rgb, compat=p.bilateral_compat)
    return np.array(d.inference(iterations)).reshape(c, h, w)


def timed(fn, *args, **kwargs) -> tuple[tuple[float, float], object]:
    """((wall seconds, CPU seconds of this process), result)."""
    t, c = time.perf_counter(), time.process_time()
    out = fn(*args, **kwargs)
    return (time.perf_counter() - t, time.process_time() - c), out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--sizes", type=int, nargs="+", default=[512, 1024])
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    try:
        import pydensecrf.densecrf  # noqa: F401
    except ImportError:
        print("pydensecrf (pip install pydensecrf2) is needed for the comparison")
        return 1
    pairs = dubai_pairs(5)
    if not pairs:
        print("Dubai data not found (../shared/data/dubai or SEGDEEP_SHARED_DATA)")
        return 1
    rgb_full, labels_full = load_pair(*pairs[2])  # tile 5 image 3: 1126 x 1058 px
    p = segcrf.CRFParams.deeplab()
    kw = {k: v for k, v in p.to_dict().items() if k != "iterations"}
    print(f"torch {torch.__version__}, {args.threads} thread(s); image {pairs[2][0].name}; CRF {kw}")
    header = ("size", "iters", "pydensecrf s", "MP/s", "segdeep cold s", "MP/s", "x", "segdeep warm s", "MP/s", "x",
              "x CPU s cold / warm", "agreement")
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for size in args.sizes:
        rgb, labels = tiled(rgb_full, size), tiled(labels_full, size)
        probs = corrupted_probs(labels, 6, seed=size, noise=1.2)
        image = torch.from_numpy(rgb.transpose(2, 0, 1).copy())
        pt = torch.from_numpy(probs)
        mp = size * size / 1e6
        for iterations in (5, 10):
            ref_t, cold_t, warm_t = [], [], []
            ref = ours = None
            for _ in range(args.repeats):  # interleaved
                t, ref = timed(reference, probs, rgb, iterations, p)
                ref_t.append(t)
                segcrf.clear_lattice_cache()
                t, ours = timed(segcrf.dense_crf, pt, image, iterations, **kw)
                cold_t.append(t)
                t, _ = timed(segcrf.dense_crf, pt, image, iterations, **kw)
                warm_t.append(t)
            r, c, w = (min(x[0] for x in ts) for ts in (ref_t, cold_t, warm_t))
            rc, cc, wc = (min(x[1] for x in ts) for ts in (ref_t, cold_t, warm_t))
            agree = float((ours.argmax(0).numpy() == ref.argmax(0)).mean())
            print(f"| {size}^2 | {iterations} | {r:.3f} | {mp / r:.2f} | {c:.3f} | {mp / c:.2f} | {r / c:.2f} | "
                  f"{w:.3f} | {mp / w:.2f} | {r / w:.2f} | {rc / cc:.2f} / {rc / wc:.2f} | {agree:.5f} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
