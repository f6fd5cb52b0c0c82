"""The CRF's sparse operators do not leak: building them again and again leaves the process's
resident memory flat (torch's CPU sparse @ sparse product leaked about 10 bytes per output entry
on every call, ~265 MB per 2048 px block)."""

from __future__ import annotations

import ctypes
import gc
import sys

import pytest
from segdeep.crf import dense
from segdeep.crf.lattice import build_lattice


def _rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc and calls glibc malloc_trim")
def test_building_kernels_repeatedly_does_not_grow_memory():
    trim = ctypes.CDLL("libc.so.6").malloc_trim
    size = 512
    lat = build_lattice(dense._positions(size, size, 3.0, "cpu"))  # the Gaussian kernel's lattice
    entries = lat.weights.numel()  # one splat entry per pixel and corner
    for _ in range(1):  # warm up torch's and the allocator's pools
        dense._kernel(lat)
    gc.collect()
    trim(0)
    before = _rss_mb()
    calls = 6
    for _ in range(calls):
        dense._kernel(lat)
        gc.collect()
        trim(0)
    growth = _rss_mb() - before
    leak_mb = calls * entries * 10 / 2**20  # what the leak cost: ~10 B per entry and call
    assert growth < leak_mb / 3, f"RSS grew {growth:.0f} MB over {calls} kernel builds (leak would be ~{leak_mb:.0f})"
