"""Upsampling of stride-s logits that keeps every pixel centred where the network put it."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def upsample_logits(logits: torch.Tensor, size: tuple[int, int], stride: int) -> torch.Tensor:
    """Bilinearly upsample ``logits`` whose pixel j is centred on input pixel ``stride * j``.

    That is the geometry of networks whose pools and strided convolutions are padded by half their
    kernel (DeepLab's 3x3 pad-1 pools, torchvision's ResNet): input pixel y then gets logits
    interpolated at j = y / stride exactly, as DeepLab's ``Interp`` layer does on 8n+1 inputs
    (``align_corners=True``). A plain ``F.interpolate(size=...)`` would shift the map by
    (stride - 1) / 2 pixels. ``size`` is (height, width) in pixels and must not exceed
    ``stride`` * the logits' size; the last row/column is replicated to cover the input's edge.
    """
    h, w = size
    mh, mw = logits.shape[-2:]
    if h > stride * mh or w > stride * mw:
        raise ValueError(f"cannot upsample {mh}x{mw} logits by {stride} to {h}x{w}")
    padded = F.pad(logits, (0, 1, 0, 1), mode="replicate")
    up = F.interpolate(padded, size=(stride * mh + 1, stride * mw + 1), mode="bilinear",
                       align_corners=True)
    return up[:, :, :h, :w]
