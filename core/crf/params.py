"""Dense-CRF settings (:class:`CRFParams`), apart from :mod:`segdeep.crf.dense` so that building the
command line does not import torch."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

from ..errors import SegdeepError


@dataclass
class CRFParams:
    """Dense-CRF settings. Widths in pixels / colour levels (0-255); compat = Potts weight.

    The defaults are segdeep's own, chosen on validation aerial imagery (Dubai tile 6, unary from
    corrupted ground truth; ``benchmarks/crf_tune.py``): a narrower, weaker appearance kernel than
    DeepLab's (bilateral_sxy 20 px instead of 80, compat 4 instead of 10). mIoU there: 0.777,
    against 0.647 with DeepLab's weights and 0.617 without CRF; 10 iterations did not help (compat 6:
    0.765 against 0.775 with 5). The method
    :meth:`deeplab` gives DeepLab's published settings, also :func:`dense_crf`'s keyword defaults.
    """

    iterations: int = 5
    gaussian_sxy: float = 3.0
    gaussian_compat: float = 3.0
    bilateral_sxy: float = 20.0
    bilateral_srgb: float = 13.0
    bilateral_compat: float = 4.0
    #: Side of the CRF windows in pixels: the CRF runs on a grid of windows anchored at the image
    #: origin, each with :attr:`halo` pixels of context, so memory depends on it and not on the
    #: image (or block) size, and the labels do not depend on how the image is cut into blocks.
    window_size: int = 1024

    @classmethod
    def deeplab(cls) -> CRFParams:
        """DeepLab's published weights (w1=10, theta_alpha=80, theta_beta=13, w2=3, theta_gamma=3)."""
        return cls(iterations=5, gaussian_sxy=3.0, gaussian_compat=3.0, bilateral_sxy=80.0,
                   bilateral_srgb=13.0, bilateral_compat=10.0)

    def to_dict(self) -> dict:
        """Plain dict (for run.json): :meth:`kernel_dict` and ``window_size``."""
        return asdict(self)

    def kernel_dict(self) -> dict:
        """The settings of one CRF window: :func:`segdeep.crf.dense.dense_crf`'s keyword arguments."""
        return {k: v for k, v in asdict(self).items() if k != "window_size"}

    @classmethod
    def from_dict(cls, data: dict) -> CRFParams:
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise SegdeepError(f"CRF settings: unknown key(s) {unknown}; accepted: {sorted(names)}")
        params = cls(**data)
        if int(params.window_size) != params.window_size or params.window_size < 16:
            raise SegdeepError(f"CRF window_size {params.window_size!r}: must be a whole number of pixels >= 16")
        return params

    @property
    def halo(self) -> int:
        """Context (pixels) to read around a block so that block-wise CRF matches whole-image CRF."""
        return recommended_halo(self)


def recommended_halo(params: CRFParams) -> int:
    """Halo in pixels for block-wise CRF: three times the widest spatial kernel width, at least 32 px
    (with it, block-wise and whole-image labels agree on >= 99.5% of pixels; see the tests)."""
    return int(max(32, round(3 * max(params.bilateral_sxy, params.gaussian_sxy))))
