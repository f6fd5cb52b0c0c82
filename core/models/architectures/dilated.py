"""Multi-scale context aggregation by dilated convolutions (Yu & Koltun, ICLR 2016).

Front-end: VGG16 with pool4 and pool5 removed; the conv5 layers are dilated by 2 and fc6 (a 7x7
convolution, 4096 channels) by 4, so the class scores come out at output stride 8 with the receptive
field the pools used to give. (The paper uses unpadded convolutions on a reflection-padded input; here
the convolutions are padded to keep the size, which gives the same layers and the same stride.)

Context module ("basic"): C = num_classes channels in and out; seven 3x3 convolutions with dilations
1, 1, 2, 4, 8, 16, 1, each followed by ReLU ("truncation"), then a 1x1 convolution. The receptive field
grows exponentially (67x67 for the seven layers) while the resolution stays the same. Every layer is
initialised to the identity (centre tap 1 on its own channel, everything else 0), so before training
the module passes the front-end's scores through unchanged.

The logits are upsampled bilinearly (8x) to the input size. Inputs whose height or width is not a
multiple of 8 are zero-padded on the bottom/right first and the logits cropped back to H x W.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..registry import register_model
from ..vgg import dilate_stage, fc_convs, set_pool, vgg16_features, vgg16_state_dict

#: Dilations of the basic context module's 3x3 layers (Yu & Koltun, Table 1).
CONTEXT_DILATIONS = (1, 1, 2, 4, 8, 16, 1)


def identity_init_(conv: nn.Conv2d) -> None:
    """Yu & Koltun's identity initialisation: w(t, a) = 1[t = 0] 1[a = b], zero bias."""
    with torch.no_grad():
        conv.weight.zero_()
        kh, kw = conv.kernel_size
        for c in range(min(conv.in_channels, conv.out_channels)):
            conv.weight[c, c, kh // 2, kw // 2] = 1.0
        if conv.bias is not None:
            conv.bias.zero_()


def context_layer(channels: int, dilation: int) -> nn.Sequential:
    """One context-module layer: 3x3 conv with ``dilation`` (size-preserving padding) + ReLU."""
    conv = nn.Conv2d(channels, channels, 3, padding=dilation, dilation=dilation)
    identity_init_(conv)
    return nn.Sequential(conv, nn.ReLU(inplace=True))


class ContextModule(nn.Sequential):
    """The basic context-aggregation module: dilated 3x3 layers (+ReLU), then a 1x1 convolution.

    ``final_1x1=False`` leaves out the last 1x1 layer (used to study the stacked 3x3 layers alone).
    """

    def __init__(self, channels: int, dilations: Sequence[int] = CONTEXT_DILATIONS, *,
                 final_1x1: bool = True):
        layers = [context_layer(channels, d) for d in dilations]
        if final_1x1:
            last = nn.Conv2d(channels, channels, 1)
            identity_init_(last)
            layers.append(last)
        super().__init__(*layers)


class DilatedNet(nn.Module):
    """Front-end (+ context module) of Yu & Koltun; returns N x classes x H x W logits."""

    def __init__(self, num_classes: int, in_channels: int = 3, *, context: bool = True,
                 fc_channels: int = 4096, pretrained=None, allow_download: bool = False):
        super().__init__()
        state = vgg16_state_dict(pretrained, allow_download=allow_download)
        self.features = vgg16_features(in_channels=in_channels, state=state)
        set_pool(self.features, 5, nn.Identity())
        set_pool(self.features, 4, nn.Identity())
        dilate_stage(self.features, 5, 2)
        self.fc = fc_convs(channels=fc_channels, kernel_size=7, dilation=4, padding=12, state=state)
        self.score = nn.Conv2d(fc_channels, num_classes, 1)
        nn.init.normal_(self.score.weight, 0.0, 0.01)
        nn.init.zeros_(self.score.bias)
        self.context = ContextModule(num_classes) if context else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        x = F.pad(x, (0, -w % 8, 0, -h % 8))
        y = self.context(self.score(self.fc(self.features(x))))
        y = F.interpolate(y, scale_factor=8, mode="bilinear", align_corners=False)
        return y[:, :, :h, :w]


@register_model("dilated", output_stride=8,
                paper="Yu & Koltun 2016, Multi-Scale Context Aggregation by Dilated Convolutions")
def dilated(num_classes: int = 21, in_channels: int = 3, **kwargs) -> DilatedNet:
    """Dilated front-end (VGG16, OS 8) plus the basic context-aggregation module."""
    return DilatedNet(num_classes, in_channels, **kwargs)
