"""Export a model bundle to ONNX for the QGIS Deepness plugin (and any ONNX runtime).

The exported graph takes ``N x bands x tile_size x tile_size`` float32 input (the batch size is
dynamic) that is already normalised, and returns ``N x classes x tile_size x tile_size`` class
probabilities (softmax; ``probabilities=False`` keeps the logits).

Metadata (``metadata_props``, JSON-encoded values, as Deepness reads them):
``model_type`` "Segmentor"; ``class_names`` {index: name} (consecutive, as Deepness requires);
``resolution`` in centimetres per pixel (from the card's gsd, when known); ``tile_size`` in pixels;
``standardization_mean`` / ``standardization_std`` per band. Deepness divides 8-bit pixels by 255 and
then standardises, so the card's ``(pixel * scale - mean) / std`` becomes mean / (255 * scale) and
std / (255 * scale). The whole card is also stored under ``segdeep_card``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch
import torch.nn as nn

from ..errors import SegdeepError
from .bundle import CARD_KEY, ModelCard, load_bundle


class _Probabilities(nn.Module):
    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.model(x), dim=1)


def deepness_metadata(card: ModelCard, tile_size: int) -> dict[str, str]:
    """The metadata Deepness reads, JSON-encoded, plus the segdeep card."""
    names = {c.index: c.name for c in card.classes}
    factor = 255.0 * float(card.scale)
    meta = {
        "model_type": "Segmentor",
        "class_names": {str(i): names.get(i, f"class_{i}") for i in range(card.num_classes)},
        "tile_size": int(tile_size),
        "standardization_mean": [float(m) / factor for m in card.mean],
        "standardization_std": [float(s) / factor for s in card.std],
    }
    if card.gsd:
        meta["resolution"] = float(card.gsd) * 100.0  # metres -> centimetres per pixel
    out = {k: json.dumps(v) for k, v in meta.items()}
    out[CARD_KEY] = json.dumps(card.to_dict())
    return out


def export_onnx(bundle: str | os.PathLike, out: str | os.PathLike, *, tile_size: int | None = None,
                opset: int = 17, probabilities: bool = True) -> Path:
    """Write ``bundle`` as an ONNX model at ``out`` (temporary name, then renamed); returns ``out``.

    ``tile_size`` (pixels, default the card's) fixes the input height and width; ``opset`` >= 17.
    """
    import onnx

    if opset < 17:
        raise SegdeepError(f"--opset {opset}: use 17 or later")
    out = Path(out)
    model, card = load_bundle(bundle)
    tile_size = int(tile_size or card.tile_size)
    if tile_size < 1:
        raise SegdeepError(f"tile size {tile_size}: must be a positive number of pixels")
    net = _Probabilities(model) if probabilities else model
    net.eval()
    dummy = torch.zeros(1, card.in_channels, tile_size, tile_size)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    try:
        with torch.no_grad():
            torch.onnx.export(net, (dummy,), str(tmp), dynamo=False, opset_version=opset,
                              input_names=["input"], output_names=["output"],
                              dynamic_axes={"input": {0: "batch"}, "output": {0: "batch"}},
                              do_constant_folding=True)
        graph = onnx.load(str(tmp))
        for key, value in deepness_metadata(card, tile_size).items():
            prop = graph.metadata_props.add()
            prop.key, prop.value = key, value
        graph.doc_string = f"segdeep {card.name or card.architecture}: {card.num_classes} classes"
        onnx.checker.check_model(graph)
        onnx.save(graph, str(tmp))
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    return out
