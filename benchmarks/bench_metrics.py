"""Speed and memory of the streaming confusion matrix and of writing a report; prints its figures.

Compares ConfusionMatrix.update (joint byte histogram, bincount in 2 Mpx chunks) with the textbook
masked ``bincount(truth[keep] * K + pred[keep])`` in the same run, on a 2048 x 2048 block (the
default block size) with 5 % ignore-index pixels and a validity mask. Usage:

    .venv/bin/python benchmarks/bench_metrics.py
"""

from __future__ import annotations

import tempfile
import time
import tracemalloc

import numpy as np
from segdeep.classes import DUBAI_CLASSES
from segdeep.evaluate.metrics import ConfusionMatrix, scores
from segdeep.evaluate.report import write_report


def masked_bincount(truth, pred, valid, k):
    keep = valid & (truth != 255) & (pred != 255)
    return np.bincount(truth[keep].astype(np.intp) * k + pred[keep], minlength=k * k)


def best_of(fn, repeats: int = 5) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def main() -> None:
    rng = np.random.default_rng(0)
    n, k = 2048, 6
    truth = rng.integers(0, k, (n, n), dtype=np.uint8)
    pred = rng.integers(0, k, (n, n), dtype=np.uint8)
    truth[rng.random((n, n)) < 0.05] = 255
    valid = rng.random((n, n)) > 0.05
    mpx = n * n / 1e6
    cm = ConfusionMatrix(k)
    masked = best_of(lambda: cm.update(truth, pred, valid))
    plain = best_of(lambda: cm.update(truth, pred))
    ref = best_of(lambda: masked_bincount(truth, pred, valid, k))
    print(f"update, {n}x{n} uint8, valid mask: {masked * 1e3:.1f} ms ({mpx / masked:.0f} Mpx/s)")
    print(f"update, {n}x{n} uint8, no mask:    {plain * 1e3:.1f} ms ({mpx / plain:.0f} Mpx/s)")
    print(f"masked bincount reference:        {ref * 1e3:.1f} ms ({mpx / ref:.0f} Mpx/s); "
          f"update is {ref / masked:.2f}x faster")
    big = np.zeros((8192, 8192), np.uint8)
    tracemalloc.start()
    ConfusionMatrix(k).update(big, big)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    print(f"peak temporary memory, one 8192x8192 update: {peak / 1e6:.1f} MB "
          f"(inputs {big.nbytes / 1e6:.0f} MB each)")
    result = scores(cm, DUBAI_CLASSES)
    with tempfile.TemporaryDirectory() as out:
        t = best_of(lambda: write_report(result, out, classes=DUBAI_CLASSES), repeats=3)
    print(f"write_report, 6 classes (6 files incl. 2 PNGs): {t:.2f} s")


if __name__ == "__main__":
    main()
