"""The model card: what a bundle says about its network, read without torch.

The card (:class:`ModelCard`) travels in a ``.safetensors`` bundle's header metadata under the key
``"segdeep_card"`` (:data:`CARD_KEY`). :func:`read_card` reads only that header (safetensors' numpy
reader: no torch, no weights), so looking at a bundle, listing its classes (:func:`load_classes`) or
checking its bands stays quick. Building the network and loading the weights is
:mod:`segdeep.models.bundle`. An ONNX model's card comes from its metadata (:func:`read_onnx_info`:
segdeep's own export, or Deepness-style keys), read with the onnx package, also without torch.
"""

from __future__ import annotations

import ast
import json
import os
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from safetensors import safe_open

from ..classes import DUBAI_CLASSES, ClassInfo, classes_from_list
from ..errors import SegdeepError

if TYPE_CHECKING:  # pragma: no cover
    import torch

#: Version of the card layout written by this segdeep.
FORMAT_VERSION = 1
#: Key of the card in the safetensors metadata.
CARD_KEY = "segdeep_card"
_REQUIRED = ("format_version", "architecture", "classes", "bands", "mean", "std", "scale", "tile_size")


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
        import torch  # local: the card, read_card and load_classes stay torch-free

        x = torch.as_tensor(np.asarray(array) if not isinstance(array, torch.Tensor) else array)
        if x.dim() not in (3, 4) or x.shape[-3] != len(self.bands):
            raise SegdeepError(f"input of shape {tuple(x.shape)} does not have the model's {len(self.bands)} "
                               f"bands ({self.bands}) as (C, H, W) or (N, C, H, W)")
        shape = (-1, 1, 1)
        mean = torch.tensor(self.mean, dtype=torch.float32).reshape(shape)
        std = torch.tensor(self.std, dtype=torch.float32).reshape(shape)
        return (x.to(torch.float32) * float(self.scale) - mean) / std


def _metadata(path: Path) -> dict[str, str]:
    if not path.is_file():
        raise SegdeepError(f"{path}: no such model bundle (a segdeep .safetensors file)")
    try:
        with safe_open(str(path), framework="numpy") as f:
            return f.metadata() or {}
    except Exception as exc:  # noqa: BLE001 - whatever the header problem, it is not a bundle
        raise SegdeepError(f"{path}: not a safetensors model bundle ({str(exc).splitlines()[0][:120]})") from None


def read_card(path: str | os.PathLike) -> ModelCard:
    """The model card of a bundle, read from the file header only (weights are not loaded); for an
    ``.onnx`` file, from its metadata (:func:`read_onnx_info`)."""
    path = Path(path)
    if path.suffix.lower() == ".onnx":
        return read_onnx_info(path).card
    text = _metadata(path).get(CARD_KEY)
    if text is None:
        raise SegdeepError(f"{path}: safetensors file without a segdeep model card "
                           f"(metadata key {CARD_KEY!r}); import other weights with import_torchvision_checkpoint")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise SegdeepError(f"{path}: the model card is not valid JSON ({exc})") from None
    return ModelCard.from_dict(data, where=str(path))


def load_classes(source: str | Path | None) -> list[ClassInfo]:
    """Load a palette from a JSON file, a model bundle (``.safetensors``) or an ONNX model; ``None``
    gives Dubai's."""
    if source is None:
        return list(DUBAI_CLASSES)
    path = Path(source)
    if not path.exists():
        raise SegdeepError(f"{path}: no such file (expected a classes JSON or a .safetensors model bundle)")
    if path.suffix.lower() in (".safetensors", ".onnx"):
        return list(read_card(path).classes)
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise SegdeepError(f"{path}: not a readable JSON palette ({exc})") from None
    if isinstance(data, dict):
        data = data.get("classes")
    return classes_from_list(data, where=str(path))


# --------------------------------------------------------------------------------------- ONNX files
#
# The card of an ONNX segmentation model, read from its metadata without torch.
# The model card of an ONNX model, read from its metadata without torch.
#
# Two kinds of ONNX segmentation models are understood:
#
# - segdeep's own export (:func:`segdeep.models.onnx.export_onnx`): the whole card is stored under
#   ``segdeep_card``, and ``segdeep_output`` says whether the graph returns ``probabilities`` or ``logits``.
# - Models made for the QGIS plugin Deepness (its model zoo, or any framework's exporter plus Deepness's
#   metadata): ``model_type`` "Segmentor", ``class_names`` ({index: name}), ``standardization_mean`` /
#   ``standardization_std`` (applied by Deepness to 8-bit pixels divided by 255), ``resolution`` in
#   cm/px, ``tile_size`` in pixels. Their outputs are class probabilities (N x C x H x W, or N x 1 x H x W
#   for a one-class sigmoid model, read as background / class). Without metadata, the input shape
#   gives the bands and the tile size, and classes are named ``class 0``, ``class 1``, ...
#
# Values are JSON (as Deepness writes them); a Python literal (``{0: 'background'}``) is read with
# :func:`ast.literal_eval`, which evaluates no code.

#: Metadata key saying what segdeep's export returns: "probabilities" or "logits".
OUTPUT_KEY = "segdeep_output"

