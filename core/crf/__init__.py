"""The fully connected CRF of Krähenbühl & Koltun (dense CRF): mean-field inference with a Gaussian
(smoothness) and a bilateral (appearance) kernel, filtered on a permutohedral lattice; run on whole
arrays or block by block with a halo. Its parameters (:class:`CRFParams`, torch-free) and the one
rule that turns any image into the 8-bit colours the CRF compares live here too.

Names are imported on first use: ``CRFParams`` and the colour rule need no torch, the CRF does.
"""

from __future__ import annotations

from ..lazy import lazy_exports

# Public name -> module of this package that defines it (imported on first use).
_LAZY = {
    "CRFParams": "params",
    "recommended_halo": "params",
    "Limits": "colour",
    "apply_limits": "colour",
    "colour_limits": "colour",
    "crf_colours": "colour",
    "percentile_limits": "colour",
    "read_colour_limits": "colour",
    "PROB_FLOOR": "dense",
    "block_windows": "dense",
    "clear_lattice_cache": "dense",
    "dense_crf": "dense",
    "dense_crf_blocks": "dense",
    "dense_crf_params": "dense",
    "iter_crf_windows": "dense",
    "unary_from_labels": "dense",
    "Lattice": "lattice",
    "build_lattice": "lattice",
}

__all__ = sorted(_LAZY)


__getattr__, __dir__ = lazy_exports(__name__, _LAZY)
