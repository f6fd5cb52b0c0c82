"""Export a model bundle to ONNX, with the metadata the QGIS Deepness plugin reads.

The ONNX model takes N x bands x TILE x TILE normalised float32 input (any batch size) and returns
class probabilities N x classes x TILE x TILE. Metadata: model_type "Segmentor", class_names,
resolution (cm/px from the bundle's ground sample distance), tile_size, standardization_mean/std
(for Deepness's 0-1 scaled 8-bit input), and the whole segdeep model card.

Example: segdeep export-onnx sample_data/models/dubai.safetensors --out dubai.onnx
"""

from __future__ import annotations

import argparse

NAME = "export-onnx"
HELP = "export a model bundle to ONNX (for QGIS Deepness / onnxruntime)"


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("bundle", metavar="BUNDLE", help="model bundle (.safetensors)")
    parser.add_argument("--out", required=True, metavar="FILE", help="ONNX file to write (e.g. model.onnx)")
    parser.add_argument("--tile-size", type=int, default=None, metavar="PX",
                        help="input height and width in pixels (default: the bundle's tile size)")
    parser.add_argument("--opset", type=int, default=17, help="ONNX opset version, 17 or later (default 17)")
    parser.add_argument("--logits", action="store_true",
                        help="output raw logits instead of softmax probabilities")


def run(args: argparse.Namespace) -> int:
    from ..io.paths import check_outputs
    from ..models.bundle import read_card
    from ..models.onnx import export_onnx

    check_outputs([("model bundle", args.bundle)], [("--out", args.out)])
    card = read_card(args.bundle)
    out = export_onnx(args.bundle, args.out, tile_size=args.tile_size, opset=args.opset,
                      probabilities=not args.logits)
    size = args.tile_size or card.tile_size
    print(f"wrote {out} ({out.stat().st_size / 1e6:.1f} MB): {card.architecture}, "
          f"{card.in_channels} bands x {size} x {size} px in, {card.num_classes} classes out "
          f"({'logits' if args.logits else 'probabilities'}), opset {args.opset}")
    return 0
