"""Export a model bundle to ONNX for the QGIS Deepness plugin (and any ONNX runtime).

The exported graph takes ``N x bands x tile_size x tile_size`` float32 input (the batch size is
dynamic) that is already normalised, and returns ``N x classes x tile_size x tile_size`` class
probabilities (softmax; ``probabilities=False`` keeps the logits, which Deepness cannot use: it
thresholds the output as probabilities).

Metadata (``metadata_props``, JSON-encoded values, as Deepness reads them):
``model_type`` "Segmentor"; ``class_names`` {index: name} (consecutive, as Deepness requires);
``resolution`` in centimetres per pixel (from the card's gsd, or ``gsd``; without it Deepness assumes
3 cm/px and resamples the scene); ``tile_size`` in pixels; ``tiles_overlap`` in percent of the tile
(segdeep's overlap); ``seg_thresh`` 0 (Deepness otherwise sends every pixel whose best probability
is under 0.5 to class 0) and ``seg_small_segment`` 0 (no removal of small regions, as segdeep);
``standardization_mean`` / ``standardization_std`` per band. Deepness divides 8-bit pixels by 255 and
then standardises, so the card's ``(pixel * scale - mean) / std`` becomes mean / (255 * scale) and
std / (255 * scale). The whole card is also stored under ``segdeep_card``, and ``segdeep_output``
says "probabilities" or "logits", so that segdeep runs the file as a model too
(:func:`segdeep.models.onnx_model.load_onnx_model`).

Deepness reproduces segdeep's labels without CRF only (it has no dense CRF), and differs at tile
seams: its tiles start at the scene's corner with no blending and black padding.
"""

from __future__ import annotations

import json
import os
from dataclasses import replace
from pathlib import Path

import torch
import torch.nn as nn

from ..errors import SegdeepError
from .bundle import CARD_KEY, ModelCard, load_bundle
from .card import OUTPUT_KEY

#: Oldest ONNX opset the export writes (Deepness's onnxruntime 1.17 runs opsets up to 20).
MIN_OPSET = 15


class _Probabilities(nn.Module):
    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.model(x), dim=1)


def deepness_metadata(card: ModelCard, tile_size: int, *, overlap: int | None = None, gsd: float | None = None,
                      probabilities: bool = True) -> dict[str, str]:
    """The metadata Deepness reads, JSON-encoded, plus the segdeep card and output kind.

    ``tile_size`` and ``overlap`` in pixels (``tiles_overlap`` is written in percent of the tile);
    ``gsd`` in metres per pixel overrides the card's (``resolution`` is written in cm/px).
    """
    names = {c.index: c.name for c in card.classes}
    factor = 255.0 * float(card.scale)
    meta = {
        "model_type": "Segmentor",
        "class_names": {str(i): names.get(i, f"class_{i}") for i in range(card.num_classes)},
        "tile_size": int(tile_size),
        "seg_thresh": 0.0,
        "seg_small_segment": 0,
        "standardization_mean": [float(m) / factor for m in card.mean],
        "standardization_std": [float(s) / factor for s in card.std],
    }
    gsd = gsd or card.gsd
    if gsd:
        meta["resolution"] = float(gsd) * 100.0  # metres -> centimetres per pixel
    if overlap is not None:
        meta["tiles_overlap"] = round(100 * int(overlap) / int(tile_size))
    out = {k: json.dumps(v) for k, v in meta.items()}
    out[CARD_KEY] = json.dumps(card.to_dict())
    out[OUTPUT_KEY] = json.dumps("probabilities" if probabilities else "logits")
    return out


def export_onnx(bundle: str | os.PathLike, out: str | os.PathLike, *, tile_size: int | None = None,
                opset: int = 17, probabilities: bool = True, overlap: int | None = None,
                gsd: float | None = None) -> Path:
    """Write ``bundle`` as an ONNX model at ``out`` (temporary name, then renamed); returns ``out``.

    ``tile_size`` (pixels, default the card's) fixes the input height and width; ``opset`` >= 15;
    ``overlap`` (pixels) becomes Deepness's ``tiles_overlap``; ``gsd`` (metres per pixel) its
    ``resolution`` when the card has none.
    """
    import onnx

    if opset < MIN_OPSET:
        raise SegdeepError(f"--opset {opset}: use {MIN_OPSET} or later (Deepness's onnxruntime runs 15-20)")
    if gsd is not None and not gsd > 0:
        raise SegdeepError(f"--gsd {gsd}: must be metres per pixel, > 0")
    out = Path(out)
    model, card = load_bundle(bundle)
    if gsd is not None:
        card = replace(card, gsd=float(gsd))
    tile_size = int(tile_size or card.tile_size)
    if tile_size < 1:
        raise SegdeepError(f"tile size {tile_size}: must be a positive number of pixels")
    if overlap is not None and not 0 <= overlap < tile_size:
        raise SegdeepError(f"overlap {overlap}: must be 0 to {tile_size - 1} pixels (under the tile size {tile_size})")
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
        for key, value in deepness_metadata(card, tile_size, overlap=overlap, gsd=gsd,
                                            probabilities=probabilities).items():
            prop = graph.metadata_props.add()
            prop.key, prop.value = key, value
        graph.doc_string = f"segdeep {card.name or card.architecture}: {card.num_classes} classes"
        onnx.checker.check_model(graph)
        onnx.save(graph, str(tmp))
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    return out
