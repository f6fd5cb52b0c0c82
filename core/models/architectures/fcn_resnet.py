"""FCN on a dilated ResNet-50/101, as torchvision's ``fcn_resnet50`` / ``fcn_resnet101``.

The ResNet runs at output stride 8 (layer3 and layer4 dilated instead of strided); the head is
torchvision's ``FCNHead``: a 3x3 conv to a quarter of the channels, batch norm, ReLU, dropout 0.1 and
a 1x1 class convolution; the scores are upsampled bilinearly to the input size. With
``aux_loss=True`` a second head scores layer3 (for an auxiliary training loss). Parameter names are
torchvision's, so its state dicts load unchanged and give the same outputs. This is torchvision's
modernised FCN, not the paper's VGG16 FCN (that one is ``fcn8s`` / ``fcn16s`` / ``fcn32s``).
"""

from __future__ import annotations

from torchvision.models.segmentation.fcn import FCNHead

from ..backbones import build_backbone
from ..registry import register_model
from .deeplab import SegmentationModel

_PAPER = "Long, Shelhamer & Darrell 2015 (torchvision's ResNet variant)"


def _fcn_resnet(backbone: str, num_classes: int, in_channels: int, aux_loss: bool,
                output_stride: int, pretrained, allow_download: bool) -> SegmentationModel:
    returns = ("out", "aux") if aux_loss else ("out",)
    body, channels = build_backbone(backbone, in_channels=in_channels, output_stride=output_stride,
                                    returns=returns, pretrained=pretrained, allow_download=allow_download)
    aux = FCNHead(channels["aux"], num_classes) if aux_loss else None
    return SegmentationModel(body, FCNHead(channels["out"], num_classes), aux)


@register_model("fcn_resnet50", output_stride=8, paper=_PAPER)
def fcn_resnet50(num_classes: int = 21, in_channels: int = 3, *, aux_loss: bool = False,
                 output_stride: int = 8, pretrained=None, allow_download: bool = False) -> SegmentationModel:
    """FCN with a dilated ResNet-50 (torchvision's fcn_resnet50; its weights load unchanged)."""
    return _fcn_resnet("resnet50", num_classes, in_channels, aux_loss, output_stride, pretrained, allow_download)


@register_model("fcn_resnet101", output_stride=8, paper=_PAPER)
def fcn_resnet101(num_classes: int = 21, in_channels: int = 3, *, aux_loss: bool = False,
                  output_stride: int = 8, pretrained=None, allow_download: bool = False) -> SegmentationModel:
    """FCN with a dilated ResNet-101 (torchvision's fcn_resnet101; its weights load unchanged)."""
    return _fcn_resnet("resnet101", num_classes, in_channels, aux_loss, output_stride, pretrained, allow_download)
