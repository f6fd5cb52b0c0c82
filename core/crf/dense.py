"""Fully-connected CRF (Kraehenbuehl & Koltun 2011) with mean-field inference, in torch.

The model of DeepLab v1/v2's post-processing: unary = -log(probabilities), Potts compatibility, a
Gaussian (smoothness) kernel on pixel positions and a bilateral (appearance) kernel on positions
and colour, each with the reference implementation's symmetric normalisation. Gaussian filtering
in feature space uses a permutohedral lattice (:mod:`segdeep.crf.lattice`), built once per image
and reused by every iteration as two sparse matrices (splat, slice) and a gather-based blur.

The same code runs on CPU and CUDA (tensors stay on ``probs``' device; no host round trips inside
the iteration loop). Results agree with pydensecrf (``DenseCRF2D`` with ``addPairwiseGaussian`` and
``addPairwiseBilateral``, DIAG_KERNEL, NORMALIZE_SYMMETRIC, unary ``-log(max(p, 1e-5))``) to about
1e-5 in probability. pydensecrf is used by the tests and benchmarks only.

Widths are in pixels (``*_sxy``) and in 0-255 colour levels (``bilateral_srgb``); compatibilities
are the Potts weights (energy units).
"""

from __future__ import annotations

import warnings
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np
import torch

from ..errors import SegdeepError
from .lattice import Lattice, build_lattice
from .params import CRFParams, recommended_halo  # noqa: F401 - public here

#: Probabilities are clipped to this floor before the log (as pydensecrf's unary_from_softmax).
PROB_FLOOR = 1e-5
#: exp() of float32 overflows above ~88; below this bound no max-subtraction is needed.
_EXP_SAFE = 80.0


# --------------------------------------------------------------------------------------------------
# Lattice -> sparse operators


