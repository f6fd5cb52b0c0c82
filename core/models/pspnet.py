"""PSPNet, the pyramid scene parsing network (Zhao et al., CVPR 2017).

A dilated ResNet (torchvision's, random weights) gives features at output stride 8: layer3 and layer4
keep their resolution and use dilation 2 and 4 instead of stride 2. The pyramid pooling module
average-pools those features into 1x1, 2x2, 3x3 and 6x6 bins, reduces each with a 1x1 conv-BN-ReLU to
1/4 of the channels (1/N for N levels), upsamples them bilinearly back to the feature size and
concatenates them with the features; a 3x3 conv-BN-ReLU (512 channels), dropout 0.1 and a 1x1 class
convolution follow, and the logits are upsampled bilinearly to the input size (logit j at input
pixel 8j, the ResNet's geometry; :func:`~segdeep.models._align.upsample_logits`).

``backbone``: "resnet50" (default, as in the paper's ablations; "resnet101" is the paper's best),
or "resnet18" / "resnet34" as light options. Not reproduced: the paper's deep-stem ResNet (three 3x3
stem convolutions instead of torchvision's 7x7) and its auxiliary training loss on layer3.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F
from torchvision.models import resnet

from ..errors import SegdeepError
from ._align import upsample_logits
from ._utils import adapt_first_conv
from .registry import register_model

_RESNETS = {"resnet18": resnet.resnet18, "resnet34": resnet.resnet34,
            "resnet50": resnet.resnet50, "resnet101": resnet.resnet101}


def _dilate_basic_layer(layer: nn.Sequential, dilation: int, first_dilation: int) -> None:
    """Output stride by dilation for a layer of BasicBlocks (torchvision only supports Bottleneck):
    the same rule as torchvision's ``replace_stride_with_dilation`` - the first block loses its
    stride and keeps the previous dilation, the following blocks use ``dilation``."""
    for i, block in enumerate(layer):
        d = first_dilation if i == 0 else dilation
        block.conv1.stride = (1, 1)
        for conv in (block.conv1, block.conv2):
            conv.dilation = conv.padding = (d, d)
        if block.downsample is not None:
            block.downsample[0].stride = (1, 1)


def dilated_resnet(name: str, in_channels: int = 3) -> nn.Module:
    """torchvision ResNet ``name`` (random weights) at output stride 8, first conv adapted."""
    if name not in _RESNETS:
        raise SegdeepError(f"pspnet backbone {name!r} is not supported; choose one of "
                           f"{', '.join(_RESNETS)}")
    if name in ("resnet18", "resnet34"):
        net = _RESNETS[name](weights=None)
        _dilate_basic_layer(net.layer3, 2, 1)
        _dilate_basic_layer(net.layer4, 4, 2)
    else:
        net = _RESNETS[name](weights=None, replace_stride_with_dilation=[False, True, True])
    net.conv1 = adapt_first_conv(net.conv1, in_channels)
    del net.fc, net.avgpool
    return net


class PyramidPooling(nn.Module):
    """Pool into ``bins`` x ``bins`` grids, reduce, upsample and concatenate with the input."""

    def __init__(self, in_channels: int, bins: Sequence[int] = (1, 2, 3, 6)):
        super().__init__()
        reduced = in_channels // len(bins)
        self.stages = nn.ModuleList(
            nn.Sequential(nn.AdaptiveAvgPool2d(b), nn.Conv2d(in_channels, reduced, 1, bias=False),
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
                 bins: Sequence[int] = (1, 2, 3, 6), head_channels: int = 512,
                 dropout: float = 0.1):
        super().__init__()
        self.backbone = dilated_resnet(backbone, in_channels)
        feat = self.backbone.layer4[-1].conv1.in_channels  # 512 (basic) or 2048 (bottleneck)
        self.ppm = PyramidPooling(feat, bins)
        self.head = nn.Sequential(
            nn.Conv2d(self.ppm.out_channels, head_channels, 3, padding=1, bias=False),
            nn.BatchNorm2d(head_channels), nn.ReLU(inplace=True), nn.Dropout2d(dropout),
            nn.Conv2d(head_channels, num_classes, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b = self.backbone
        y = b.maxpool(b.relu(b.bn1(b.conv1(x))))
        y = b.layer4(b.layer3(b.layer2(b.layer1(y))))
        return upsample_logits(self.head(self.ppm(y)), x.shape[-2:], 8)


@register_model("pspnet", output_stride=8,
                paper="Zhao et al. 2017, Pyramid Scene Parsing Network")
def pspnet(num_classes: int = 21, in_channels: int = 3, **kwargs) -> PSPNet:
    """PSPNet: dilated ResNet (OS 8) and a pyramid pooling module with bins 1, 2, 3, 6."""
    return PSPNet(num_classes, in_channels, **kwargs)
