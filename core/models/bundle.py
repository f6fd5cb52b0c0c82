"""Model bundles: one ``.safetensors`` file holding the weights and a JSON model card.

The card (:class:`~segdeep.models.card.ModelCard`, torch-free: :mod:`segdeep.models.card`) travels in
the safetensors header metadata under the key ``"segdeep_card"``; it says how to rebuild the network
(architecture and keyword arguments), what its outputs mean (classes with names and colours), what it
expects as input (raster bands, normalisation ``(pixel * scale - mean) / std`` per band, tile size in
pixels, ground sample distance in metres per pixel) and where it came from (training data,
validation scores).

Loading never runs code from the file: safetensors holds only tensors, and an imported torchvision
``.pth`` checkpoint is read with ``torch.load(weights_only=True)``. Every problem with a file is a
one-line :class:`~segdeep.errors.SegdeepError` naming the file.
"""

from __future__ import annotations

import json
import os
from dataclasses import replace
from pathlib import Path

import torch
import torch.nn as nn
from safetensors.torch import load_file, save_file

from ..errors import SegdeepError
from .card import CARD_KEY, FORMAT_VERSION, ModelCard, read_card
from .registry import create_model, model_entry

__all__ = ["CARD_KEY", "FORMAT_VERSION", "ModelCard", "read_card",  # the card, from .card
           "save_bundle", "load_bundle", "import_torchvision_checkpoint"]

_BUILD_ONLY = ("pretrained", "allow_download")  # builder options that make no sense in a bundle


# --------------------------------------------------------------------------------------- weights

def _build(card: ModelCard, where: str, meta: bool) -> nn.Module:
    model_entry(card.architecture)  # unknown architecture -> SegdeepError listing the known ones
    kwargs = {k: v for k, v in card.kwargs.items() if k not in _BUILD_ONLY}
    try:
        if meta:
            with torch.device("meta"):
                return create_model(card.architecture, num_classes=card.num_classes,
                                    in_channels=card.in_channels, **kwargs)
        return create_model(card.architecture, num_classes=card.num_classes,
                            in_channels=card.in_channels, **kwargs)
    except SegdeepError as exc:
        raise SegdeepError(f"{where}: {exc}") from None
    except (ValueError, TypeError) as exc:
        raise SegdeepError(f"{where}: cannot build {card.architecture} with {kwargs}: {exc}") from None


def _check_weights(model: nn.Module, state: dict[str, torch.Tensor], card: ModelCard, where: str) -> None:
    """Names and shapes of ``state`` against ``model``; class and band counts get their own message."""
    expected = model.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    if missing or unexpected:
        raise SegdeepError(f"{where}: weights do not fit {card.architecture} {card.kwargs or ''} "
                           f"(missing {missing[:3]}, unexpected {unexpected[:3]})")
    first_conv = next((k for k, v in expected.items() if v.dim() == 4), None)
    for key, ref in expected.items():
        got = state[key].shape
        if got == ref.shape:
            continue
        if key == first_conv and len(got) == 4 and got[1] != ref.shape[1]:
            raise SegdeepError(f"{where}: the card lists {card.in_channels} input bands {card.bands} but the "
                               f"weights' first layer {key!r} takes {got[1]}")
        for dim in (0, 1):
            if ref.dim() > dim and len(got) == ref.dim() and ref.shape[dim] == card.num_classes \
                    and got[dim] != card.num_classes:
                raise SegdeepError(f"{where}: the card lists {card.num_classes} classes but the weights' layer "
                                   f"{key!r} has {got[dim]} class outputs")
        raise SegdeepError(f"{where}: weight {key!r} has shape {tuple(got)}, {card.architecture} "
                           f"{card.kwargs or ''} needs {tuple(ref.shape)}")


def _load(card: ModelCard, state: dict[str, torch.Tensor], where: str, device) -> nn.Module:
    """Build the card's network (on the meta device: no wasted initialisation) and fill it."""
    state = {k: (v.float() if v.is_floating_point() else v) for k, v in state.items()}
    model = _build(card, where, meta=True)
    _check_weights(model, state, card, where)
    model.load_state_dict(state, strict=True, assign=True)
    if any(t.is_meta for t in [*model.parameters(), *model.buffers()]):  # non-persistent buffers
        model = _build(card, where, meta=False)
        model.load_state_dict(state, strict=True)
    return model.to(device).eval()


# --------------------------------------------------------------------------------------- public

def save_bundle(model: nn.Module, card: ModelCard, path: str | os.PathLike, half: bool = False) -> Path:
    """Write ``model``'s weights and ``card`` to one ``.safetensors`` file; returns its path.

    ``half=True`` stores floating-point weights as float16 (half the size; loaded back as float32).
    The card is checked against the weights first (architecture known, class and band counts), and
    the file is written under a temporary name, then renamed.
    """
    path = Path(path)
    card.validate(str(path))
    state = {k: v.detach().to("cpu").contiguous().clone() for k, v in model.state_dict().items()}
    _check_weights(_build(card, str(path), meta=True), state, card, str(path))
    if half:
        state = {k: (v.half() if v.is_floating_point() else v) for k, v in state.items()}
    metadata = {CARD_KEY: json.dumps(card.to_dict()), "format": "pt"}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        save_file(state, str(tmp), metadata=metadata)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def load_bundle(path: str | os.PathLike, device: str | torch.device = "cpu") -> tuple[nn.Module, ModelCard]:
    """Rebuild a bundle's network with its weights: ``(model in eval mode on device, card)``. An
    ``.onnx`` file gives an onnxruntime session as a module (:func:`segdeep.models.onnx_model.load_onnx_model`)."""
    path = Path(path)
    if path.suffix.lower() == ".onnx":
        from .onnx_model import load_onnx_model  # local: onnxruntime is an optional extra

        return load_onnx_model(path, device)
    card = read_card(path)
    state = load_file(str(path))
    return _load(card, state, str(path), device), card


def import_torchvision_checkpoint(
    pth_path: str | os.PathLike, architecture: str, card: ModelCard,
    out: str | os.PathLike | None = None, device: str | torch.device = "cpu",
) -> tuple[nn.Module, ModelCard]:
    """Load a torchvision-style ``.pth`` state dict (e.g. ``deeplabv3_resnet50``'s) into segdeep's
    ``architecture`` as described by ``card`` (classes, bands, normalisation); write a bundle to
    ``out`` when given. The file is read with ``torch.load(weights_only=True)``: a pickle that needs
    code is refused and nothing in it runs. ``aux_classifier.*`` weights switch on ``aux_loss``."""
    path = Path(pth_path)
    if not path.is_file():
        raise SegdeepError(f"{path}: no such checkpoint file (a torchvision .pth state dict)")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - UnpicklingError and friends: refuse
        first = str(exc).strip().splitlines()[0][:160] if str(exc).strip() else exc.__class__.__name__
        raise SegdeepError(f"{path}: refused: not a plain tensor checkpoint, loading it would need to run "
                           f"code from the file ({first})") from None
    for key in ("model", "state_dict"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise SegdeepError(f"{path}: expected a state dict (names -> tensors)")
    kwargs = dict(card.kwargs)
    if any(k.startswith("aux_classifier.") for k in state):
        kwargs.setdefault("aux_loss", True)
    card = replace(card, architecture=architecture, kwargs=kwargs)
    card.validate(str(path))
    model = _load(card, state, str(path), device)
    if out is not None:
        save_bundle(model, card, out)
    return model, card
