"""RefineNet (Lin et al., CVPR 2017) and Light-Weight RefineNet (Nekrasov et al., BMVC 2018).

A ResNet (torchvision's, through :func:`~segdeep.models.backbones.build_backbone`, output stride 32;
random weights unless ``pretrained`` names a local file or cached ImageNet weights) gives four
feature maps at strides 4, 8, 16 and 32 (``layer1`` .. ``layer4``). The 4-cascaded architecture
refines them from the coarsest up: RefineNet block i takes the features of stage i and the output of
block i + 1 and runs

* **adaptive convolution**: a 3x3 convolution to the path's width (512 for the stride-32 path, 256
  for the others) and two **residual conv units** (RCU: ReLU, 3x3 conv, ReLU, 3x3 conv, + input);
* **multi-resolution fusion**: a 3x3 convolution on each input to the smallest width, the coarser
  one upsampled bilinearly to the finer one's grid, summed;
* **chained residual pooling** (CRP): ReLU, then a chain of four (5x5 max-pool stride 1, 3x3 conv)
  stages whose outputs are all added to the input;
* **output convolution**: three RCUs.

The stride-4 output goes through dropout (0.5) and a 3x3 class convolution; logits are upsampled to
the input size (logit j at input pixel 4j, the ResNet's geometry; between paths the upsampling keeps
the same geometry: :func:`~segdeep.models._align.upsample_logits`). Dropout 0.5 is also applied to
the stride-16 and stride-32 features while training. These counts (2 adaptive RCUs, 4 CRP stages, 3
output RCUs) are those of the authors' released model (``guosheng/refinenet``, as ported to PyTorch by
Nekrasov in ``DrSleep/refinenet-pytorch``): with ResNet-101 and 21 classes, 118,052,437 parameters, exactly
the count of that port (checked against the port, not against a figure in the paper).

The light-weight variant replaces every 3x3 convolution of the decoder (not the classifier) by a 1x1
one and drops the RCUs (``refinenet_lw``; ResNet-50 27,357,525 and ResNet-101 46,349,653 parameters
at 21 classes, exactly those of ``DrSleep/light-weight-refinenet``'s ``rf_lw50`` / ``rf_lw101``).

Not reproduced: the multi-scale input cascade (2-cascaded / 3-cascaded variants over image scales) -
segdeep's test-time multi-scale inference (``--scales``) is the engine's; the upsampling between paths
is geometry-exact (pixel centres) instead of ``align_corners=True`` on the feature-map corners, which
changes no parameter.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from ...errors import SegdeepError
from .._align import upsample_logits
from ..backbones import build_backbone
from ..registry import register_model

_RESNETS = ("resnet18", "resnet34", "resnet50", "resnet101", "resnet152")
_STAGES = ("out", "aux", "mid", "low_level")  # strides 32, 16, 8, 4: the refinement order
_PAPER = "Lin et al. 2017, RefineNet: Multi-Path Refinement Networks for High-Resolution Semantic Segmentation"
_PAPER_LW = "Nekrasov et al. 2018, Light-Weight RefineNet for Real-Time Semantic Segmentation"


def _conv(in_channels: int, out_channels: int, kernel_size: int, bias: bool = False) -> nn.Conv2d:
    return nn.Conv2d(in_channels, out_channels, kernel_size, padding=kernel_size // 2, bias=bias)


class ResidualConvUnit(nn.Module):
    """RCU: ReLU, 3x3 conv (with bias), ReLU, 3x3 conv (without), plus the input."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv1 = _conv(channels, channels, 3, bias=True)
        self.conv2 = _conv(channels, channels, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv2(F.relu(self.conv1(F.relu(x))))


class ChainedResidualPooling(nn.Module):
    """A chain of (5x5 max-pool stride 1, conv) stages; the input plus every stage's output."""

    def __init__(self, channels: int, stages: int = 4, kernel_size: int = 3):
        super().__init__()
        self.pool = nn.MaxPool2d(5, stride=1, padding=2)
        self.convs = nn.ModuleList(_conv(channels, channels, kernel_size) for _ in range(stages))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out, path = x, x
        for conv in self.convs:
            path = conv(self.pool(path))
            out = out + path
        return out


class RefineBlock(nn.Module):
    """One RefineNet block: adaptive convolution of this stage's features, multi-resolution fusion
    with the coarser block's output (if any), chained residual pooling, output RCUs.

    ``in_channels``: the stage's feature channels; ``channels``: the path's width; ``coarser``: the
    width of the coarser block's output, or None for the first (stride-32) block."""

    def __init__(self, in_channels: int, channels: int, coarser: int | None, *, kernel_size: int = 3,
                 adaptive_units: int = 2, output_units: int = 3, pooling_stages: int = 4):
        super().__init__()
        self.reduce = _conv(in_channels, channels, kernel_size)
        self.adapt = nn.Sequential(*(ResidualConvUnit(channels) for _ in range(adaptive_units)))
        self.fuse_self = None if coarser is None else _conv(channels, channels, kernel_size)
        self.fuse_coarser = None if coarser is None else _conv(coarser, channels, kernel_size)
        self.pool = ChainedResidualPooling(channels, pooling_stages, kernel_size)
        self.output = nn.Sequential(*(ResidualConvUnit(channels) for _ in range(output_units)))

    def forward(self, x: torch.Tensor, coarser: torch.Tensor | None = None) -> torch.Tensor:
        x = self.adapt(self.reduce(x))
        if self.fuse_self is not None:
            up = upsample_logits(self.fuse_coarser(coarser), x.shape[-2:], 2)
            x = self.fuse_self(x) + up
        return self.output(self.pool(F.relu(x)))


class RefineNet(nn.Module):
    """4-cascaded RefineNet over a ResNet; returns N x classes x H x W logits.

    ``top_channels``: width of the stride-32 path; ``channels``: width of the others (the paper's
    512 and 256). ``light=True``: Light-Weight RefineNet (1x1 decoder convolutions, no RCUs)."""

    def __init__(self, num_classes: int, in_channels: int = 3, *, backbone: str = "resnet101",
                 light: bool = False, top_channels: int = 512, channels: int = 256,
                 dropout: float = 0.5,
                 pretrained=None, allow_download: bool = False):
        super().__init__()
        if backbone not in _RESNETS:
            raise SegdeepError(f"refinenet backbone {backbone!r} is not supported; choose one of "
                               f"{', '.join(_RESNETS)}")
        self.backbone, stage_channels = build_backbone(
            backbone, in_channels=in_channels, output_stride=32, returns=_STAGES,
            pretrained=pretrained, allow_download=allow_download)
        top, rest = top_channels, channels
        units = dict(kernel_size=1, adaptive_units=0, output_units=0) if light else {}
        blocks, coarser = [], None
        for i, stage in enumerate(_STAGES):
            width = top if i == 0 else rest
            blocks.append(RefineBlock(stage_channels[stage], width, coarser, **units))
            coarser = width
        self.blocks = nn.ModuleList(blocks)
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Conv2d(rest, num_classes, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = self.backbone(x)
        y = None
        for i, (stage, block) in enumerate(zip(_STAGES, self.blocks, strict=True)):
            f = features[stage]
            y = block(self.dropout(f) if i < 2 else f, y)  # dropout on layer4 and layer3
        y = self.classifier(self.dropout(y))
        return upsample_logits(y, x.shape[-2:], 4)


@register_model("refinenet", output_stride=4, paper=_PAPER)
def refinenet(num_classes: int = 21, in_channels: int = 3, **kwargs) -> RefineNet:
    """RefineNet, 4-cascaded over ResNet-101 (or 50/152/18/34): RCUs, multi-resolution fusion, chained residual pooling."""
    return RefineNet(num_classes, in_channels, **kwargs)


@register_model("refinenet_lw", output_stride=4, paper=_PAPER_LW)
def refinenet_lw(num_classes: int = 21, in_channels: int = 3, *, backbone: str = "resnet50",
                 **kwargs) -> RefineNet:
    """Light-Weight RefineNet over ResNet-50 (or 101/152/18/34): 1x1 fusion and pooling convolutions, no RCUs."""
    return RefineNet(num_classes, in_channels, backbone=backbone, light=True, **kwargs)
