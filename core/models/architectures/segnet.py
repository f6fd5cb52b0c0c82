"""SegNet (Badrinarayanan, Kendall & Cipolla, TPAMI 2017).

Encoder: the 13 convolutions of VGG16-BN (torchvision's ``vgg16_bn`` layers); each 2x2 max-pool
keeps the positions of its maxima (``MaxPool2d(return_indices=True)``). Decoder: the mirror image;
each stage first *max-unpools* with the indices of the matching encoder pool (values return to where
the maxima were, every other position is 0) and then densifies that sparse map with 3x3
conv-BN-ReLU layers. There is no transposed convolution and no copying of encoder features: only
the indices cross from encoder to decoder. The last 3x3 convolution produces the class scores.

``pretrained``: VGG16-BN ImageNet weights for the encoder (a local torchvision ``vgg16_bn`` state
dict, or ``True`` for the local torch cache), as the paper initialises it.

Inputs whose height or width is not a multiple of 32 are zero-padded on the bottom/right and the
logits cropped back to H x W.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..registry import register_model
from ..vgg import VGG16_STAGE_CHANNELS, pool_indices, vgg16_features, vgg16_state_dict

#: Pooling and unpooling as SegNet uses them (also used by the survey-example test).
POOL_KERNEL = 2


def segnet_pool() -> nn.MaxPool2d:
    """2x2 stride-2 max-pool that also returns the argmax indices."""
    return nn.MaxPool2d(POOL_KERNEL, stride=POOL_KERNEL, return_indices=True)


class MaxUnpool(nn.Module):
    """Max-unpooling with the indices of ``MaxPool2d(return_indices=True)``: each value goes back to
    the flat position its maximum came from, every other position is 0. The same result as
    ``nn.MaxUnpool2d``, written as a scatter so that it also exports to ONNX (``ScatterElements``;
    torch has no ONNX export for ``max_unpool2d``)."""

    def forward(self, x: torch.Tensor, indices: torch.Tensor,
                output_size: Sequence[int]) -> torch.Tensor:
        n, c = x.shape[:2]
        h, w = output_size
        out = x.new_zeros(n, c, h * w).scatter(2, indices.flatten(2), x.flatten(2))
        return out.reshape(n, c, h, w)


def segnet_unpool() -> MaxUnpool:
    """2x2 max-unpool: puts each value back at its encoder argmax, zeros elsewhere."""
    return MaxUnpool()


def _conv_bn_relu(cin: int, cout: int) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]


class SegNet(nn.Module):
    """SegNet with a VGG16-BN encoder; returns N x classes x H x W logits for any H, W."""

    def __init__(self, num_classes: int, in_channels: int = 3, *,
                 pretrained=None, allow_download: bool = False):
        super().__init__()
        state = vgg16_state_dict(pretrained, batch_norm=True, allow_download=allow_download)
        self.features = vgg16_features(batch_norm=True, in_channels=in_channels, state=state)
        pools = pool_indices(self.features)
        for i in pools:
            self.features[i] = segnet_pool()
        starts = [0] + [p + 1 for p in pools[:-1]]
        self._stages = list(zip(starts, pools, strict=True))
        # Decoder stage k mirrors encoder stage k: conv counts 2, 2, 3, 3, 3.
        convs_per_stage = (2, 2, 3, 3, 3)
        self.unpool = segnet_unpool()
        decoders = []
        for k in range(5):
            c = VGG16_STAGE_CHANNELS[k]
            c_out = VGG16_STAGE_CHANNELS[k - 1] if k > 0 else 64
            layers: list[nn.Module] = []
            for j in range(convs_per_stage[k]):
                last = j == convs_per_stage[k] - 1
                if last and k == 0:
                    layers.append(nn.Conv2d(c, num_classes, 3, padding=1))  # the classifier
                else:
                    layers += _conv_bn_relu(c, c_out if last else c)
            decoders.append(nn.Sequential(*layers))
        self.decoders = nn.ModuleList(decoders)
        for m in self.decoders.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        x = F.pad(x, (0, -w % 32, 0, -h % 32))
        indices, sizes = [], []
        for start, pool in self._stages:
            x = self.features[start:pool](x)
            # Plain ints: also lets the ONNX tracer export the unpooling at a fixed tile size.
            sizes.append([int(s) for s in x.shape[-2:]])
            x, idx = self.features[pool](x)
            indices.append(idx)
        for k in reversed(range(5)):
            x = self.decoders[k](self.unpool(x, indices[k], output_size=sizes[k]))
        return x[:, :, :h, :w]


@register_model("segnet", output_stride=1,
                paper="Badrinarayanan, Kendall & Cipolla 2017, SegNet (TPAMI)")
def segnet(num_classes: int = 21, in_channels: int = 3, **kwargs) -> SegNet:
    """SegNet: VGG16-BN encoder, decoder upsampling by max-unpooling with the encoder's indices."""
    return SegNet(num_classes, in_channels, **kwargs)
