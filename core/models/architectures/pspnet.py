"""PSPNet, the pyramid scene parsing network (Zhao et al., CVPR 2017).

A dilated ResNet (torchvision's, through :func:`~segdeep.models.backbones.build_backbone`: random
weights unless ``pretrained`` names a local file or cached ImageNet weights) gives features at
output stride 8: layer3 and layer4 keep their resolution and use dilation 2 and 4 instead of
stride 2. The pyramid pooling module average-pools those features into 1x1, 2x2, 3x3 and 6x6 bins,
reduces each with a 1x1 conv-BN-ReLU to 1/4 of the channels (1/N for N levels), upsamples them
bilinearly back to the feature size and concatenates them with the features; a 3x3 conv-BN-ReLU
(512 channels), dropout 0.1 and a 1x1 class convolution follow, and the logits are upsampled
bilinearly to the input size (logit j at input pixel 8j, the ResNet's geometry;
:func:`~segdeep.models._align.upsample_logits`).

``backbone``: "resnet50" (default, as in the paper's ablations; "resnet101" is the paper's best),
"resnet18" / "resnet34" as light options, or another backbone ``build_backbone`` knows
(``output_stride=16`` is a cheaper option). Not reproduced: the paper's deep-stem ResNet (three 3x3
stem convolutions instead of torchvision's 7x7) and its auxiliary training loss on layer3.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from ...errors import SegdeepError
from .._align import upsample_logits
from ..backbones import build_backbone
from ..registry import register_model


def _bin_average(n: int, bins: int, like: torch.Tensor) -> torch.Tensor:
    """``bins`` x ``n`` matrix averaging the bins of adaptive average pooling (bin i covers
    floor(i n / bins) .. ceil((i + 1) n / bins), exactly as ``F.adaptive_avg_pool2d``)."""
    i = torch.arange(bins, device=like.device)
    start, end = (i * n) // bins, ((i + 1) * n + bins - 1) // bins
    pos = torch.arange(n, device=like.device)
    inside = ((pos[None] >= start[:, None]) & (pos[None] < end[:, None])).to(like.dtype)
    return inside / inside.sum(dim=1, keepdim=True)


def adaptive_avg_pool(x: torch.Tensor, bins: int) -> torch.Tensor:
    """Adaptive average pooling to ``bins`` x ``bins`` as two matrix products; unlike
    ``nn.AdaptiveAvgPool2d`` it exports to ONNX when the size is not a multiple of ``bins``."""
    h, w = x.shape[-2:]
    return _bin_average(h, bins, x) @ x @ _bin_average(w, bins, x).transpose(0, 1)


class AdaptiveAvgPool(nn.Module):
    """:func:`adaptive_avg_pool` as a module."""

    def __init__(self, bins: int):
        super().__init__()
        self.bins = bins

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return adaptive_avg_pool(x, self.bins)


class PyramidPooling(nn.Module):
    """Pool into ``bins`` x ``bins`` grids, reduce, upsample and concatenate with the input."""

    def __init__(self, in_channels: int, bins: Sequence[int] = (1, 2, 3, 6)):
        super().__init__()
        reduced = in_channels // len(bins)
        self.stages = nn.ModuleList(
            nn.Sequential(AdaptiveAvgPool(b), nn.Conv2d(in_channels, reduced, 1, bias=False),
                          nn.BatchNorm2d(reduced), nn.ReLU(inplace=True))
            for b in bins)
        self.out_channels = in_channels + reduced * len(bins)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        size = x.shape[-2:]
        pooled = [F.interpolate(stage(x), size=size, mode="bilinear", align_corners=False)
                  for stage in self.stages]
        return torch.cat([x, *pooled], dim=1)


class PSPNet(nn.Module):
    """Dilated ResNet + pyramid pooling module; returns N x classes x H x W logits."""

    def __init__(self, num_classes: int, in_channels: int = 3, *, backbone: str = "resnet50",
                 output_stride: int = 8, bins: Sequence[int] = (1, 2, 3, 6),
                 head_channels: int = 512, dropout: float = 0.1, pretrained=None,
                 allow_download: bool = False):
        super().__init__()
        if output_stride not in (8, 16):
            raise SegdeepError(f"pspnet output_stride {output_stride!r} is not supported; use 8 or 16")
        self.output_stride = output_stride
        self.backbone, channels = build_backbone(
            backbone, in_channels=in_channels, output_stride=output_stride, returns=("out",),
            pretrained=pretrained, allow_download=allow_download)
        self.ppm = PyramidPooling(channels["out"], bins)
        self.head = nn.Sequential(
            nn.Conv2d(self.ppm.out_channels, head_channels, 3, padding=1, bias=False),
            nn.BatchNorm2d(head_channels), nn.ReLU(inplace=True), nn.Dropout2d(dropout),
            nn.Conv2d(head_channels, num_classes, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.head(self.ppm(self.backbone(x)["out"]))
        return upsample_logits(y, x.shape[-2:], self.output_stride)


@register_model("pspnet", output_stride="8 (or 16)",
                paper="Zhao et al. 2017, Pyramid Scene Parsing Network")
def pspnet(num_classes: int = 21, in_channels: int = 3, **kwargs) -> PSPNet:
    """PSPNet: dilated ResNet (OS 8) and a pyramid pooling module with bins 1, 2, 3, 6."""
    return PSPNet(num_classes, in_channels, **kwargs)
