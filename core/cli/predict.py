"""Segment a raster of any size with a model bundle, block by block.

Outputs in --out: labels.tif (Cloud-Optimized GeoTIFF with colour table and class names),
preview.png, run.json (parameters, model card, device, timings, peak memory), and on request
probabilities.tif, polygons (--vector) and an accuracy report (--truth). An interrupted run
continues with --resume (finished blocks are not recomputed; the labels are the same).

examples:
  segdeep predict scene.tif --model sample_data/models/default.safetensors --out out/
  segdeep predict scene.tif --out out/ --crf --probabilities --vector polygons.gpkg
  segdeep predict scene.tif --out out/ --window 0,0,4096,4096 --truth scene_labels.tif
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import SegdeepError

if TYPE_CHECKING:
    from ..predict.config import PredictConfig

NAME = "predict"
HELP = "segment a raster with a model bundle (tiled, streaming, resumable)"

#: Model used when --model is not given (relative to the current folder, then to the project).
DEFAULT_MODEL = Path("sample_data/models/default.safetensors")


def _ints(text: str, n: int | None, what: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise SegdeepError(f"{what} {text!r}: expected whole numbers separated by commas") from None
    if not values or (n is not None and len(values) != n):
        raise SegdeepError(f"{what} {text!r}: expected {n or 'one or more'} comma-separated numbers")
    return values


def _floats(text: str, n: int, what: str) -> list[float]:
    try:
        values = [float(v) for v in text.split(",")]
    except ValueError:
        raise SegdeepError(f"{what} {text!r}: expected {n} numbers separated by commas") from None
    if len(values) != n:
        raise SegdeepError(f"{what} {text!r}: expected {n} comma-separated numbers")
    return values


def configure(parser) -> None:
    parser.add_argument("image", help="raster to segment (GeoTIFF or anything GDAL reads)")
    parser.add_argument("--model", default=None, metavar="BUNDLE",
                        help=f"model bundle (.safetensors); default {DEFAULT_MODEL}")
    parser.add_argument("--out", required=True, metavar="DIR", help="output folder (created if missing)")
    parser.add_argument("--tile-size", type=int, default=None, metavar="PX",
                        help="model input size in pixels (default: the model card's)")
    parser.add_argument("--overlap", type=int, default=None, metavar="PX",
                        help="pixels shared by neighbouring tiles, at most tile-size/2 "
                             "(default 64, or tile-size/4 for tiles under 256 px)")
    parser.add_argument("--block-size", type=int, default=2048, metavar="PX",
                        help="block side in pixels: memory grows with its square, labels do not change (default 2048)")
    parser.add_argument("--batch-size", default="auto", metavar="N|auto", help="tiles per forward pass (default auto)")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (default auto)")
    parser.add_argument("--workers", default="auto", metavar="N|auto",
                        help="CPU: batches computed at once, each on cores/N torch threads; labels do not "
                             "change (default auto: 2 on 2+ cores)")
    parser.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16", "fp16"],
                        help="auto: fp32 on CPU, bf16/fp16 autocast on CUDA")
    parser.add_argument("--bands", default=None, metavar="1,2,3",
                        help="1-based raster bands fed to the model (default: the card's)")
    crf = parser.add_argument_group("dense CRF refinement")
    crf.add_argument("--crf", action=argparse.BooleanOptionalAction, default=False,
                     help="refine each block with a fully-connected CRF (default off); its colours are the "
                          "first 3 of the model's bands, 8-bit as is, else stretched 2-98 percentile over the whole raster")
    crf.add_argument("--crf-iterations", type=int, default=None, metavar="N", help="mean-field iterations")
    crf.add_argument("--crf-gaussian-sxy", type=float, default=None, metavar="PX", help="smoothness kernel width")
    crf.add_argument("--crf-gaussian-compat", type=float, default=None, metavar="W", help="smoothness weight")
    crf.add_argument("--crf-bilateral-sxy", type=float, default=None, metavar="PX", help="appearance kernel width")
    crf.add_argument("--crf-bilateral-srgb", type=float, default=None, metavar="LEVELS",
                     help="appearance colour width (0-255 levels)")
    crf.add_argument("--crf-bilateral-compat", type=float, default=None, metavar="W", help="appearance weight")
    crf.add_argument("--crf-window-size", type=int, default=None, metavar="PX",
                     help="side of the CRF windows (default 1024; blocks are rounded up to whole windows)")
    fusion = parser.add_argument_group("test-time fusion (DeepLab's multi-scale inference)")
    fusion.add_argument("--scales", default=None, metavar="0.5,0.75,1,1.25,1.5",
                        help="run each tile at these scale factors and average the probabilities "
                             "(default 1: one pass; each scale costs about scale^2 passes)")
    fusion.add_argument("--flip", action="store_true",
                        help="also run each tile (at each scale) mirrored left-right and average (2x the time)")
    parser.add_argument("--probabilities", action="store_true", help="also write probabilities.tif (uint8 per class)")
    parser.add_argument("--truth", default=None, metavar="LABELS",
                        help="reference label raster on the image's grid: writes the accuracy report")
    parser.add_argument("--vector", default=None, metavar="FILE",
                        help="also write polygons (.gpkg, .geojson, .shp; relative to --out)")
    parser.add_argument("--resume", action="store_true", help="continue an interrupted run in --out")
    region = parser.add_mutually_exclusive_group()
    region.add_argument("--window", default=None, metavar="COL,ROW,WIDTH,HEIGHT", help="segment a pixel window only")
    region.add_argument("--bounds", default=None, metavar="LEFT,BOTTOM,RIGHT,TOP",
                        help="segment only this box, in the raster's CRS units")
    parser.add_argument("--scheduler", default=None, metavar="tcp://HOST:8786|local:N",
                        help="map the blocks over a Dask cluster (extra napari-segdeep[dask]); local:N starts "
                             "N single-threaded worker processes here (default: in this process)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def _crf_params(args):
    if not args.crf:
        return None
    from ..crf.params import CRFParams

    params = CRFParams()
    for name in ("iterations", "gaussian_sxy", "gaussian_compat", "bilateral_sxy", "bilateral_srgb",
                 "bilateral_compat", "window_size"):
        value = getattr(args, f"crf_{name}")
        if value is not None:
            setattr(params, name, value)
    return params  # checked by PredictConfig


def _model_path(arg: str | None) -> Path:
    if arg:
        path = Path(arg)
        if not path.exists():
            raise SegdeepError(f"{path}: no such model bundle (a .safetensors file)")
        return path
    for base in (Path.cwd(), Path(__file__).resolve().parents[2]):
        if (base / DEFAULT_MODEL).exists():
            return base / DEFAULT_MODEL
    raise SegdeepError(f"no --model given and the default model {DEFAULT_MODEL} is missing; "
                       "pass --model BUNDLE (make one with segdeep train)")


def config_from_args(args: argparse.Namespace) -> PredictConfig:
    """The :class:`segdeep.predict.config.PredictConfig` of a ``segdeep predict`` command line (checked)."""
    from ..predict.config import PredictConfig

    return PredictConfig(
        image=args.image, bundle=_model_path(args.model), out_dir=args.out, tile_size=args.tile_size,
        overlap=args.overlap, block_size=args.block_size, batch_size=args.batch_size, device=args.device,
        precision=args.precision, workers=args.workers,
        bands=_ints(args.bands, None, "--bands") if args.bands else None, crf=_crf_params(args),
        probabilities=args.probabilities, truth=args.truth, resume=args.resume, vector=args.vector,
        scales=args.scales, flip=args.flip, window=_ints(args.window, 4, "--window") if args.window else None,
        bounds=_floats(args.bounds, 4, "--bounds") if args.bounds else None,
    )


def run(args) -> int:
    from ..predict.events import BlockDone, ClusterReady, Finishing, PredictStarted, TilesDone
    from ..runtime import drain

    config = config_from_args(args)
    if args.scheduler:
        from ..distributed.run import iter_predict_distributed

        gen = iter_predict_distributed(scheduler=args.scheduler, config=config)
    else:
        from ..predict.run import iter_predict

        gen = iter_predict(config=config)
    bar = None

    def show(event) -> None:
        nonlocal bar
        if isinstance(event, ClusterReady):
            print(f"segdeep predict: cluster {event.scheduler}, {event.workers} worker(s), dashboard "
                  f"{event.dashboard or 'not available'}", file=sys.stderr)
        elif isinstance(event, PredictStarted):
            resumed = f", {event.blocks_resumed} block(s) already done" if event.blocks_resumed else ""
            on = f", {event.workers} x {event.threads} thread(s)" if event.workers else ""
            print(f"segdeep predict: device {event.device} ({event.precision}, batch {event.batch_size}{on}), "
                  f"{event.total_blocks} block(s) of {event.block_size} px, {event.total_tiles} tiles{resumed}",
                  file=sys.stderr)
            if not args.quiet:
                from tqdm import tqdm

                bar = tqdm(total=event.total_tiles, unit="tile", file=sys.stderr, dynamic_ncols=True,
                           disable=None)
        elif isinstance(event, TilesDone) and bar is not None:
            bar.update(event.done - bar.n)
        elif isinstance(event, BlockDone) and bar is not None:
            bar.set_postfix_str(f"block {event.done}/{event.total}")
        elif isinstance(event, Finishing) and bar is not None:
            bar.set_postfix_str(f"writing {event.step}")

    try:
        result = drain(gen, show)
    finally:
        if bar is not None:
            bar.close()
        gen.close()
    print(f"labels: {result.labels}")
    for name in ("probabilities", "preview", "vector"):
        if getattr(result, name):
            print(f"{name}: {getattr(result, name)}")
    if result.scores:
        s = result.scores
        print(f"report: {result.report.get('markdown', result.out_dir)} (pixel accuracy "
              f"{s['pixel_accuracy']:.3f}, mean IoU {s['mean_iou']:.3f})")
    print(f"run: {result.run_json} ({result.timings.get('total', 0):.1f} s, peak memory "
          f"{result.peak_rss_mb:.0f} MB)")
    return 0
