"""Export a model bundle to ONNX, with the metadata the QGIS Deepness plugin reads.

The ONNX model takes N x bands x TILE x TILE normalised float32 input (any batch size) and returns
class probabilities N x classes x TILE x TILE. Metadata: model_type "Segmentor", class_names,
resolution (cm/px from the bundle's ground sample distance, or --gsd), tile_size, tiles_overlap
(percent, from --overlap), seg_thresh 0 and seg_small_segment 0 (Deepness then keeps segdeep's
argmax), standardization_mean/std (for Deepness's 0-1 scaled 8-bit input), and the whole segdeep
model card, so `segdeep predict --model model.onnx` runs the file too.

--logits exports are not for Deepness (it reads the output as probabilities). Labels refined with
the dense CRF (--crf) cannot be reproduced in Deepness, which has no CRF.

Example: segdeep export-onnx sample_data/models/default.safetensors --out default.onnx --gsd 0.5
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
    parser.add_argument("--overlap", type=int, default=None, metavar="PX",
                        help="tile overlap in pixels written for Deepness as tiles_overlap in percent "
                             "(default: segdeep predict's, 64 px or a quarter of small tiles)")
    parser.add_argument("--gsd", type=float, default=None, metavar="M",
                        help="ground sample distance in metres per pixel, when the bundle has none "
                             "(Deepness's resolution; without it Deepness assumes 3 cm/px)")
    parser.add_argument("--opset", type=int, default=17,
                        help="ONNX opset version, 15 or later (default 17; Deepness's onnxruntime 1.17 runs 15-20)")
    parser.add_argument("--logits", action="store_true",
                        help="output raw logits instead of softmax probabilities (not for Deepness)")


def run(args: argparse.Namespace) -> int:
    from ..io.paths import check_outputs
    from ..models.bundle import read_card
    from ..models.onnx import export_onnx
    from ..predict.plan import default_overlap

    check_outputs([("model bundle", args.bundle)], [("--out", args.out)])
    card = read_card(args.bundle)
    size = args.tile_size or card.tile_size
    overlap = default_overlap(size) if args.overlap is None else args.overlap
    out = export_onnx(args.bundle, args.out, tile_size=args.tile_size, opset=args.opset,
                      probabilities=not args.logits, overlap=overlap, gsd=args.gsd)
    print(f"wrote {out} ({out.stat().st_size / 1e6:.1f} MB): {card.architecture}, "
          f"{card.in_channels} bands x {size} x {size} px in, {card.num_classes} classes out "
          f"({'logits' if args.logits else 'probabilities'}), opset {args.opset}")
    if not (args.gsd or card.gsd):
        print("note: the bundle has no ground sample distance, so the file has no 'resolution' and Deepness "
              "will resample the scene to its 3 cm/px default; pass --gsd METRES to set it")
    return 0
