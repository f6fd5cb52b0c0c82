"""Feature extractors for the ResNet / MobileNetV3 / Xception based architectures.

:func:`build_backbone` turns a classification network into a module that returns a dict of feature
maps, like torchvision's ``IntermediateLayerGetter`` (and, for the torchvision networks, it *is* one,
so parameter names are torchvision's: ``conv1.weight``, ``layer4.2.conv2.weight``, ``0.0.weight``...).
The keys it can return:

* ``"out"``: the last feature map (output stride ``output_stride``),
* ``"aux"``: the stage before (ResNet ``layer3``, MobileNetV3 C2 at stride 8), for auxiliary heads,
* ``"mid"``: stride-8 features (ResNet ``layer2``; ResNets only), for decoders that fuse every stage
  (RefineNet, GCN),
* ``"low_level"``: stride-4 features for the DeepLab v3+ decoder (ResNet ``layer1``).

Backbones: ``resnet18``, ``resnet34``, ``resnet50``, ``resnet101``, ``resnet152`` and ``mobilenet_v3_large`` from
torchvision; ``xception41``, ``xception65``, ``xception71`` from timm (``features_only``).
The output stride (32, 16 or 8 pixels of input per feature pixel) is obtained by dilation instead of
striding, the way torchvision's ``replace_stride_with_dilation`` does; DeepLab v3's multi-grid
multiplies the dilation of the last stage's successive blocks by ``multi_grid`` (e.g. (1, 2, 4)).

Weights are random unless ``pretrained`` is given: a path to a local state dict (``.safetensors`` or a
``.pth`` read with ``torch.load(weights_only=True)``), or ``True`` for the standard ImageNet weights
when they already are in the local torch / timm cache. Nothing is downloaded unless
``allow_download=True`` is passed explicitly. ``in_channels`` other than 3 adapts the first
convolution *after* loading weights (:func:`~segdeep.models._utils.adapt_first_conv`).
"""

from __future__ import annotations

import os
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path
from urllib.parse import urlparse

import torch
import torch.nn as nn
from torchvision.models import mobilenetv3, resnet
from torchvision.models._utils import IntermediateLayerGetter

from ..errors import SegdeepError
from ._utils import adapt_first_conv

_RESNETS = {
    "resnet18": (resnet.resnet18, resnet.ResNet18_Weights),
    "resnet34": (resnet.resnet34, resnet.ResNet34_Weights),
    "resnet50": (resnet.resnet50, resnet.ResNet50_Weights),
    "resnet101": (resnet.resnet101, resnet.ResNet101_Weights),
    "resnet152": (resnet.resnet152, resnet.ResNet152_Weights),
}
_TIMM = ("xception41", "xception65", "xception71")
BACKBONES: tuple[str, ...] = (*_RESNETS, "mobilenet_v3_large", *_TIMM)
FEATURES = ("out", "aux", "mid", "low_level")


def _check(name: str, output_stride: int, returns: Sequence[str]) -> None:
    if name not in BACKBONES:
        raise SegdeepError(f"backbone {name!r} is not supported; choose one of {', '.join(BACKBONES)}")
    if output_stride not in (8, 16, 32):
        raise SegdeepError(f"output_stride {output_stride!r} is not supported; use 8, 16 or 32")
    bad = [r for r in returns if r not in FEATURES]
    if bad:
        raise SegdeepError(f"backbone features {bad} are not known; choose from {', '.join(FEATURES)}")
    if "mid" in returns and name not in _RESNETS:
        raise SegdeepError(f"backbone {name!r} does not give stride-8 ('mid') features; choose one of "
                           f"{', '.join(_RESNETS)}")


# --------------------------------------------------------------------------------------- weights

