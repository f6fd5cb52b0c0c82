"""DeepLab v1, DeepLab-LargeFOV variant (Chen et al., ICLR 2015).

VGG16 with atrous ("hole") convolution, as in the reference ``DeepLab-LargeFOV`` Caffe net:

* every max-pool is 3x3 with padding 1; pool1-pool3 keep stride 2, pool4 and pool5 have stride 1,
  so the output stride is 8;
* conv5_1 ... conv5_3 are dilated by 2 (they follow pool4, which no longer subsamples);
* LargeFOV head: fc6 is a 3x3 convolution with dilation 12 and 1024 channels (instead of 7x7x4096),
  fc7 a 1x1 convolution with 1024 channels, each with ReLU and dropout 0.5, then fc8 (1x1) scores;
* ``pretrained`` VGG16 ImageNet weights initialise it as in the paper: fc6/fc7 decimated from
  VGG's 4096-channel 7x7 fc6 (every 4th channel, every 3rd tap);
* the stride-8 logits are upsampled bilinearly to the input size, logit j at input pixel 8j as in
  DeepLab's ``Interp`` layer (:func:`~segdeep.models._align.upsample_logits`). DeepLab then refines
  them with a fully connected CRF (``segdeep.dense_crf``), which is not part of the network.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from .._align import upsample_logits
from ..registry import register_model
from ..vgg import dilate_stage, fc_convs, pool_indices, vgg16_features, vgg16_state_dict


class DeepLabV1(nn.Module):
    """DeepLab-LargeFOV; returns N x classes x H x W logits for any H, W."""

    def __init__(self, num_classes: int, in_channels: int = 3, *, fc_channels: int = 1024,
                 rate: int = 12, pretrained=None, allow_download: bool = False):
        super().__init__()
        state = vgg16_state_dict(pretrained, allow_download=allow_download)
        self.features = vgg16_features(in_channels=in_channels, state=state)
        for stage, i in enumerate(pool_indices(self.features), start=1):
            self.features[i] = nn.MaxPool2d(3, stride=2 if stage <= 3 else 1, padding=1)
        dilate_stage(self.features, 5, 2)
        self.fc = fc_convs(channels=fc_channels, kernel_size=3, dilation=rate, padding=rate,
                           state=state)
        self.fc8 = nn.Conv2d(fc_channels, num_classes, 1)
        nn.init.normal_(self.fc8.weight, 0.0, 0.01)
        nn.init.zeros_(self.fc8.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return upsample_logits(self.fc8(self.fc(self.features(x))), x.shape[-2:], 8)


@register_model("deeplab_v1", output_stride=8,
                paper="Chen et al. 2015, Semantic Image Segmentation with Deep Convolutional Nets "
                      "and Fully Connected CRFs (DeepLab-LargeFOV)")
def deeplab_v1(num_classes: int = 21, in_channels: int = 3, **kwargs) -> DeepLabV1:
    """DeepLab v1 LargeFOV: atrous VGG16 (OS 8), fc6 3x3 dilation 12 with 1024 channels."""
    return DeepLabV1(num_classes, in_channels, **kwargs)
