"""U-Net (Ronneberger, Fischer & Brox, MICCAI 2015), the baseline annotators expect.

The classic encoder-decoder: ``depth`` levels (5 by default: four 2x2 max-pools); each level is two
3x3 conv-BN-ReLU layers, the number of channels doubles at every level from ``base_channels`` (64 in
the paper: 64, 128, 256, 512, 1024). The expanding path upsamples with a 2x2 stride-2 "up-convolution"
that halves the channels, concatenates the encoder's feature map of the same level (the skip
connection) and applies two 3x3 conv-BN-ReLU layers; a 1x1 convolution gives the class scores.

Differences from the 2015 paper, as in most modern U-Nets: padded ("same") convolutions, so the output
has the input's size instead of shrinking by 184 px, and batch normalisation. Inputs whose height or
width is not a multiple of 2 ** (depth - 1) are zero-padded on the bottom/right and the logits cropped
back to H x W. ``base_channels=16`` or ``32`` gives a light U-Net (1/16 or 1/4 of the parameters).
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from ...errors import SegdeepError
from ..registry import register_model


def double_conv(cin: int, cout: int) -> nn.Sequential:
    """Two 3x3 conv-BN-ReLU layers (the unit of every U-Net level)."""
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True),
        nn.Conv2d(cout, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class UNet(nn.Module):
    """U-Net with ``depth`` levels; returns N x classes x H x W logits for any H, W."""

    def __init__(self, num_classes: int, in_channels: int = 3, *, base_channels: int = 64,
                 depth: int = 5):
        super().__init__()
        if not 2 <= depth <= 7:
            raise SegdeepError(f"unet depth {depth!r} is not supported; use 2 to 7 levels "
                               "(5: the paper's four poolings)")
        if base_channels < 1:
            raise SegdeepError(f"unet base_channels {base_channels!r} must be a positive number of "
                               "channels (64 in the paper; 16 or 32 for a light U-Net)")
        widths = [base_channels * 2**i for i in range(depth)]
        self.multiple = 2 ** (depth - 1)
        self.encoder = nn.ModuleList(
            double_conv(in_channels if i == 0 else widths[i - 1], widths[i]) for i in range(depth))
        self.pool = nn.MaxPool2d(2)
        self.up = nn.ModuleList(
            nn.ConvTranspose2d(widths[i + 1], widths[i], 2, stride=2) for i in range(depth - 1))
        self.decoder = nn.ModuleList(
            double_conv(2 * widths[i], widths[i]) for i in range(depth - 1))
        self.classifier = nn.Conv2d(widths[0], num_classes, 1)
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        x = F.pad(x, (0, -w % self.multiple, 0, -h % self.multiple))
        skips = []
        for i, block in enumerate(self.encoder):
            x = block(x if i == 0 else self.pool(x))
            skips.append(x)
        x = skips.pop()
        for i in reversed(range(len(self.decoder))):
            x = self.decoder[i](torch.cat([skips.pop(), self.up[i](x)], dim=1))
        return self.classifier(x)[:, :, :h, :w]


@register_model("unet", output_stride=1,
                paper="Ronneberger, Fischer & Brox 2015, U-Net (MICCAI)")
def unet(num_classes: int = 21, in_channels: int = 3, **kwargs) -> UNet:
    """U-Net: contracting and expanding paths with skip connections (base_channels, depth)."""
    return UNet(num_classes, in_channels, **kwargs)
