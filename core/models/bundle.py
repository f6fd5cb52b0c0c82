"""Model bundles: one ``.safetensors`` file holding the weights and a JSON model card.

The card (:class:`ModelCard`) travels in the safetensors header metadata under the key
``"segdeep_card"``; it says how to rebuild the network (architecture and keyword arguments), what its
outputs mean (classes with names and colours), what it expects as input (raster bands, normalisation
``(pixel * scale - mean) / std`` per band, tile size in pixels, ground sample distance in metres per
pixel) and where it came from (training data, validation scores).

Loading never runs code from the file: safetensors holds only tensors, and an imported torchvision
``.pth`` checkpoint is read with ``torch.load(weights_only=True)``. Every problem with a file is a
one-line :class:`~segdeep.errors.SegdeepError` naming the file.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

from ..classes import ClassInfo, classes_from_list
from ..errors import SegdeepError
from .registry import create_model, model_entry

#: Version of the card layout written by this segdeep.
FORMAT_VERSION = 1
#: Key of the card in the safetensors metadata.
CARD_KEY = "segdeep_card"
_REQUIRED = ("format_version", "architecture", "classes", "bands", "mean", "std", "scale", "tile_size")
_BUILD_ONLY = ("pretrained", "allow_download")  # builder options that make no sense in a bundle


@dataclass(kw_only=True)
class ModelCard:
    """What a model bundle says about its network. Units: ``tile_size`` in pixels, ``gsd`` in
    metres per pixel; the network input is ``(pixel * scale - mean[b]) / std[b]`` for band b."""

    architecture: str
    classes: list[ClassInfo]
    name: str = ""
    kwargs: dict = field(default_factory=dict)
    ignore_index: int = 255
    bands: list[int] = field(default_factory=lambda: [1, 2, 3])
    mean: list[float] = field(default_factory=lambda: [0.485, 0.456, 0.406])
    std: list[float] = field(default_factory=lambda: [0.229, 0.224, 0.225])
    scale: float = 1 / 255
    tile_size: int = 512
    gsd: float | None = None
    training: dict = field(default_factory=dict)
    validation: dict = field(default_factory=dict)
    format_version: int = FORMAT_VERSION

    @property
    def num_classes(self) -> int:
        """Output channels of the network: the largest class index + 1."""
        return max(c.index for c in self.classes) + 1

    @property
    def in_channels(self) -> int:
        return len(self.bands)

    def to_dict(self) -> dict:
        """A JSON-ready dict (classes as ``{"index", "name", "color": "#RRGGBB"}``)."""
        d = asdict(self)
        d["classes"] = [c.to_dict() for c in self.classes]
        return d

    @classmethod
    def from_dict(cls, data: dict, where: str = "model card") -> ModelCard:
        """Parse and validate a card; a :class:`SegdeepError` names the missing or bad key."""
        if not isinstance(data, dict):
            raise SegdeepError(f"{where}: the model card must be a JSON object, got {type(data).__name__}")
        missing = [k for k in _REQUIRED if k not in data]
        if missing:
            raise SegdeepError(f"{where}: model card is missing key {missing[0]!r} "
                               f"(required: {', '.join(_REQUIRED)})")
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in data.items() if k in known}
        values["classes"] = classes_from_list(data["classes"], where=f"{where}: classes")
        card = cls(**values)
        card.validate(where)
        return card

    def validate(self, where: str = "model card") -> None:
        """Check types and consistency (band counts, positive std and tile size, known version)."""
        if not isinstance(self.format_version, int) or self.format_version > FORMAT_VERSION:
            raise SegdeepError(f"{where}: model card format_version {self.format_version!r} is newer than "
                               f"this segdeep reads ({FORMAT_VERSION}); update segdeep")
        if not isinstance(self.architecture, str) or not self.architecture:
            raise SegdeepError(f"{where}: architecture must be a model name, got {self.architecture!r}")
        if not isinstance(self.kwargs, dict):
            raise SegdeepError(f"{where}: kwargs must be an object, got {self.kwargs!r}")
        if not self.bands or not all(isinstance(b, int) and b >= 1 for b in self.bands):
            raise SegdeepError(f"{where}: bands must be a list of 1-based band numbers, got {self.bands!r}")
        for key in ("mean", "std"):
            value = getattr(self, key)
            if not isinstance(value, list) or len(value) != len(self.bands) or \
                    not all(isinstance(v, int | float) for v in value):
                raise SegdeepError(f"{where}: {key} must hold one number per band ({len(self.bands)} bands "
                                   f"{self.bands}), got {value!r}")
        if any(s <= 0 for s in self.std):
            raise SegdeepError(f"{where}: std values must be positive, got {self.std}")
        if not isinstance(self.scale, int | float) or self.scale <= 0:
            raise SegdeepError(f"{where}: scale must be a positive number, got {self.scale!r}")
        if not isinstance(self.tile_size, int) or self.tile_size < 1:
            raise SegdeepError(f"{where}: tile_size must be a positive number of pixels, got {self.tile_size!r}")
        if self.gsd is not None and (not isinstance(self.gsd, int | float) or self.gsd <= 0):
            raise SegdeepError(f"{where}: gsd must be metres per pixel (> 0) or null, got {self.gsd!r}")

    def normalize(self, array: np.ndarray | torch.Tensor) -> torch.Tensor:
        """The network input for pixels of the card's bands, in order: ``(C, H, W)`` or
        ``(N, C, H, W)``, any dtype -> float32 tensor ``(pixel * scale - mean) / std`` per band."""
        x = torch.as_tensor(np.asarray(array) if not isinstance(array, torch.Tensor) else array)
        if x.dim() not in (3, 4) or x.shape[-3] != len(self.bands):
            raise SegdeepError(f"input of shape {tuple(x.shape)} does not have the model's {len(self.bands)} "
                               f"bands ({self.bands}) as (C, H, W) or (N, C, H, W)")
        shape = (-1, 1, 1)
        mean = torch.tensor(self.mean, dtype=torch.float32).reshape(shape)
        std = torch.tensor(self.std, dtype=torch.float32).reshape(shape)
        return (x.to(torch.float32) * float(self.scale) - mean) / std


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
    from safetensors.torch import save_file

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


def _metadata(path: Path) -> dict[str, str]:
    from safetensors import safe_open

    if not path.is_file():
        raise SegdeepError(f"{path}: no such model bundle (a segdeep .safetensors file)")
    try:
        with safe_open(str(path), framework="pt") as f:
            return f.metadata() or {}
    except Exception as exc:  # noqa: BLE001 - whatever the header problem, it is not a bundle
        raise SegdeepError(f"{path}: not a safetensors model bundle ({str(exc).splitlines()[0][:120]})") from None


def read_card(path: str | os.PathLike) -> ModelCard:
    """The model card of a bundle, read from the file header only (weights are not loaded)."""
    path = Path(path)
    text = _metadata(path).get(CARD_KEY)
    if text is None:
        raise SegdeepError(f"{path}: safetensors file without a segdeep model card "
                           f"(metadata key {CARD_KEY!r}); import other weights with import_torchvision_checkpoint")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise SegdeepError(f"{path}: the model card is not valid JSON ({exc})") from None
    return ModelCard.from_dict(data, where=str(path))


def load_bundle(path: str | os.PathLike, device: str | torch.device = "cpu") -> tuple[nn.Module, ModelCard]:
    """Rebuild a bundle's network with its weights: ``(model in eval mode on device, card)``."""
    from safetensors.torch import load_file

    path = Path(path)
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