@dataclass
class _Kernel:
    """One normalised Gaussian kernel K~ = diag(norm) K diag(norm), ready for mean field.

    ``splat`` ((M+1) x N CSR) and the slice structure (N x (M+1), built per call with the Potts
    weight folded into its values) carry the barycentric weights, the symmetric normalisation
    ``norm = 1 / sqrt(K 1 + 1e-20)`` and the slice constant; vertex row M is always zero and stands
    for "no neighbour" in ``blur`` (per lattice direction, 2 x M neighbour indices). ``peak`` is the
    largest entry of K~ 1, so that a message never exceeds ``compat * peak``.
    """

    splat: torch.Tensor
    slice_crow: torch.Tensor
    slice_col: torch.Tensor
    slice_val: torch.Tensor
    blur: list[torch.Tensor]
    num_vertices: int
    peak: float

    def slice(self, compat: float) -> torch.Tensor:
        n = self.slice_crow.shape[0] - 1
        return _csr(self.slice_crow, self.slice_col, self.slice_val * compat, (n, self.num_vertices + 1))

    def message(self, q: torch.Tensor, slice_: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
        """out += compat * K~ q (``slice_`` from :meth:`slice`)."""
        values = _blur(self.splat @ q, self.blur)
        return torch.addmm(out, slice_, values, out=out)


def _csr(crow: torch.Tensor, col: torch.Tensor, val: torch.Tensor, shape: tuple[int, int]) -> torch.Tensor:
    with warnings.catch_warnings():  # "sparse CSR support is in beta"
        warnings.simplefilter("ignore", UserWarning)
        return torch.sparse_csr_tensor(crow, col, val, size=shape, check_invariants=False)


def _blur(values: torch.Tensor, blur: list[torch.Tensor]) -> torch.Tensor:
    """Blur vertex values (rows; the last row is zero) in place along each lattice direction:
    v <- v + 0.5 * (v[n1] + v[n2]), each direction reading the previous direction's result."""
    m = values.shape[0] - 1
    for idx in blur:
        g = values.index_select(0, idx.view(-1)).view(2, m, values.shape[1])
        values[:m].add_(g[0] + g[1], alpha=0.5)
    return values


def _kernel(lat: Lattice) -> _Kernel:
    """Sparse operators of one lattice, normalised (NORMALIZE_SYMMETRIC of the reference)."""
    d, m = lat.d, lat.num_vertices
    n = lat.simplex_of_point.shape[0]
    device = lat.weights.device
    i32 = torch.int32

    # Slice: pixel rows, the d+1 corners of each pixel's simplex.
    slice_col = lat.offsets.reshape(-1)
    slice_w = (lat.weights.t() * lat.alpha).reshape(-1)
    slice_crow = torch.arange(0, n * (d + 1) + 1, d + 1, dtype=i32, device=device)

    # Splat (vertex rows): one corner row per corner r and simplex s holds the pixels of s with
    # their weight for corner r; the vertex rows are the corner rows regrouped by vertex, without
    # sorting all N x (d+1) entries.
    ns = lat.simplex_vertices.shape[0]
    counts = torch.bincount(lat.simplex_of_point, minlength=ns)
    perm = torch.argsort(lat.simplex_of_point, stable=True)
    corner_end = torch.cumsum(counts.repeat(d + 1), 0)  # corner rows (r, s): pixels of s, for corner r
    corner_len = counts.repeat(d + 1)
    corner_col = perm.to(i32).repeat(d + 1)
    corner_w = lat.weights.index_select(1, perm).reshape(-1)  # d+1 x N, pixels grouped by simplex
    del perm
    sv = lat.simplex_vertices.t().reshape(-1)  # corner rows in (r, s) order -> vertex
    order = torch.argsort(sv, stable=True)
    # Splat (vertex rows): the corner rows regrouped by vertex (each product of the former
    # gather @ corners had a single term), built by index arithmetic: torch's CPU sparse @ sparse
    # (MKL) leaks about 10 bytes per output entry on every call (28 M entries per 2k block).
    lens = corner_len[order]
    starts = (corner_end - corner_len)[order]
    take = torch.repeat_interleave(starts - (torch.cumsum(lens, 0) - lens), lens) + torch.arange(
        int(lens.sum()), device=device)
    del lens, starts, order
    splat_col = corner_col[take]
    plain_val = corner_w[take]
    del take, corner_col, corner_w
    vertex_crow = torch.zeros(m + 2, dtype=torch.int64, device=device)
    vertex_crow[1:] = torch.cumsum(torch.zeros(m + 1, dtype=torch.int64, device=device).index_add_(0, sv, corner_len), 0)
    splat_crow = vertex_crow.to(i32)
    del sv, vertex_crow, corner_len, corner_end
    plain = _csr(splat_crow, splat_col, plain_val, (m + 1, n))

    blur = [lat.neighbours[j].to(i32) for j in range(d + 1)]
    ones = torch.ones(n, 1, device=device)
    k1 = torch.mm(_csr(slice_crow, slice_col, slice_w, (n, m + 1)), _blur(plain @ ones, blur))
    norm = (1.0 / torch.sqrt(k1[:, 0].double() + 1e-20)).float()
    splat = _csr(splat_crow, splat_col, plain_val * norm[splat_col], (m + 1, n))
    del plain, plain_val
    slice_val = (slice_w.view(n, d + 1) * norm[:, None]).reshape(-1)
    kern = _Kernel(splat=splat, slice_crow=slice_crow, slice_col=slice_col, slice_val=slice_val,
                   blur=blur, num_vertices=m, peak=0.0)
    kern.peak = float(kern.message(ones, kern.slice(1.0), torch.zeros(n, 1, device=device)).max()) if n else 0.0
    return kern


# --------------------------------------------------------------------------------------------------
# Features and lattices

_GAUSSIAN_CACHE: OrderedDict = OrderedDict()
#: Position-only kernels kept: the window shapes of a row of CRF windows (left edge, middle, right
#: edge) and one more, as long as they hold at most this many pixels together (~50 bytes a pixel).
_GAUSSIAN_CACHE_SIZE = 4
_GAUSSIAN_CACHE_PIXELS = 6_000_000


def _positions(height: int, width: int, sxy: float, device) -> torch.Tensor:
    """N x 2 features (x / sxy, y / sxy) in row-major pixel order, float32 as the reference."""
    s = torch.tensor(sxy, dtype=torch.float32)
    x = torch.arange(width, dtype=torch.float32, device=device) / s.to(device)
    y = torch.arange(height, dtype=torch.float32, device=device) / s.to(device)
    return torch.stack([x.repeat(height), y.repeat_interleave(width)], 1)


def _gaussian_kernel(height: int, width: int, sxy: float, device) -> _Kernel:
    """Position-only kernel; it depends on the size only, so it is cached across windows."""
    key = (height, width, float(sxy), str(device))
    kern = _GAUSSIAN_CACHE.get(key)
    if kern is None:
        kern = _kernel(build_lattice(_positions(height, width, sxy, device)))
        _GAUSSIAN_CACHE[key] = kern
        while len(_GAUSSIAN_CACHE) > 1 and (
                len(_GAUSSIAN_CACHE) > _GAUSSIAN_CACHE_SIZE
                or sum(k[0] * k[1] for k in _GAUSSIAN_CACHE) > _GAUSSIAN_CACHE_PIXELS):
            _GAUSSIAN_CACHE.popitem(last=False)
    else:
        _GAUSSIAN_CACHE.move_to_end(key)
    return kern


def clear_lattice_cache() -> None:
    """Free the cached position-only lattices (up to four window shapes; about 50 bytes per pixel)."""
    _GAUSSIAN_CACHE.clear()


def _bilateral_kernel(image: torch.Tensor, sxy: float, srgb: float) -> _Kernel:
    c, h, w = image.shape
    pos = _positions(h, w, sxy, image.device)
    rgb = image.reshape(c, -1).t().to(torch.float32) / torch.tensor(srgb, dtype=torch.float32, device=image.device)
    return _kernel(build_lattice(torch.cat([pos, rgb], 1)))


def _check(probs, image) -> tuple[torch.Tensor, torch.Tensor]:
    if not isinstance(probs, torch.Tensor):
        probs = torch.as_tensor(np.asarray(probs))
    if probs.ndim != 3 or probs.shape[0] < 2:
        raise SegdeepError(f"dense_crf: probs must be classes x height x width with >= 2 classes, "
                           f"got shape {tuple(probs.shape)}")
    if not probs.is_floating_point():
        raise SegdeepError(f"dense_crf: probs must be a float tensor (probabilities 0-1), got {probs.dtype}")
    if not isinstance(image, torch.Tensor):
        image = torch.as_tensor(np.ascontiguousarray(image))
    if image.ndim != 3 or image.shape[0] != 3 or tuple(image.shape[1:]) != tuple(probs.shape[1:]):
        raise SegdeepError(f"dense_crf: image must be 3 x {probs.shape[1]} x {probs.shape[2]} (RGB, same size "
                           f"as probs), got shape {tuple(image.shape)}")
    if image.dtype != torch.uint8:
        raise SegdeepError(f"dense_crf: image must be uint8 (0-255 RGB), got {image.dtype}")
    return probs, image.to(probs.device)


def _softmax_rows(energy: torch.Tensor, shift: bool) -> torch.Tensor:
    """Softmax over the class axis (columns of N x C), in place."""
    if shift:
        energy -= energy.amax(1, keepdim=True)
    energy.exp_()
    energy /= energy.sum(1, keepdim=True)
    return energy


def dense_crf(
    probs: torch.Tensor,
    image,
    iterations: int = 5,
    gaussian_sxy: float = 3.0,
    gaussian_compat: float = 3.0,
    bilateral_sxy: float = 80.0,
    bilateral_srgb: float = 13.0,
    bilateral_compat: float = 10.0,
) -> torch.Tensor:
    """Refine class probabilities with a fully-connected CRF (mean field).

    ``probs``: classes x height x width float probabilities (any device; clipped at 1e-5 before
    the log, so they need not be exactly normalised). ``image``: 3 x height x width uint8 RGB
    (tensor or array; moved to ``probs``' device). ``gaussian_sxy`` / ``bilateral_sxy``: kernel
    widths in pixels; ``bilateral_srgb``: colour width in 0-255 levels; ``*_compat``: Potts
    weights. Returns refined probabilities (float32, classes x height x width, on ``probs``'
    device). With ``iterations=0`` the result is the normalised (clipped) input.

    The keyword defaults are DeepLab's published weights (as in pydensecrf's examples); segdeep's
    own defaults, tuned on aerial imagery, are ``dense_crf_params(probs, image, CRFParams())``. For
    block-wise use (the streaming pipeline), refine each block read with ``CRFParams.halo`` pixels
    of context on every side and keep the centre: see :func:`dense_crf_blocks`.
    """
    probs, image = _check(probs, image)
    if int(iterations) != iterations or iterations < 0:
        raise SegdeepError(f"dense_crf: iterations must be a whole number >= 0, got {iterations!r}")
    for name, value in (("gaussian_sxy", gaussian_sxy), ("bilateral_sxy", bilateral_sxy),
                        ("bilateral_srgb", bilateral_srgb)):
        if not value > 0:
            raise SegdeepError(f"dense_crf: {name} must be > 0 (a kernel width), got {value!r}")
    c, h, w = probs.shape
    n = h * w
    # Unary energy shifted per pixel so that its best class is 0 (the softmax is unchanged).
    logp = torch.log(probs.to(torch.float32).clamp(min=PROB_FLOOR)).reshape(c, n).t().contiguous()
    logp -= logp.amax(1, keepdim=True)
    q = _softmax_rows(logp.clone(), shift=False)
    if iterations == 0 or n == 0:
        return q.t().reshape(c, h, w).contiguous()
    kernels = []
    if gaussian_compat:
        kernels.append((_gaussian_kernel(h, w, gaussian_sxy, probs.device), float(gaussian_compat)))
    if bilateral_compat:
        kernels.append((_bilateral_kernel(image, bilateral_sxy, bilateral_srgb), float(bilateral_compat)))
    slices = [kern.slice(compat) for kern, compat in kernels]
    bound = sum(abs(compat) * kern.peak for kern, compat in kernels)
    shift = bound >= _EXP_SAFE
    for _ in range(int(iterations)):
        energy = logp.clone()
        for (kern, _compat), slice_ in zip(kernels, slices, strict=True):
            kern.message(q, slice_, energy)
        q = _softmax_rows(energy, shift)
    return q.t().reshape(c, h, w).contiguous()


def dense_crf_params(probs: torch.Tensor, image, params: CRFParams) -> torch.Tensor:
    """:func:`dense_crf` with the settings of a :class:`CRFParams`."""
    return dense_crf(probs, image, **params.kernel_dict())


def unary_from_labels(labels, num_classes: int, confidence: float = 0.7, ignore: int = 255,
                      device=None) -> torch.Tensor:
    """Class probabilities from a label map, for refining an (edited) mask with :func:`dense_crf`.

    ``labels``: height x width integer class indices (array or tensor); ``confidence``: probability
    given to the labelled class, the rest is spread evenly over the other classes; pixels equal to
    ``ignore`` get the uniform distribution. Returns classes x height x width float32 (on
    ``device``, default the labels' device). ``-log`` of it is pydensecrf's
    ``unary_from_labels(labels + 1, num_classes, confidence, zero_unsure=True)`` with ``ignore``
    playing the role of pydensecrf's 0.
    """
    if not 0.0 < confidence < 1.0:
        raise SegdeepError(f"unary_from_labels: confidence must be between 0 and 1 (exclusive), got {confidence!r}")
    if int(num_classes) < 2:
        raise SegdeepError(f"unary_from_labels: num_classes must be >= 2, got {num_classes!r}")
    lab = labels if isinstance(labels, torch.Tensor) else torch.as_tensor(np.asarray(labels))
    if lab.ndim != 2 or lab.is_floating_point() or lab.dtype == torch.bool:
        raise SegdeepError(f"unary_from_labels: labels must be a 2-D integer array (height x width), "
                           f"got {tuple(lab.shape)} {lab.dtype}")
    lab = lab.to(device if device is not None else lab.device).long()
    unsure = lab == ignore
    bad = ~unsure & ((lab < 0) | (lab >= num_classes))
    if bool(bad.any()):
        value = int(lab[bad][0])
        raise SegdeepError(f"unary_from_labels: label value {value} is not a class (0-{num_classes - 1}) "
                           f"nor the ignore value {ignore}")
    other = (1.0 - confidence) / (num_classes - 1)
    probs = torch.full((num_classes, *lab.shape), other, dtype=torch.float32, device=lab.device)
    probs.scatter_(0, lab.clamp(0, num_classes - 1)[None], confidence)
    probs[:, unsure] = 1.0 / num_classes
    return probs


def block_windows(height: int, width: int, block_size: int, halo: int,
                  core: tuple[int, int, int, int] | None = None, origin: tuple[int, int] = (0, 0)):
    """Yield ``(block, read)`` windows as (row_off, col_off, height, width) tuples in pixels of a
    height x width array: the cells of a grid of ``block_size`` anchored at the array pixel
    ``(-origin[0], -origin[1])`` (so that an array cut from a larger image at ``origin`` uses the
    image's grid), intersected with ``core`` (default: the whole array); each grown by ``halo`` and
    clipped to the array."""
    r_lo, c_lo, r_n, c_n = core if core is not None else (0, 0, height, width)
    o_r, o_c = origin
    for g_r in range((r_lo + o_r) // block_size * block_size, r_lo + r_n + o_r, block_size):
        for g_c in range((c_lo + o_c) // block_size * block_size, c_lo + c_n + o_c, block_size):
            r0, c0 = max(g_r - o_r, r_lo), max(g_c - o_c, c_lo)
            bh = min(g_r - o_r + block_size, r_lo + r_n) - r0
            bw = min(g_c - o_c + block_size, c_lo + c_n) - c0
            rr, cc = max(0, r0 - halo), max(0, c0 - halo)
            re, ce = min(height, r0 + bh + halo), min(width, c0 + bw + halo)
            yield (r0, c0, bh, bw), (rr, cc, re - rr, ce - cc)


def iter_crf_windows(probs, image, params: CRFParams, *, window_size: int | None = None, halo: int | None = None,
                     core: tuple[int, int, int, int] | None = None, origin: tuple[int, int] = (0, 0),
                     scale: float = 1.0, device=None):
    """Refine ``core`` of ``probs`` window by window: yield ``(window, refined)`` per window of the
    grid of :func:`block_windows` (``window`` = (row_off, col_off, height, width) in the array,
    ``refined`` = classes x height x width float32 probabilities of it), each refined with ``halo``
    pixels of context (default ``params.halo``) clipped to the array. ``probs``: classes x H x W, a
    tensor or an array of any numeric type, turned into float32 times ``scale`` one window (and its
    context) at a time; ``image``: 3 x H x W uint8; ``window_size`` defaults to
    ``params.window_size``. Memory depends on the window size, not on the array's."""
    size = int(window_size or params.window_size)
    halo = params.halo if halo is None else int(halo)
    if size < 1 or halo < 0:
        raise SegdeepError(f"CRF windows: window size must be >= 1 and halo >= 0, got {size}, {halo}")
    c, h, w = probs.shape
    kw = params.kernel_dict()
    for (r0, c0, bh, bw), (rr, cc, rh, rw) in block_windows(h, w, size, halo, core, origin):
        part = probs[:, rr:rr + rh, cc:cc + rw]
        if isinstance(part, np.ndarray):
            part = torch.from_numpy(part.astype(np.float32))
        part = part.to(device if device is not None else part.device, torch.float32)
        if scale != 1.0:
            part = part * scale
        colours = torch.as_tensor(np.ascontiguousarray(image[:, rr:rr + rh, cc:cc + rw])).to(part.device)
        refined = dense_crf(part, colours, **kw)
        del part, colours
        yield (r0, c0, bh, bw), refined[:, r0 - rr:r0 - rr + bh, c0 - cc:c0 - cc + bw]


def dense_crf_blocks(probs: torch.Tensor, image, block_size: int | None = None, halo: int | None = None,
                     params: CRFParams | None = None) -> torch.Tensor:
    """Window-wise :func:`dense_crf`: each window (``block_size``, default ``params.window_size``) is
    refined with ``halo`` pixels of context around it (clipped at the image border) and cropped
    back, so memory depends on ``block_size`` only. The streaming engine refines its blocks with the
    same windows (:func:`iter_crf_windows`); ``halo`` defaults to ``params.halo``."""
    params = params or CRFParams()
    probs, image = _check(probs, image)
    halo = params.halo if halo is None else int(halo)
    block_size = params.window_size if block_size is None else int(block_size)
    if block_size < 1 or halo < 0:
        raise SegdeepError(f"dense_crf_blocks: block_size must be >= 1 and halo >= 0, got {block_size}, {halo}")
    c, h, w = probs.shape
    out = torch.empty((c, h, w), dtype=torch.float32, device=probs.device)
    for (r0, c0, bh, bw), refined in iter_crf_windows(probs, image, params, window_size=block_size, halo=halo):
        out[:, r0:r0 + bh, c0:c0 + bw] = refined
    return out
