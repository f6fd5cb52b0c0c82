"""VGG16 front-ends shared by FCN, SegNet, the dilated context network and DeepLab v1.

The convolutional part is torchvision's own ``vgg16`` / ``vgg16_bn`` ``features`` (built with
``torchvision.models.vgg.make_layers``, no weights downloaded), so parameter names stay
``features.<index>.weight`` and a torchvision VGG16 state dict loads into it unchanged. The
architectures change the layers in place (pool kernels and strides, conv dilations) instead of
re-numbering them. ``fc6`` / ``fc7`` are convolutions, as in a fully convolutional network.

Pretrained weights (``pretrained=``): a local torchvision ``vgg16`` / ``vgg16_bn`` state dict
(``.pth`` read with ``torch.load(weights_only=True)``, or ``.safetensors``), or ``True`` for the
ImageNet weights already in the local torch cache; nothing is downloaded unless
``allow_download=True``. The classifier's ``classifier.0`` / ``classifier.3`` Linear layers become
fc6 / fc7 ("convolutionalized", Long et al.), decimated when the head is smaller (DeepLab-LargeFOV
keeps every 4th channel and every 3rd tap of the 7x7 fc6: 3x3 x 1024).
"""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import urlparse

import torch
import torch.nn as nn
from torchvision.models.vgg import VGG16_BN_Weights, VGG16_Weights, cfgs, make_layers

from ..errors import SegdeepError
from ._utils import adapt_first_conv
from .backbones import _read_state_dict

#: Output channels of the five VGG16 stages (conv1 ... conv5).
VGG16_STAGE_CHANNELS = (64, 128, 256, 512, 512)


def vgg16_state_dict(pretrained: str | os.PathLike | bool | None, *, batch_norm: bool = False,
                     allow_download: bool = False) -> dict[str, torch.Tensor] | None:
    """The torchvision VGG16 (``batch_norm``: VGG16-BN) state dict ``pretrained`` designates.

    ``None`` / ``False``: no weights (``None`` returned). A path: that local file. ``True``: the
    ImageNet weights in the local torch cache, downloaded only when ``allow_download`` is true.
    """
    if pretrained is None or pretrained is False:
        return None
    if pretrained is not True:
        return _read_state_dict(Path(pretrained))
    weights = (VGG16_BN_Weights if batch_norm else VGG16_Weights).DEFAULT
    cached = Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(urlparse(weights.url).path)
    if cached.is_file():
        return _read_state_dict(cached)
    if allow_download:
        return weights.get_state_dict(progress=True)
    name = "vgg16_bn" if batch_norm else "vgg16"
    raise SegdeepError(f"{name}: ImageNet weights are not in the local cache ({cached}); give a local "
                       "file (pretrained='path/to/vgg16.pth') or allow downloading "
                       "(allow_download=True, --allow-download)")


def vgg16_features(*, batch_norm: bool = False, in_channels: int = 3,
                   state: dict[str, torch.Tensor] | None = None) -> nn.Sequential:
    """torchvision's VGG16 (or VGG16-BN) ``features``: 13 convs and 5 max-pools.

    Random weights initialised as torchvision initialises VGG (Kaiming-normal fan-out convs, zero
    biases, unit BN), or the ``features.*`` tensors of ``state`` (a torchvision VGG16 state dict).
    ``in_channels`` other than 3 then adapts the first convolution (multispectral input).
    """
    features = make_layers(cfgs["D"], batch_norm=batch_norm)
    for m in features.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
    if state is not None:
        feat = {k[len("features."):]: v for k, v in state.items() if k.startswith("features.")}
        try:
            features.load_state_dict(feat, strict=True)
        except RuntimeError as exc:
            kind = "VGG16-BN" if batch_norm else "VGG16"
            raise SegdeepError(f"pretrained weights do not match {kind} features "
                               f"({str(exc).splitlines()[0]})") from None
    features[0] = adapt_first_conv(features[0], in_channels)
    return features


def pool_indices(features: nn.Sequential) -> list[int]:
    """Positions of pool1 ... pool5 in a VGG16 ``features`` sequence (also after a pool has been
    replaced, e.g. by ``nn.Identity``)."""
    per_conv = 3 if any(isinstance(m, nn.BatchNorm2d) for m in features) else 2
    idx, pos = [], 0
    for v in cfgs["D"]:
        if v == "M":
            idx.append(pos)
            pos += 1
        else:
            pos += per_conv
    if pos != len(features):
        raise ValueError(f"expected a VGG16 features sequence of {pos} layers, got {len(features)}")
    return idx