# Distinct colours for classes that come without any (Deepness metadata has names only).
_COLOURS = [(31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189), (140, 86, 75),
            (227, 119, 194), (127, 127, 127), (188, 189, 34), (23, 190, 207)]


class OnnxInfo:
    """What an ONNX file says about itself: ``card``, ``output`` ("probabilities" or "logits") and
    ``binary`` (one sigmoid channel that stands for two classes)."""

    def __init__(self, card: ModelCard, output: str, binary: bool) -> None:
        self.card, self.output, self.binary = card, output, binary


def _value(meta: dict[str, str], key: str, where: str):
    text = meta.get(key)
    if text is None:
        return None
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        try:
            return ast.literal_eval(text)
        except (ValueError, SyntaxError):
            raise SegdeepError(f"{where}: metadata {key!r} = {text[:80]!r} is neither JSON nor a literal") from None


def _dims(value_info) -> list[int | None]:
    return [d.dim_value if d.HasField("dim_value") else None for d in value_info.type.tensor_type.shape.dim]


def _load_graph(path: Path):
    try:
        import onnx
    except ImportError:
        raise SegdeepError(f"{path}: running ONNX models needs the onnx extra: "
                           "pip install 'napari-segdeep[onnx]'") from None
    if not path.is_file():
        raise SegdeepError(f"{path}: no such ONNX model")
    try:
        return onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # noqa: BLE001 - a damaged or non-ONNX file
        raise SegdeepError(f"{path}: not an ONNX model ({str(exc).splitlines()[0][:120]})") from None


def _class_names(value, n: int, where: str) -> dict[int, str]:
    if value is None:
        return {i: f"class {i}" for i in range(n)}
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else None
    try:
        names = {int(k): str(v) for k, v in items}
    except (TypeError, ValueError):
        raise SegdeepError(f"{where}: class_names must map class indices to names, got {value!r}"[:200]) from None
    if sorted(names) != list(range(len(names))):
        raise SegdeepError(f"{where}: class_names indices must be 0..{len(names) - 1}, got {sorted(names)}")
    return names


def read_onnx_info(path: str | os.PathLike) -> OnnxInfo:
    """Read the card of an ONNX segmentation model (segdeep's export or Deepness-style metadata)."""
    path = Path(path)
    where = str(path)
    graph = _load_graph(path)
    meta = {p.key: p.value for p in graph.metadata_props}
    inputs = [i for i in graph.graph.input if i.name not in {t.name for t in graph.graph.initializer}]
    if len(inputs) != 1 or len(_dims(inputs[0])) != 4:
        raise SegdeepError(f"{where}: expected one N x bands x height x width image input, got "
                           f"{[(i.name, _dims(i)) for i in inputs]}")
    _, channels, height, width = _dims(inputs[0])
    out_dims = _dims(graph.graph.output[0])
    if CARD_KEY in meta:
        card = ModelCard.from_dict(_value(meta, CARD_KEY, where), where=where)
        output = _value(meta, OUTPUT_KEY, where) or "probabilities"
        if output not in ("probabilities", "logits"):
            raise SegdeepError(f"{where}: {OUTPUT_KEY} {output!r}: expected 'probabilities' or 'logits'")
        if height and height != card.tile_size:
            card = replace(card, tile_size=int(height))
        return OnnxInfo(card, output, binary=False)
    model_type = _value(meta, "model_type", where)
    if model_type not in (None, "Segmentor"):
        raise SegdeepError(f"{where}: model_type {model_type!r}; segdeep runs segmentation models ('Segmentor')")
    if channels is None:
        raise SegdeepError(f"{where}: the input's band count is not fixed ({_dims(inputs[0])}); export the model "
                           "with a fixed number of bands")
    out_channels = out_dims[1] if len(out_dims) == 4 else None
    binary = out_channels == 1
    n = 2 if binary else out_channels
    names = _class_names(_value(meta, "class_names", where), n or 0, where)
    if binary and len(names) == 1:
        names = {0: "background", 1: names[0]}
    if n is not None and len(names) != n:
        raise SegdeepError(f"{where}: class_names lists {len(names)} classes but the output has {out_channels} "
                           "channels")
    mean = _value(meta, "standardization_mean", where) or [0.0] * channels
    std = _value(meta, "standardization_std", where) or [1.0] * channels
    if isinstance(mean, int | float):
        mean = [float(mean)] * channels
    if isinstance(std, int | float):
        std = [float(std)] * channels
    tile = _value(meta, "tile_size", where) or height or width or 512
    resolution = _value(meta, "resolution", where)
    classes = [ClassInfo(i, names[i], _COLOURS[i % len(_COLOURS)]) for i in sorted(names)]
    card = ModelCard(architecture="onnx", classes=classes, name=graph.graph.name or path.stem,
                     bands=list(range(1, channels + 1)), mean=[float(m) for m in mean], std=[float(s) for s in std],
                     scale=1 / 255, tile_size=int(tile), gsd=float(resolution) / 100 if resolution else None,
                     training={"source": "ONNX metadata (Deepness-style)"})
    card.validate(where)
    return OnnxInfo(card, "probabilities", binary)
