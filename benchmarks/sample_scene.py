"""Time and peak memory of `segdeep sample` (the generated sample scene) at several sizes.

Each size runs in a fresh child process (what `segdeep sample --out TMP --size N` runs:
`make_sample_scene(TMP, size=N)`, default 512 px blocks), so its peak resident memory (ru_maxrss
of the child) is the generator's own. Memory should stay flat as the size grows; time should grow
with the pixel count.

    .venv/bin/python benchmarks/sample_scene.py            # 2048 and 16384
    .venv/bin/python benchmarks/sample_scene.py 1024 4096  # other sizes
"""

from __future__ import annotations

import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def run(size: int) -> tuple[float, float, float, float]:
    with tempfile.TemporaryDirectory(prefix="segdeep-sample-") as tmp:
        code = f"from segdeep.sample.scene import make_sample_scene; make_sample_scene({tmp!r}, size={size})"
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        start = time.perf_counter()
        subprocess.run([sys.executable, "-c", code], check=True)
        wall = time.perf_counter() - start
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
        peak_mb = after.ru_maxrss / 1024  # kB on Linux; the max over children so far
        image = os.path.getsize(Path(tmp) / "scene.tif") / 1e6
        return wall, cpu, peak_mb, image


def main(argv: list[str]) -> None:
    sizes = [int(a) for a in argv] or [2048, 16384]
    print(f"{'size (px)':>10} {'Mpx':>8} {'wall s':>8} {'cpu s':>8} {'cpu s/Mpx':>10} {'peak RSS MB':>12} {'scene.tif MB':>13}")
    for size in sorted(sizes):  # increasing, so the running max of ru_maxrss is this size's peak
        wall, cpu, peak, image = run(size)
        mpx = size * size / 1e6
        print(f"{size:>10} {mpx:>8.1f} {wall:>8.1f} {cpu:>8.1f} {cpu / mpx:>10.3f} {peak:>12.0f} {image:>13.1f}",
              flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
