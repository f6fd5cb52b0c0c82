"""Permutohedral lattice (Adams, Baek & Davis 2010) in plain torch, as used by the dense CRF.

The lattice turns Gaussian filtering in a d-dimensional feature space into three sparse linear
steps: *splat* each point onto the d+1 vertices of its enclosing simplex with barycentric weights,
*blur* along each of the d+1 lattice directions with the kernel [1/2, 1, 1/2], and *slice* back.

This module builds the lattice for a set of feature vectors (once per image) and returns plain
tensors; :mod:`segdeep.crf.dense` turns them into sparse matrices. The arithmetic follows Kraehenbuehl's
reference implementation (densecrf, as wrapped by pydensecrf) operation by operation in float32 -
scale factors stored as float, elevation in the same order, multiplication by float(1/(d+1)),
rounding half to even, the same rank tie-break - so that the filtered values agree with it to
about 1e-6. Only the first d lattice coordinates identify a vertex, as in the reference hash.

Vertices are deduplicated in two levels (pixel -> enclosing simplex -> vertex) with
``torch.unique`` on int64-packed keys; the result is deterministic and device-agnostic.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

#: Largest packed key space used before falling back to row-wise ``torch.unique``.
_KEY_BITS = 62


@dataclass
class Lattice:
    """A permutohedral lattice over N points in d dimensions.

    ``simplex_of_point`` (N, int64) and ``simplex_vertices`` (S x d+1, int64): each point's
    enclosing simplex and that simplex's vertex indices, in corner order; ``weights`` (d+1 x N,
    float32): barycentric weight of each point for each corner; ``neighbours`` (d+1 x 2 x M, int64): for
    each direction the two blur neighbours of each vertex, ``M`` meaning "no such vertex";
    ``num_vertices``: M; ``alpha``: the reference's slice constant 1 / (1 + 2^-d).
    """

    simplex_of_point: torch.Tensor
    simplex_vertices: torch.Tensor
    weights: torch.Tensor
    neighbours: torch.Tensor
    num_vertices: int
    d: int

    @property
    def offsets(self) -> torch.Tensor:
        """N x d+1 vertex index (int32) of each point's corners."""
        return self.simplex_vertices.to(torch.int32)[self.simplex_of_point]

    @property
    def alpha(self) -> float:
        return float(np.float32(1.0) / (np.float32(1.0) + np.float32(2.0) ** np.float32(-self.d)))


def _pack(columns: torch.Tensor, margin: int) -> tuple[torch.Tensor, list[int]] | None:
    """Pack integer columns (n x k) into one int64 key per row, with ``margin`` spare values on both
    sides of every column (so that adding up to +-margin to a coordinate never wraps). Returns the
    keys and the per-column strides, or None when the key space exceeds 2^62."""
    lo = columns.amin(0) - margin
    hi = columns.amax(0) + margin
    radix = (hi - lo + 1).tolist()
    if float(np.sum(np.log2(np.asarray(radix, dtype=np.float64)))) > _KEY_BITS:
        return None
    strides = []
    s = 1
    for r in reversed(radix):
        strides.append(s)
        s *= int(r)
    strides = strides[::-1]
    stride_t = torch.tensor(strides, dtype=torch.int64, device=columns.device)
    return ((columns - lo) * stride_t).sum(1), strides


def _pack_rows(rows: list[torch.Tensor]) -> torch.Tensor | None:
    """Pack equally long integer vectors into one int64 key per position (mixed radix), or None
    when the key space exceeds 2^62."""
    lo = [int(r.min()) for r in rows]
    radix = [int(r.max()) - low + 1 for r, low in zip(rows, lo, strict=True)]
    if float(np.sum(np.log2(np.asarray(radix, dtype=np.float64)))) > _KEY_BITS:
        return None
    key = (rows[0] - lo[0]).to(torch.int64)
    for r, low, rad in zip(rows[1:], lo[1:], radix[1:], strict=True):
        key *= rad
        key += r - low
    return key


def _unique_rows(columns: torch.Tensor, margin: int):
    """(keys or None, strides, unique ids, inverse) for integer rows."""
    packed = _pack(columns, margin)
    if packed is None:
        uniq, inverse = torch.unique(columns, dim=0, return_inverse=True)
        return None, None, uniq, inverse
    keys, strides = packed
    uniq, inverse = torch.unique(keys, return_inverse=True)
    return keys, strides, uniq, inverse