def stage_convs(features: nn.Sequential, stage: int) -> list[nn.Conv2d]:
    """The convolutions of ``stage`` (1-based: conv1 ... conv5)."""
    pools = pool_indices(features)
    start = 0 if stage == 1 else pools[stage - 2] + 1
    return [m for m in features[start:pools[stage - 1]] if isinstance(m, nn.Conv2d)]


def dilate_stage(features: nn.Sequential, stage: int, dilation: int) -> None:
    """Give every 3x3 conv of ``stage`` the ``dilation`` (and the padding that keeps the size)."""
    for conv in stage_convs(features, stage):
        conv.dilation = (dilation, dilation)
        conv.padding = (dilation, dilation)


def set_pool(features: nn.Sequential, stage: int, pool: nn.Module) -> None:
    """Replace pool ``stage`` (1-based) by ``pool`` (e.g. a stride-1 pool, or ``nn.Identity()``)."""
    features[pool_indices(features)[stage - 1]] = pool


def fc_convs(*, channels: int = 4096, kernel_size: int = 7, dilation: int = 1, padding: int = 0,
             dropout: float = 0.5, in_channels: int = 512,
             state: dict[str, torch.Tensor] | None = None) -> nn.Sequential:
    """VGG's fc6 / fc7 as convolutions: fc6 ``kernel_size`` x ``kernel_size`` (optionally dilated),
    fc7 1x1, each followed by ReLU and dropout. Weights ~ N(0, 0.01) like torchvision's Linear init,
    or taken from ``state``'s ``classifier.0`` / ``classifier.3`` (see :func:`load_fc_weights`).
    """
    layers = nn.Sequential()
    layers.add_module("fc6", nn.Conv2d(in_channels, channels, kernel_size, padding=padding,
                                       dilation=dilation))
    layers.add_module("relu6", nn.ReLU(inplace=True))
    layers.add_module("drop6", nn.Dropout(dropout))
    layers.add_module("fc7", nn.Conv2d(channels, channels, 1))
    layers.add_module("relu7", nn.ReLU(inplace=True))
    layers.add_module("drop7", nn.Dropout(dropout))
    for conv in (layers.fc6, layers.fc7):
        nn.init.normal_(conv.weight, 0.0, 0.01)
        nn.init.zeros_(conv.bias)
    if state is not None and "classifier.0.weight" in state:
        load_fc_weights(layers, state)
    return layers


def load_fc_weights(fc: nn.Sequential, state: dict[str, torch.Tensor]) -> None:
    """Fill fc6 / fc7 from VGG's ``classifier.0`` (C x 512*7*7) and ``classifier.3`` (C x C).

    The Linear weights are reshaped into a 7x7 convolution; a smaller head is obtained by
    decimation, as DeepLab-LargeFOV does: every (C / channels)-th output (and fc7 input) channel,
    and taps 0, 3, 6 of the 7x7 window for a 3x3 fc6 (tap 3 for 1x1).
    """
    w6, w7 = state["classifier.0.weight"], state["classifier.3.weight"]
    source = w6.shape[0]
    fc6, fc7 = fc.fc6, fc.fc7
    k = fc6.kernel_size[0]
    if (w6.shape[1] != fc6.in_channels * 49 or source % fc6.out_channels or k not in (1, 3, 7)
            or w7.shape != (source, source)):
        raise SegdeepError(f"pretrained VGG classifier ({source} channels, 7x7) cannot initialise "
                           f"a {k}x{k} fc6 with {fc6.out_channels} channels")
    step = source // fc6.out_channels
    taps = {7: slice(None), 3: slice(0, 7, 3), 1: slice(3, 4)}[k]
    with torch.no_grad():
        fc6.weight.copy_(w6.reshape(source, fc6.in_channels, 7, 7)[::step, :, taps, taps])
        fc6.bias.copy_(state["classifier.0.bias"][::step])
        fc7.weight.copy_(w7[::step, ::step, None, None])
        fc7.bias.copy_(state["classifier.3.bias"][::step])
