"""VGG16 front-ends shared by FCN, SegNet, the dilated context network and DeepLab v1.

The convolutional part is torchvision's own ``vgg16`` / ``vgg16_bn`` ``features`` (built with
``torchvision.models.vgg.make_layers``, no weights downloaded), so parameter names stay
``features.<index>.weight`` and a torchvision VGG16 state dict loads into it unchanged. The
architectures change the layers in place (pool kernels and strides, conv dilations) instead of
re-numbering them. ``fc6`` / ``fc7`` are convolutions, as in a fully convolutional network; their
weights can be filled from torchvision's ``classifier.0`` / ``classifier.3`` Linear layers.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn as nn
from torchvision.models.vgg import cfgs, make_layers

from ..errors import SegdeepError
from ._utils import adapt_first_conv

#: Output channels of the five VGG16 stages (conv1 ... conv5).
VGG16_STAGE_CHANNELS = (64, 128, 256, 512, 512)


def vgg16_features(*, batch_norm: bool = False, in_channels: int = 3) -> nn.Sequential:
    """torchvision's VGG16 (or VGG16-BN) ``features``: 13 convs and 5 max-pools, random weights.

    Initialised as torchvision initialises VGG (Kaiming-normal fan-out convs, zero biases, unit BN).
    ``in_channels`` other than 3 adapts the first convolution (multispectral input).
    """
    features = make_layers(cfgs["D"], batch_norm=batch_norm)
    for m in features.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
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
             dropout: float = 0.5, in_channels: int = 512) -> nn.Sequential:
    """VGG's fc6 / fc7 as convolutions: fc6 ``kernel_size`` x ``kernel_size`` (optionally dilated),
    fc7 1x1, each followed by ReLU and dropout. Weights ~ N(0, 0.01) like torchvision's Linear init.
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
    return layers


def load_vgg16_weights(features: nn.Sequential, fc: nn.Sequential | None, path: str | Path) -> None:
    """Fill ``features`` (and ``fc`` when given and shaped like VGG's 4096-channel fc6/fc7) from a
    torchvision ``vgg16`` / ``vgg16_bn`` state dict saved at ``path``.

    The file is read with ``torch.load(weights_only=True)``: nothing in it is executed. The first
    convolution is adapted to the model's input bands; ``classifier.0`` / ``classifier.3`` are
    reshaped into the 7x7 fc6 and 1x1 fc7 convolutions (as Long et al. "convolutionalize" VGG).
    """
    path = Path(path)
    if not path.is_file():
        raise SegdeepError(f"{path}: VGG16 weights file not found (a torchvision vgg16 .pth state dict)")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unpickling failure is a user error here
        raise SegdeepError(f"{path}: not a plain VGG16 state dict ({exc.__class__.__name__}); "
                           "only tensors are accepted (torch.load weights_only=True)") from None
    feat = {k[len("features."):]: v for k, v in state.items() if k.startswith("features.")}
    first = feat.get("0.weight")
    if first is None:
        raise SegdeepError(f"{path}: no 'features.*' keys; expected a torchvision vgg16 state dict")
    if first.shape[1] != features[0].in_channels:
        tmp = nn.Conv2d(first.shape[1], first.shape[0], 3, padding=1)
        with torch.no_grad():
            tmp.weight.copy_(first)
            tmp.bias.copy_(feat["0.bias"])
        new = adapt_first_conv(tmp, features[0].in_channels)
        feat["0.weight"], feat["0.bias"] = new.weight.detach(), new.bias.detach()
    try:
        features.load_state_dict(feat, strict=True)
    except RuntimeError as exc:
        raise SegdeepError(f"{path}: does not match VGG16 features ({exc})") from None
    if fc is not None and "classifier.0.weight" in state:
        w6, w7 = state["classifier.0.weight"], state["classifier.3.weight"]
        if fc.fc6.weight.numel() == w6.numel() and fc.fc7.weight.numel() == w7.numel():
            with torch.no_grad():
                fc.fc6.weight.copy_(w6.reshape(fc.fc6.weight.shape))
                fc.fc6.bias.copy_(state["classifier.0.bias"])
                fc.fc7.weight.copy_(w7.reshape(fc.fc7.weight.shape))
                fc.fc7.bias.copy_(state["classifier.3.bias"])
