"""The dense CRF while other programs keep the CPU busy: torch's default OpenMP wait policy against
``OMP_WAIT_POLICY=PASSIVE`` (what segdeep's entry points set; see segdeep.runtime.passive_wait_policy).

Each variant runs in a fresh Python process (the policy is read when torch loads its OpenMP
runtime), interleaved with the others so that the load from other processes hits all alike; while
it runs, ``--busy`` extra processes spin on the CPU. Printed: wall seconds of a 1024^2, 6-class,
5-iteration ``dense_crf`` (a smooth random scene with noisy probabilities), best of ``--repeats``,
and the ratio to the passive policy.

    .venv/bin/python benchmarks/busy_cpu.py [--busy 1] [--repeats 3] [--size 1024]
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import subprocess
import sys
import time

CHILD = r"""
import sys, time
import numpy as np
import torch
from scipy import ndimage
from segdeep.crf import dense_crf
size = int(sys.argv[1])
rng = np.random.default_rng(0)
field = ndimage.gaussian_filter(rng.normal(size=(6, size, size)), 12)
probs = torch.softmax(torch.from_numpy(field * 40 + rng.normal(size=field.shape) * 2).float(), 0)
rgb = (ndimage.gaussian_filter(rng.random((3, size, size)), 4) * 255).astype(np.uint8)
dense_crf(probs[:, :64, :64], torch.from_numpy(rgb[:, :64, :64]), iterations=1)  # warm-up
t = time.perf_counter()
dense_crf(probs, torch.from_numpy(rgb), iterations=5)
print(time.perf_counter() - t)
"""

VARIANTS = {
    "torch default (active wait)": {},
    "OMP_WAIT_POLICY=PASSIVE": {"OMP_WAIT_POLICY": "PASSIVE"},
}


def spin() -> None:
    while True:
        pass


def run(env_extra: dict, size: int) -> float:
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    env.update(env_extra)
    out = subprocess.run([sys.executable, "-c", CHILD, str(size)], env=env, capture_output=True, text=True,
                         check=True)
    return float(out.stdout.strip().splitlines()[-1])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--busy", type=int, default=1, help="processes spinning on the CPU meanwhile (default 1)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--size", type=int, default=1024)
    args = ap.parse_args(argv)
    spinners = [mp.Process(target=spin, daemon=True) for _ in range(args.busy)]
    for p in spinners:
        p.start()
    try:
        times: dict[str, list[float]] = {name: [] for name in VARIANTS}
        for _ in range(args.repeats):
            for name, env in VARIANTS.items():
                times[name].append(run(env, args.size))
    finally:
        for p in spinners:
            p.terminate()
    passive = min(times["OMP_WAIT_POLICY=PASSIVE"])
    print(f"dense_crf {args.size}^2, 6 classes, 5 iterations, {os.cpu_count()} CPUs, {args.busy} spinning "
          f"process(es), load average {os.getloadavg()[0]:.1f}; best of {args.repeats} ({time.strftime('%H:%M')})")
    for name, ts in times.items():
        best = min(ts)
        print(f"  {name:30s} {best:6.2f} s  ({best / passive:.2f}x passive)   runs: "
              + ", ".join(f"{t:.2f}" for t in ts))
    return 0


if __name__ == "__main__":
    sys.exit(main())
