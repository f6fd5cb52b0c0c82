"""Deterministic, window-independent randomness for the sample scene generator.

Everything is a pure function of integer keys (seed, salt, global lattice or pixel indices), so any
window of the scene can be generated on its own and gives the same values as the whole scene.
"""

from __future__ import annotations

import numpy as np

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)


def _mix(h: np.ndarray) -> np.ndarray:
    """splitmix64 finaliser (uint64 in, uint64 out; wraps by design)."""
    h = (h ^ (h >> np.uint64(30))) * _M1
    h = (h ^ (h >> np.uint64(27))) * _M2
    return h ^ (h >> np.uint64(31))


def hash_keys(*keys) -> np.ndarray:
    """Hash integer keys (scalars or broadcastable int arrays) to uint64."""
    with np.errstate(over="ignore"):
        h = np.uint64(0x243F6A8885A308D3)
        for k in keys:
            k = np.asarray(k).astype(np.int64).view(np.uint64) if np.ndim(k) else np.uint64(int(k) & (2**64 - 1))
            h = _mix(h ^ (k + _GOLDEN + (h << np.uint64(6)) + (h >> np.uint64(2))))
        return h


def uniform(*keys) -> np.ndarray:
    """Uniform floats in [0, 1) (float64) from integer keys."""
    return (hash_keys(*keys) >> np.uint64(11)).astype(np.float64) * (1.0 / 2**53)


def table_uniform(seed: int, salt: int, *index_arrays: np.ndarray) -> np.ndarray:
    """Per-pixel uniform values keyed by integer index arrays (e.g. cell i, k).

    Hashes only the distinct index combinations (a small table over the index ranges) and gathers,
    which is much cheaper than hashing every pixel when the indices are coarse.
    """
    if index_arrays[0].size == 0:
        return np.zeros(index_arrays[0].shape, np.float32)
    mins = [int(a.min()) for a in index_arrays]
    sizes = [int(a.max()) - m + 1 for a, m in zip(index_arrays, mins, strict=True)]
    grids = np.meshgrid(*[np.arange(m, m + s) for m, s in zip(mins, sizes, strict=True)], indexing="ij")
    table = uniform(seed, salt, *grids).astype(np.float32)
    return table[tuple(a - m for a, m in zip(index_arrays, mins, strict=True))]


def table_uniforms(seed: int, salt: int, count: int, *index_arrays: np.ndarray) -> list[np.ndarray]:
    """``count`` independent per-pixel uniform values keyed by integer index arrays (see table_uniform)."""
    if index_arrays[0].size == 0:
        return [np.zeros(index_arrays[0].shape, np.float32) for _ in range(count)]
    mins = [int(a.min()) for a in index_arrays]
    sizes = [int(a.max()) - m + 1 for a, m in zip(index_arrays, mins, strict=True)]
    flat = index_arrays[0] - mins[0]
    for a, m, s in zip(index_arrays[1:], mins[1:], sizes[1:], strict=True):
        flat = flat * s + (a - m)
    grids = np.meshgrid(*[np.arange(m, m + s) for m, s in zip(mins, sizes, strict=True)], indexing="ij")
    keys = [g.ravel()[None, :] for g in grids]
    table = uniform(seed, salt, np.arange(count)[:, None], *keys).astype(np.float32)
    return [table[j][flat] for j in range(count)]


def value_noise(x: np.ndarray, y: np.ndarray, cell: float, seed: int, salt: int) -> np.ndarray:
    """Smooth value noise in [0, 1) at coordinates (x, y) (metres) with lattice spacing ``cell`` (metres).

    The lattice is global (anchored at 0, 0), so values do not depend on the window.
    """
    if np.size(x) == 0:
        return np.zeros(np.shape(x), np.float32)
    gx = x / cell
    gy = y / cell
    ix = np.floor(gx)
    iy = np.floor(gy)
    fx = (gx - ix).astype(np.float32)
    fy = (gy - iy).astype(np.float32)
    ix = ix.astype(np.int64)
    iy = iy.astype(np.int64)
    x0, y0 = int(ix.min()), int(iy.min())
    nx, ny = int(ix.max()) - x0 + 2, int(iy.max()) - y0 + 2
    gy_, gx_ = np.meshgrid(np.arange(y0, y0 + ny), np.arange(x0, x0 + nx), indexing="ij")
    table = uniform(seed, salt, gx_, gy_).astype(np.float32)
    jx = ix - x0
    jy = iy - y0
    v00 = table[jy, jx]
    v10 = table[jy, jx + 1]
    v01 = table[jy + 1, jx]
    v11 = table[jy + 1, jx + 1]
    sx = fx * fx * (3 - 2 * fx)
    sy = fy * fy * (3 - 2 * fy)
    top = v00 + (v10 - v00) * sx
    bottom = v01 + (v11 - v01) * sx
    return top + (bottom - top) * sy


def fbm(x: np.ndarray, y: np.ndarray, cell: float, seed: int, salt: int, octaves: int = 4,
        gain: float = 0.5) -> np.ndarray:
    """Fractal sum of value noise, normalised to about [0, 1); ``cell`` is the largest scale (metres)."""
    total = np.zeros(np.shape(x), dtype=np.float32)
    amp, norm = 1.0, 0.0
    for o in range(octaves):
        total += amp * value_noise(x, y, cell / 2**o, seed, salt * 16 + o)
        norm += amp
        amp *= gain
    return total / norm


def pixel_noise(cols: np.ndarray, rows: np.ndarray, seed: int, salt: int) -> np.ndarray:
    """Independent per-pixel noise, 3 values per pixel in [-0.5, 0.5) (float32, ... x 3).

    ``cols``/``rows`` are global pixel indices (broadcastable)."""
    h = hash_keys(seed, salt, cols, rows)
    out = np.empty((*h.shape, 3), dtype=np.float32)
    for i in range(3):
        out[..., i] = ((h >> np.uint64(21 * i)) & np.uint64(0x1FFFFF)).astype(np.float32) / 2**21 - 0.5
    return out
