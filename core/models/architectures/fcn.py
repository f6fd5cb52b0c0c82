"""FCN-32s, FCN-16s and FCN-8s (Long, Shelhamer & Darrell, CVPR 2015), on VGG16.

As in the paper and its reference Caffe nets (``voc-fcn{32,16,8}s``):

* VGG16 made fully convolutional: fc6 is a 7x7 convolution with 4096 channels, fc7 a 1x1 one, both
  with ReLU and dropout 0.5; ``score_fr`` is a 1x1 class-scoring convolution.
* conv1_1 has padding 100 and the pools round up (``ceil_mode``), so that any input size, however
  small, survives fc6's 7x7 window; every upsampled map is then *cropped* at the offsets of the Caffe
  ``Crop`` layers (pool4: 5, pool3: 9, final: 19 / 27 / 31) and the output is exactly H x W.
* Upsampling is a transposed convolution initialised to bilinear interpolation
  (:func:`~segdeep.models._utils.bilinear_kernel`). The 2x "upscore" layers are learned; the final
  32x / 16x / 8x one is fixed to bilinear, as in the paper's experimental framework (set
  ``learn_final_upsampling=True`` to learn it too).
* FCN-16s adds a 1x1 score layer on pool4, FCN-8s one on pool3 as well; these score layers are
  zero-initialised, as is ``score_fr`` ("random initialization yielded neither better performance nor
  faster convergence").

``fc_channels`` (default 4096, the paper's) can be lowered for a light variant: fc6 alone holds 103M
of the 134M parameters. ``pretrained``: VGG16 ImageNet weights (a local torchvision state dict, or
``True`` for the local torch cache; see :mod:`segdeep.models.vgg`), fc6/fc7 included.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from .._utils import bilinear_kernel
from ..registry import register_model
from ..vgg import fc_convs, pool_indices, vgg16_features, vgg16_state_dict

_PAPER = "Long, Shelhamer & Darrell 2015, Fully Convolutional Networks for Semantic Segmentation"


def _upsampling(num_classes: int, factor: int, learned: bool) -> nn.ConvTranspose2d:
    """A ``2 * factor`` kernel, stride ``factor`` transposed conv initialised to bilinear upsampling."""
    up = nn.ConvTranspose2d(num_classes, num_classes, 2 * factor, stride=factor, bias=False)
    with torch.no_grad():
        up.weight.copy_(bilinear_kernel(num_classes, num_classes, 2 * factor))
    up.weight.requires_grad_(learned)
    return up


def _score(in_channels: int, num_classes: int) -> nn.Conv2d:
    conv = nn.Conv2d(in_channels, num_classes, 1)
    nn.init.zeros_(conv.weight)
    nn.init.zeros_(conv.bias)
    return conv


def _crop(x: torch.Tensor, offset: int, like_h: int, like_w: int) -> torch.Tensor:
    return x[:, :, offset:offset + like_h, offset:offset + like_w]


class FCN(nn.Module):
    """FCN on VGG16 with output stride 32, 16 or 8 (``stride``); returns N x classes x H x W logits."""

    def __init__(self, num_classes: int, in_channels: int = 3, *, stride: int = 8,
                 fc_channels: int = 4096, learn_final_upsampling: bool = False,
                 pretrained=None, allow_download: bool = False):
        super().__init__()
        if stride not in (32, 16, 8):
            raise ValueError(f"FCN stride must be 32, 16 or 8, got {stride}")
        self.stride = stride
        state = vgg16_state_dict(pretrained, allow_download=allow_download)
        self.features = vgg16_features(in_channels=in_channels, state=state)
        self.features[0].padding = (100, 100)
        self._pools = pool_indices(self.features)
        for i in self._pools:
            self.features[i].ceil_mode = True
        self.fc = fc_convs(channels=fc_channels, kernel_size=7, padding=0, state=state)
        self.score_fr = _score(fc_channels, num_classes)
        if stride == 32:
            self.upscore = _upsampling(num_classes, 32, learn_final_upsampling)
        else:
            self.upscore2 = _upsampling(num_classes, 2, True)
            self.score_pool4 = _score(512, num_classes)
        if stride == 16:
            self.upscore16 = _upsampling(num_classes, 16, learn_final_upsampling)
        if stride == 8:
            self.upscore_pool4 = _upsampling(num_classes, 2, True)
            self.score_pool3 = _score(256, num_classes)
            self.upscore8 = _upsampling(num_classes, 8, learn_final_upsampling)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        pool3_end, pool4_end = self._pools[2] + 1, self._pools[3] + 1
        pool3 = self.features[:pool3_end](x)
        pool4 = self.features[pool3_end:pool4_end](pool3)
        score = self.score_fr(self.fc(self.features[pool4_end:](pool4)))
        if self.stride == 32:
            return _crop(self.upscore(score), 19, h, w)
        up2 = self.upscore2(score)
        fuse4 = up2 + _crop(self.score_pool4(pool4), 5, up2.shape[-2], up2.shape[-1])
        if self.stride == 16:
            return _crop(self.upscore16(fuse4), 27, h, w)
        up4 = self.upscore_pool4(fuse4)
        fuse3 = up4 + _crop(self.score_pool3(pool3), 9, up4.shape[-2], up4.shape[-1])
        return _crop(self.upscore8(fuse3), 31, h, w)


@register_model("fcn32s", output_stride=32, paper=_PAPER)
def fcn32s(num_classes: int = 21, in_channels: int = 3, **kwargs) -> FCN:
    """FCN-32s: VGG16 fully convolutional, one 32x upsampling of the class scores."""
    return FCN(num_classes, in_channels, stride=32, **kwargs)


@register_model("fcn16s", output_stride=16, paper=_PAPER)
def fcn16s(num_classes: int = 21, in_channels: int = 3, **kwargs) -> FCN:
    """FCN-16s: FCN-32s plus a skip from pool4, fused at stride 16."""
    return FCN(num_classes, in_channels, stride=16, **kwargs)


@register_model("fcn8s", output_stride=8, paper=_PAPER)
def fcn8s(num_classes: int = 21, in_channels: int = 3, **kwargs) -> FCN:
    """FCN-8s: FCN-16s plus a skip from pool3, fused at stride 8."""
    return FCN(num_classes, in_channels, stride=8, **kwargs)
