"""GCN, "Large Kernel Matters" (Peng et al., CVPR 2017): global convolutional network.

A ResNet (torchvision's, through :func:`~segdeep.models.backbones.build_backbone`, output stride 32;
random weights unless ``pretrained`` names a local file or cached ImageNet weights) gives four
feature maps at strides 4, 8, 16 and 32 (``res-2`` .. ``res-5``). On each, a **global convolution
block** turns the features directly into class score maps with a large k x k receptive field at the
cost of 2k weights per channel pair: the sum of a (k x 1 then 1 x k) and a (1 x k then k x 1)
branch, no non-linearity (k = 15 by default, the paper's best). Each score map then goes through a
**boundary refinement** block (a residual branch of 3x3 conv, ReLU, 3x3 conv, added to the scores).

The paper's decoder (its Figure 2): from the coarsest stage, the refined scores are upsampled 2x and
added to the next finer stage's refined scores, the sum refined again; after the stride-4 stage, two
more (upsample 2x, boundary refinement) steps reach the input's resolution. The paper upsamples with
deconvolution: ``upsample="deconv"`` (default) is a learned 3x3 transposed convolution of stride 2
initialised as bilinear interpolation; ``"bilinear"`` is fixed bilinear interpolation, as in the
PyTorch port ``ZijunDeng/pytorch-semantic-segmentation`` (``models/gcn.py``). Both keep the ResNet's
pixel geometry (feature j of a stride-s map is centred on input pixel s j), so any input size works.

Backbone: ``resnet50`` by default (the paper's ablations), ``resnet152`` its final model, ``resnet101``;
``resnet18`` / ``resnet34`` are light options. With ResNet-152, k = 7, bilinear upsampling and 21 classes the network has
59,369,620 parameters, exactly the count of the PyTorch port above; the paper gives no parameter count.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from ...errors import SegdeepError
from .._align import upsample_logits
from .._utils import bilinear_kernel
from ..backbones import build_backbone
from ..registry import register_model

_RESNETS = ("resnet18", "resnet34", "resnet50", "resnet101", "resnet152")
_STAGES = ("out", "aux", "mid", "low_level")  # strides 32, 16, 8, 4: the decoding order
_PAPER = "Peng et al. 2017, Large Kernel Matters: Improve Semantic Segmentation by Global Convolutional Network"


class GlobalConvolution(nn.Module):
    """(k x 1, 1 x k) + (1 x k, k x 1) convolutions from ``in_channels`` to ``out_channels``."""

    def __init__(self, in_channels: int, out_channels: int, k: int = 15):
        super().__init__()
        if k < 1 or k % 2 == 0:
            raise SegdeepError(f"gcn kernel size k={k!r} must be a positive odd number (e.g. 15)")
        p = k // 2
        self.left = nn.Sequential(nn.Conv2d(in_channels, out_channels, (k, 1), padding=(p, 0)),
                                  nn.Conv2d(out_channels, out_channels, (1, k), padding=(0, p)))
        self.right = nn.Sequential(nn.Conv2d(in_channels, out_channels, (1, k), padding=(0, p)),
                                   nn.Conv2d(out_channels, out_channels, (k, 1), padding=(p, 0)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.left(x) + self.right(x)


class BoundaryRefinement(nn.Module):
    """Scores plus a residual branch: 3x3 conv, ReLU, 3x3 conv."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv2(F.relu(self.conv1(x)))


class Upsample2x(nn.Module):
    """2x upsampling to a given size (at most twice the input's), pixel j going to 2j.

    ``learned=True``: a 3x3 transposed convolution of stride 2 initialised as bilinear
    interpolation (the last row and column are replicated first, so that the edge is interpolated
    like the inside); ``False``: :func:`~segdeep.models._align.upsample_logits` with stride 2."""

    def __init__(self, channels: int, learned: bool = True):
        super().__init__()
        self.deconv = None
        if learned:
            self.deconv = nn.ConvTranspose2d(channels, channels, 3, stride=2, padding=1)
            with torch.no_grad():
                self.deconv.weight.copy_(bilinear_kernel(channels, channels, 3))
                self.deconv.bias.zero_()

    def forward(self, x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        if self.deconv is None:
            return upsample_logits(x, size, 2)
        h, w = size
        if h > 2 * x.shape[-2] or w > 2 * x.shape[-1]:
            raise ValueError(f"cannot upsample {tuple(x.shape[-2:])} by 2 to {h}x{w}")
        y = self.deconv(F.pad(x, (0, 1, 0, 1), mode="replicate"))  # 2n + 1 pixels
        return y[:, :, :h, :w]


class GCN(nn.Module):
    """ResNet + global convolution blocks + boundary refinement; N x classes x H x W logits."""

    def __init__(self, num_classes: int, in_channels: int = 3, *, backbone: str = "resnet50",
                 k: int = 15, upsample: str = "deconv", pretrained=None, allow_download: bool = False):
        super().__init__()
        if backbone not in _RESNETS:
            raise SegdeepError(f"gcn backbone {backbone!r} is not supported; choose one of {', '.join(_RESNETS)}")
        if upsample not in ("deconv", "bilinear"):
            raise SegdeepError(f"gcn upsample {upsample!r} is not supported; use 'deconv' or 'bilinear'")
        self.backbone, channels = build_backbone(
            backbone, in_channels=in_channels, output_stride=32, returns=_STAGES,
            pretrained=pretrained, allow_download=allow_download)
        self.gcn = nn.ModuleList(GlobalConvolution(channels[s], num_classes, k) for s in _STAGES)
        self.refine_stage = nn.ModuleList(BoundaryRefinement(num_classes) for _ in _STAGES)
        # After each sum with a finer stage (3), and after the upsampling to strides 2 and 1 (2).
        self.refine_fused = nn.ModuleList(BoundaryRefinement(num_classes) for _ in range(5))
        self.up = nn.ModuleList(Upsample2x(num_classes, upsample == "deconv") for _ in range(5))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = self.backbone(x)
        scores = [br(g(features[s])) for s, g, br in zip(_STAGES, self.gcn, self.refine_stage, strict=True)]
        y = scores[0]
        for i, finer in enumerate(scores[1:]):
            y = self.refine_fused[i](self.up[i](y, finer.shape[-2:]) + finer)
        h, w = x.shape[-2:]
        half = ((h + 1) // 2, (w + 1) // 2)  # the stride-2 grid of the ResNet's first convolution
        y = self.refine_fused[3](self.up[3](y, half))
        return self.refine_fused[4](self.up[4](y, (h, w)))


@register_model("gcn", output_stride=1, paper=_PAPER)
def gcn(num_classes: int = 21, in_channels: int = 3, **kwargs) -> GCN:
    """GCN: ResNet-50 (or 101/152/18/34), k x 1 + 1 x k global convolution blocks (k=15), boundary refinement, deconvolution decoder."""
    return GCN(num_classes, in_channels, **kwargs)