def _read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """Tensors from a local file; nothing in it is executed (safetensors or weights_only)."""
    if not path.is_file():
        raise SegdeepError(f"{path}: pretrained weights file not found (a .safetensors or .pth state dict)")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            return load_file(str(path))
        except Exception as exc:  # noqa: BLE001 - a broken file is a user error
            raise SegdeepError(f"{path}: not a readable safetensors file ({exc})") from None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unpickling failure is a user error here
        raise SegdeepError(f"{path}: not a plain state dict ({exc.__class__.__name__}); only tensors are "
                           "accepted (torch.load weights_only=True), nothing in it is run") from None
    for key in ("state_dict", "model"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise SegdeepError(f"{path}: expected a dict of tensors (a state dict)")
    return state


def _load_into(net: nn.Module, state: dict[str, torch.Tensor], where: str, ignore: tuple[str, ...]) -> None:
    """Strictly load ``state`` into ``net``; keys starting with ``ignore`` (the classifier) may be
    extra; a segmentation model's ``backbone.*`` keys are used when present."""
    if any(k.startswith("backbone.") for k in state):
        state = {k[len("backbone."):]: v for k, v in state.items() if k.startswith("backbone.")}
    missing, unexpected = net.load_state_dict(state, strict=False)
    unexpected = [k for k in unexpected if not k.startswith(ignore)]
    if missing or unexpected:
        raise SegdeepError(f"{where}: does not match the backbone (missing {missing[:3]}, "
                           f"unexpected {unexpected[:3]})")


def _torchvision_weights(net: nn.Module, name: str, pretrained, allow_download: bool, ignore) -> None:
    if pretrained is None or pretrained is False:
        return
    if pretrained is not True:
        path = Path(pretrained)
        try:
            _load_into(net, _read_state_dict(path), str(path), ignore)
        except RuntimeError as exc:  # shape mismatch
            raise SegdeepError(f"{path}: does not match backbone {name} ({str(exc).splitlines()[-1]})") from None
        return
    enum = _RESNETS[name][1] if name in _RESNETS else mobilenetv3.MobileNet_V3_Large_Weights
    weights = enum.DEFAULT
    cached = Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(urlparse(weights.url).path)
    if cached.is_file():
        state = _read_state_dict(cached)
    elif allow_download:
        state = weights.get_state_dict(progress=True)
    else:
        raise SegdeepError(f"backbone {name}: ImageNet weights are not in the local cache ({cached}); "
                           "give a local file (pretrained='path/to/weights.pth') or allow downloading "
                           "(allow_download=True, --allow-download)")
    _load_into(net, state, str(cached), ignore)


# --------------------------------------------------------------------------------------- ResNet

def _set_dilation(conv: nn.Conv2d, dilation: int) -> None:
    conv.dilation = (dilation, dilation)
    conv.padding = (dilation * (conv.kernel_size[0] // 2),) * 2


def _dilate_basic_layer(layer: nn.Sequential, dilation: int, previous: int) -> None:
    """torchvision's ``replace_stride_with_dilation`` rule for BasicBlocks (which torchvision refuses):
    the first block loses its stride and keeps the previous dilation, the next ones use ``dilation``."""
    for i, block in enumerate(layer):
        block.conv1.stride = (1, 1)
        for conv in (block.conv1, block.conv2):
            _set_dilation(conv, previous if i == 0 else dilation)
        if block.downsample is not None:
            block.downsample[0].stride = (1, 1)


def _apply_multi_grid(layer4: nn.Sequential, base: int, multi_grid: Sequence[int]) -> None:
    """DeepLab v3 multi-grid: block i of the last stage uses dilation ``base * multi_grid[i]``."""
    if len(multi_grid) != len(layer4):
        raise SegdeepError(f"multi_grid {tuple(multi_grid)} needs {len(layer4)} values, one per block "
                           "of the last stage (e.g. (1, 2, 4))")
    for block, unit in zip(layer4, multi_grid, strict=True):
        convs = [block.conv2] if isinstance(block, resnet.Bottleneck) else [block.conv1, block.conv2]
        for conv in convs:
            _set_dilation(conv, base * int(unit))


def _resnet(name, in_channels, output_stride, multi_grid, returns, pretrained, allow_download):
    builder = _RESNETS[name][0]
    dilate = {32: [False, False, False], 16: [False, False, True], 8: [False, True, True]}[output_stride]
    bottleneck = name in ("resnet50", "resnet101", "resnet152")
    net = builder(weights=None, replace_stride_with_dilation=dilate if bottleneck else None)
    if not bottleneck:
        previous = 1
        for layer, d in zip((net.layer2, net.layer3, net.layer4), dilate, strict=True):
            if d:
                _dilate_basic_layer(layer, previous * 2, previous)
                previous *= 2
    _torchvision_weights(net, name, pretrained, allow_download, ignore=("fc.",))
    if multi_grid is not None:
        _apply_multi_grid(net.layer4, 32 // output_stride, multi_grid)
    net.conv1 = adapt_first_conv(net.conv1, in_channels)
    expansion = 4 if bottleneck else 1
    layers = {"out": "layer4", "aux": "layer3", "mid": "layer2", "low_level": "layer1"}
    channels = {"out": 512 * expansion, "aux": 256 * expansion, "mid": 128 * expansion,
                "low_level": 64 * expansion}
    getter = IntermediateLayerGetter(net, {layers[r]: r for r in returns})
    return getter, {r: channels[r] for r in returns}


# --------------------------------------------------------------------------------------- MobileNetV3

def _mobilenet(in_channels, output_stride, multi_grid, returns, pretrained, allow_download):
    if multi_grid is not None:
        raise SegdeepError("multi_grid applies to ResNet backbones only, not mobilenet_v3_large")
    net = mobilenetv3.mobilenet_v3_large(weights=None, dilated=output_stride <= 16)
    _torchvision_weights(net, "mobilenet_v3_large", pretrained, allow_download, ignore=("classifier.",))
    features = net.features
    # Stage starts (strided blocks), as torchvision's segmentation builders find them: [0, 2, 4, 7, 13, 16].
    stages = [0] + [i for i, b in enumerate(features) if getattr(b, "_is_cn", False)] + [len(features) - 1]
    if output_stride == 8:  # also dilate C3 (blocks 7..12) by 2, and C4 (already 2) by 4
        for i in range(stages[-3], len(features) - 1):
            dw = next(m for m in features[i].modules() if isinstance(m, nn.Conv2d) and m.groups > 1)
            dw.stride = (1, 1)
            _set_dilation(dw, 2 if i < stages[-2] else 4)
    features[0][0] = adapt_first_conv(features[0][0], in_channels)
    positions = {"out": stages[-1], "aux": stages[-4], "low_level": stages[-4] - 1}
    getter = IntermediateLayerGetter(features, {str(positions[r]): r for r in returns})
    channels = {r: _out_channels(features[positions[r]]) for r in returns}
    return getter, channels


def _out_channels(module: nn.Module) -> int:
    return [m for m in module.modules() if isinstance(m, nn.Conv2d)][-1].out_channels


# --------------------------------------------------------------------------------------- Xception (timm)

class TimmFeatures(nn.Module):
    """A timm ``features_only`` network whose output list is returned as a dict of named maps."""

    def __init__(self, model: nn.Module, names: Sequence[str]):
        super().__init__()
        self.body = model
        self.names = list(names)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return OrderedDict(zip(self.names, self.body(x), strict=True))


def _timm_cached_file(name: str) -> str | None:
    import timm

    hub_id = timm.models.get_pretrained_cfg(name).hf_hub_id
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:  # pragma: no cover - timm depends on huggingface_hub
        return None
    for filename in ("model.safetensors", "pytorch_model.bin"):
        found = try_to_load_from_cache(hub_id, filename)
        if isinstance(found, str):
            return found
    return None


def _xception(name, in_channels, output_stride, multi_grid, returns, pretrained, allow_download):
    try:
        import timm
    except ImportError:
        raise SegdeepError(f"backbone {name} needs timm: pip install 'napari-segdeep[timm]'") from None
    if multi_grid is not None:
        raise SegdeepError(f"multi_grid applies to ResNet backbones only, not {name}")
    # timm feature indices: 1 = stride 4 (256 ch), 3 = stride 16 (1024 ch), 4 = last (2048 ch).
    index = {"low_level": 1, "aux": 3, "out": 4}
    order = sorted(returns, key=index.get)
    kwargs = dict(features_only=True, out_indices=tuple(index[r] for r in order),
                  output_stride=output_stride, in_chans=in_channels)
    if pretrained is None or pretrained is False:
        model = timm.create_model(name, pretrained=False, **kwargs)
    else:
        file = None if pretrained is True else Path(pretrained)
        if file is not None and not file.is_file():
            raise SegdeepError(f"{file}: pretrained weights file not found (a timm {name} state dict)")
        if file is None:
            file = _timm_cached_file(name)
        if file is None and not allow_download:
            raise SegdeepError(f"backbone {name}: ImageNet weights are not in the local timm cache; give a "
                               "local file (pretrained='path/to/model.safetensors') or allow downloading "
                               "(allow_download=True, --allow-download)")
        overlay = {"file": str(file)} if file is not None else None
        try:
            model = timm.create_model(name, pretrained=True, pretrained_cfg_overlay=overlay, **kwargs)
        except (RuntimeError, KeyError, ValueError) as exc:
            raise SegdeepError(f"{file}: does not match backbone {name} ({exc})") from None
    channels = dict(zip(order, model.feature_info.channels(), strict=True))
    return TimmFeatures(model, order), channels


# --------------------------------------------------------------------------------------- public

def build_backbone(
    name: str,
    *,
    in_channels: int = 3,
    output_stride: int = 16,
    multi_grid: Sequence[int] | None = None,
    returns: Sequence[str] = ("out",),
    pretrained: str | os.PathLike | bool | None = None,
    allow_download: bool = False,
) -> tuple[nn.Module, dict[str, int]]:
    """A feature extractor and the channel count of each map it returns.

    ``name``: one of :data:`BACKBONES`. ``output_stride``: 8, 16 or 32 (input pixels per feature
    pixel of ``"out"``). ``returns``: which of ``"out"``, ``"aux"``, ``"mid"``, ``"low_level"`` the module's
    dict holds. ``pretrained``: path of a local state dict, or ``True`` for cached ImageNet weights.
    """
    _check(name, output_stride, returns)
    args = (in_channels, output_stride, multi_grid, tuple(returns), pretrained, allow_download)
    if name in _RESNETS:
        return _resnet(name, *args)
    if name == "mobilenet_v3_large":
        return _mobilenet(*args)
    return _xception(name, *args)


def encoder_features(
    name: str, *, in_channels: int = 3, output_stride: int = 16, **kwargs
) -> tuple[nn.Module, int, int]:
    """DeepLab v3+'s encoder: (module returning ``{"low_level", "out"}``, low-level channels,
    high-level channels). The low-level map has stride 4, the high-level one ``output_stride``."""
    module, channels = build_backbone(name, in_channels=in_channels, output_stride=output_stride,
                                      returns=("low_level", "out"), **kwargs)
    return module, channels["low_level"], channels["out"]