def build_lattice(features: torch.Tensor, simd_padding: bool = True) -> Lattice:
    """Build the lattice for ``features`` (N x d float32, already divided by the kernel widths).

    ``simd_padding`` reproduces a detail of the reference SSE build: when N is not a multiple of 4
    it also inserts the vertices of a zero feature vector (they carry no mass but take part in the
    blur). Keep it True to agree with pydensecrf.
    """
    n, d = features.shape
    device = features.device
    feat = features.to(torch.float32).t().contiguous()  # d x N: rows are contiguous
    if simd_padding and n % 4:
        feat = torch.cat([feat, feat.new_zeros(d, 1)], 1)
    npts = feat.shape[1]
    i32 = torch.int32

    # Elevate onto the hyperplane sum(x) = 0 (the reference's float operation order).
    inv_std_dev = np.float32(np.sqrt(2.0 / 3.0) * (d + 1))
    scale = [float(np.float32(1.0 / np.sqrt((i + 2) * (i + 1)) * np.float64(inv_std_dev))) for i in range(d)]
    elevated = torch.empty(d + 1, npts, dtype=torch.float32, device=device)
    sm = torch.zeros(npts, dtype=torch.float32, device=device)
    for j in range(d, 0, -1):
        cf = feat[j - 1] * scale[j - 1]
        torch.sub(sm, cf * float(j), out=elevated[j])
        sm += cf
    elevated[0] = sm
    del sm, feat

    # Closest remainder-0 point by rounding (half to even), then the simplex through the ranks.
    down = float(np.float32(1.0) / np.float32(d + 1))
    rem0 = torch.round(elevated * down)
    total = rem0.sum(0).to(i32)  # integer-valued, exact in any order
    rem0 *= float(d + 1)
    diff = elevated - rem0
    rank = torch.zeros(d + 1, npts, dtype=i32, device=device)
    for i in range(d):
        for j in range(i + 1, d + 1):
            c = diff[i] < diff[j]  # ties: the later coordinate ranks higher, as the reference
            rank[i] += c
            rank[j] += ~c
    del diff
    rank += total
    adj = (rank < 0).to(i32) - (rank > d).to(i32)
    adj *= d + 1
    rank += adj
    rem0i = rem0.to(i32) + adj
    del rem0, total, adj

    # Barycentric weights: b[p] = v(rank d-p) - v(rank d-p+1), b[0] wraps around.
    vb = (elevated - rem0i.to(torch.float32)) * down
    del elevated
    by_rank = torch.zeros_like(vb).scatter_(0, (d - rank).long(), vb)  # row q: v of rank d-q
    del vb
    weights = torch.empty_like(by_rank)
    weights[1:] = by_rank[1:] - by_rank[:-1]
    weights[0] = by_rank[0] + (1.0 - by_rank[d])
    del by_rank

    # Level 1: pixels -> distinct simplices (identified by rem0 and rank on the first d coordinates).
    cols = [torch.div(rem0i[i], d + 1, rounding_mode="floor") for i in range(d)] + [rank[i] for i in range(d)]
    packed = _pack_rows(cols)
    if packed is None:
        _, pix_simplex = torch.unique(torch.stack(cols, 1), dim=0, return_inverse=True)
    else:
        _, pix_simplex = torch.unique(packed, return_inverse=True)
    simplices = pix_simplex.max() + 1 if npts else torch.zeros((), dtype=torch.int64)
    del cols, packed
    ns = int(simplices)
    rep = torch.empty(ns, dtype=torch.int64, device=device)
    rep.scatter_(0, pix_simplex, torch.arange(npts, device=device))
    s_rem0 = rem0i[:d, rep].t().long()
    s_rank = rank[:d, rep].t().long()
    del rem0i, rank, rep

    # Level 2: simplices -> their d+1 vertices; key[i] = rem0[i] + r - (d+1) * (rank[i] > d - r).
    r = torch.arange(d + 1, device=device)
    vkeys = s_rem0[:, None, :] + r[None, :, None] - (d + 1) * (s_rank[:, None, :] > (d - r)[None, :, None])
    vkeys = vkeys.reshape(ns * (d + 1), d)
    del s_rem0, s_rank
    _, strides, uniq, inverse = _unique_rows(vkeys, d + 1)
    m = uniq.shape[0]
    simplex_vertices = inverse.reshape(ns, d + 1)

    # Blur neighbours: n1 = key - 1 + (d+1) e_j, n2 = key + 1 - (d+1) e_j (e_d: no extra term).
    neighbours = torch.empty(d + 1, 2, m, dtype=torch.int64, device=device)
    for j in range(d + 1):
        delta = [-1] * d
        if j < d:
            delta[j] += d + 1
        for side, sign in enumerate((1, -1)):
            if strides is not None:
                target = uniq + sign * sum(dv * s for dv, s in zip(delta, strides, strict=True))
                pos = torch.searchsorted(uniq, target).clamp_(max=m - 1)
                found = uniq[pos] == target
            else:
                target = uniq + sign * torch.tensor(delta, device=device)
                pos, found = _find_rows(uniq, target)
            neighbours[j, side] = torch.where(found, pos, torch.full_like(pos, m))
    return Lattice(simplex_of_point=pix_simplex[:n], simplex_vertices=simplex_vertices,
                   weights=weights[:, :n].contiguous(), neighbours=neighbours, num_vertices=m, d=d)


def _find_rows(table: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Positions of ``target`` rows in the lexicographically sorted unique rows ``table``."""
    both = torch.cat([table, target])
    _, inv = torch.unique(both, dim=0, return_inverse=True)
    # Map unique ids back to table positions (every table row is its own unique id, in order).
    m = table.shape[0]
    table_ids = inv[:m]
    lookup = torch.full((int(inv.max()) + 1,), -1, dtype=torch.int64, device=table.device)
    lookup[table_ids] = torch.arange(m, device=table.device)
    pos = lookup[inv[m:]]
    found = pos >= 0
    return pos.clamp(min=0), found
