"""DeepLab v2, v3 and v3+ on ResNet, MobileNetV3 and Xception backbones.

* ``deeplab_v2`` (Chen et al., TPAMI 2017): dilated ResNet-101 at output stride 8 and ASPP-L, four
  parallel 3x3 atrous convolutions with rates 6, 12, 18 and 24 that each score the classes directly;
  their outputs are *summed*, then upsampled bilinearly. Not reproduced: the multi-scale input fusion
  (max over 1, 0.75, 0.5 scales, a training trick) and the Caffe ResNet's stride on the 1x1 conv
  (torchvision's ResNet strides the 3x3 conv, "ResNet v1.5").
* ``deeplab_v3`` (Chen et al., 2017, "Rethinking atrous convolution"): ResNet at output stride 16 or
  8 with optional multi-grid on the last stage, ASPP with a 1x1 branch, three atrous 3x3 branches and
  image-level pooling, all with batch norm, concatenated and projected to 256 channels. Built from
  torchvision's own pieces with torchvision's parameter names, so the state dicts of torchvision's
  ``deeplabv3_resnet50/101`` and ``deeplabv3_mobilenet_v3_large`` load unchanged (strict) and give the
  same outputs. Defaults are therefore torchvision's: output stride 8 for ResNet (16 for MobileNetV3),
  rates (12, 24, 36), no multi-grid. The paper's own setting is ``output_stride=16,
  multi_grid=(1, 2, 4)`` (rates then default to (6, 12, 18)).
* ``deeplab_v3plus`` (Chen et al., ECCV 2018): the v3 encoder at output stride 16 (or 8) and a
  decoder: the ASPP output is upsampled 4x and concatenated with stride-4 backbone features reduced
  to 48 channels by a 1x1 conv, then two 3x3 convs (256 channels) and the class scores, upsampled 4x.
  Backbones: ResNet, MobileNetV3-Large, or Xception from timm. With Xception the atrous ASPP branches
  and the decoder's 3x3 convolutions are depthwise separable (depthwise conv, BN, ReLU, pointwise
  conv, BN, ReLU), as in the paper's Xception model; ``separable=`` overrides this choice.

Every model's ``forward(x)`` returns N x classes x H x W logits for any H, W.
``forward_with_aux(x)`` also returns the auxiliary head's logits (``None`` without ``aux_loss``).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F
from torchvision.models.segmentation.deeplabv3 import ASPP, DeepLabHead
from torchvision.models.segmentation.fcn import FCNHead

from ...errors import SegdeepError
from ..backbones import BACKBONES, build_backbone, encoder_features
from ..registry import register_model

_V2 = "Chen et al. 2017, DeepLab: Semantic Image Segmentation with Deep Convolutional Nets, Atrous Convolution, and Fully Connected CRFs"
_V3 = "Chen et al. 2017, Rethinking Atrous Convolution for Semantic Image Segmentation"
_V3P = "Chen et al. 2018, Encoder-Decoder with Atrous Separable Convolution for Semantic Image Segmentation"


def _upsample(x: torch.Tensor, size) -> torch.Tensor:
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False)


class SegmentationModel(nn.Module):
    """``backbone`` (dict of maps) -> ``classifier`` on ``"out"``, optional ``aux_classifier`` on
    ``"aux"``; the layout (and parameter names) of torchvision's segmentation models."""

    def __init__(self, backbone: nn.Module, classifier: nn.Module, aux_classifier: nn.Module | None = None):
        super().__init__()
        self.backbone = backbone
        self.classifier = classifier
        self.aux_classifier = aux_classifier

    def forward_with_aux(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(logits, auxiliary logits or ``None``), both N x classes x H x W."""
        size = x.shape[-2:]
        features = self.backbone(x)
        out = _upsample(self.classifier(features["out"]), size)
        aux = None
        if self.aux_classifier is not None:
            aux = _upsample(self.aux_classifier(features["aux"]), size)
        return out, aux

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        size = x.shape[-2:]
        return _upsample(self.classifier(self.backbone(x)["out"]), size)


def default_output_stride(backbone: str) -> int:
    """torchvision's choice: 16 for MobileNetV3 (its dilated last stage), 8 for ResNet."""
    return 16 if backbone.startswith("mobilenet") else 8


def default_atrous_rates(backbone: str, output_stride: int) -> tuple[int, int, int]:
    """(6, 12, 18) at output stride 16, doubled at 8, halved at 32 (the paper's rule), except that
    MobileNetV3 keeps torchvision's (12, 24, 36) at 16 so its weights give the same outputs."""
    if backbone.startswith("mobilenet") and output_stride == 16:
        return (12, 24, 36)
    factor = 16 // output_stride if output_stride <= 16 else 0.5
    return tuple(int(r * factor) for r in (6, 12, 18))


def _check_backbone(backbone: str, allowed: Sequence[str], arch: str) -> None:
    if backbone not in allowed:
        raise SegdeepError(f"{arch} backbone {backbone!r} is not supported; choose one of {', '.join(allowed)}")


# --------------------------------------------------------------------------------------- v2

class ASPPSum(nn.Module):
    """DeepLab v2's ASPP-L: parallel 3x3 atrous convolutions to class scores, summed."""

    def __init__(self, in_channels: int, num_classes: int, rates: Sequence[int] = (6, 12, 18, 24)):
        super().__init__()
        self.branches = nn.ModuleList(
            nn.Conv2d(in_channels, num_classes, 3, padding=r, dilation=r) for r in rates)
        for conv in self.branches:  # as the reference prototxt: gaussian std 0.01, bias 0
            nn.init.normal_(conv.weight, 0.0, 0.01)
            nn.init.zeros_(conv.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.branches[0](x)
        for branch in self.branches[1:]:
            out = out + branch(x)
        return out


@register_model("deeplab_v2", output_stride="8 (or 16)", paper=_V2)
def deeplab_v2(num_classes: int = 21, in_channels: int = 3, *, backbone: str = "resnet101",
               output_stride: int = 8, atrous_rates: Sequence[int] = (6, 12, 18, 24),
               pretrained=None, allow_download: bool = False) -> SegmentationModel:
    """DeepLab v2: dilated ResNet-101 (or -50) and ASPP-L, four atrous branches (6, 12, 18, 24) summed."""
    _check_backbone(backbone, ("resnet50", "resnet101", "resnet18", "resnet34"), "deeplab_v2")
    body, channels = build_backbone(backbone, in_channels=in_channels, output_stride=output_stride,
                                    pretrained=pretrained, allow_download=allow_download)
    return SegmentationModel(body, ASPPSum(channels["out"], num_classes, atrous_rates))


# --------------------------------------------------------------------------------------- v3

@register_model("deeplab_v3", output_stride="8 or 16", paper=_V3)
def deeplab_v3(num_classes: int = 21, in_channels: int = 3, *, backbone: str = "resnet50",
               output_stride: int | None = None, multi_grid: Sequence[int] | None = None,
               atrous_rates: Sequence[int] | None = None, aux_loss: bool = False,
               pretrained=None, allow_download: bool = False) -> SegmentationModel:
    """DeepLab v3: dilated backbone, ASPP with image pooling and BN; torchvision-compatible weights."""
    _check_backbone(backbone, BACKBONES, "deeplab_v3")
    output_stride = output_stride or default_output_stride(backbone)
    rates = tuple(atrous_rates or default_atrous_rates(backbone, output_stride))
    returns = ("out", "aux") if aux_loss else ("out",)
    body, channels = build_backbone(backbone, in_channels=in_channels, output_stride=output_stride,
                                    multi_grid=multi_grid, returns=returns, pretrained=pretrained,
                                    allow_download=allow_download)
    aux = FCNHead(channels["aux"], num_classes) if aux_loss else None
    return SegmentationModel(body, DeepLabHead(channels["out"], num_classes, rates), aux)


# --------------------------------------------------------------------------------------- v3+

def separable_conv(in_channels: int, out_channels: int, dilation: int = 1) -> nn.Sequential:
    """3x3 depthwise (atrous) conv + BN + ReLU, then 1x1 pointwise conv + BN + ReLU."""
    return nn.Sequential(
        nn.Conv2d(in_channels, in_channels, 3, padding=dilation, dilation=dilation, groups=in_channels,
                  bias=False),
        nn.BatchNorm2d(in_channels), nn.ReLU(inplace=True),
        nn.Conv2d(in_channels, out_channels, 1, bias=False),
        nn.BatchNorm2d(out_channels), nn.ReLU(inplace=True))


def _conv3x3(in_channels: int, out_channels: int, separable: bool) -> nn.Sequential:
    if separable:
        return separable_conv(in_channels, out_channels)
    return nn.Sequential(nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False),
                         nn.BatchNorm2d(out_channels), nn.ReLU(inplace=True))


class DeepLabV3Plus(nn.Module):
    """Encoder (backbone + ASPP) and the v3+ decoder fusing stride-4 features."""

    def __init__(self, num_classes: int, in_channels: int = 3, *, backbone: str = "resnet50",
                 output_stride: int = 16, multi_grid: Sequence[int] | None = None,
                 atrous_rates: Sequence[int] | None = None, low_level_channels: int = 48,
                 decoder_channels: int = 256, separable: bool | None = None,
                 pretrained=None, allow_download: bool = False):
        super().__init__()
        _check_backbone(backbone, BACKBONES, "deeplab_v3plus")
        if output_stride not in (8, 16):
            raise SegdeepError(f"deeplab_v3plus output_stride {output_stride!r} is not supported; use 16 or 8")
        rates = tuple(atrous_rates or default_atrous_rates("", output_stride))
        self.backbone, low_ch, high_ch = encoder_features(
            backbone, in_channels=in_channels, output_stride=output_stride, multi_grid=multi_grid,
            pretrained=pretrained, allow_download=allow_download)
        separable = backbone.startswith("xception") if separable is None else bool(separable)
        self.aspp = ASPP(high_ch, rates, decoder_channels)
        if separable:  # branches 1..3 are the atrous 3x3 ones (0: 1x1, last: image pooling)
            for i, rate in enumerate(rates, start=1):
                self.aspp.convs[i] = separable_conv(high_ch, decoder_channels, rate)
        self.project = nn.Sequential(
            nn.Conv2d(low_ch, low_level_channels, 1, bias=False),
            nn.BatchNorm2d(low_level_channels), nn.ReLU(inplace=True))
        self.decoder = nn.Sequential(
            _conv3x3(decoder_channels + low_level_channels, decoder_channels, separable),
            _conv3x3(decoder_channels, decoder_channels, separable))
        self.classifier = nn.Conv2d(decoder_channels, num_classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        size = x.shape[-2:]
        features = self.backbone(x)
        low = self.project(features["low_level"])
        high = _upsample(self.aspp(features["out"]), low.shape[-2:])
        y = self.classifier(self.decoder(torch.cat([high, low], dim=1)))
        return _upsample(y, size)


@register_model("deeplab_v3plus", output_stride="16 or 8", paper=_V3P)
def deeplab_v3plus(num_classes: int = 21, in_channels: int = 3, **kwargs) -> DeepLabV3Plus:
    """DeepLab v3+: v3 encoder and a decoder fusing 48-channel stride-4 features."""
    return DeepLabV3Plus(num_classes, in_channels, **kwargs)
