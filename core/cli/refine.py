"""Refine a label raster (e.g. an edited mask) or a probability raster with the dense CRF.

IMAGE is the raster whose colours guide the CRF (any dtype, bands 1-3 unless --bands; one band is
grey, two bands get a third of zeros): 8-bit imagery is used as it is, other data (uint16, float)
is stretched per band between the 2nd and 98th percentiles of the whole raster's valid pixels, as
`segdeep preview` shows it and as `predict --crf` and napari's Refine do. LABELS_OR_PROBS is
either a one-band label raster (class indices, 255 = nodata; turned into probabilities with
--confidence) or a probability raster with one band per class (float 0-1 or uint8 0-255). The
raster is processed block by block with a halo of context, so memory depends on --block-size only.
The output is a uint8 label GeoTIFF (COG) with the input's CRS, transform, colour table and class names.

examples:
  segdeep refine scene.tif edited_labels.tif --out refined.tif
  segdeep refine scene.tif probs.tif --out refined.tif --iterations 10 --min-region-px 64
  segdeep refine scene.tif labels.tif --out refined.tif --deeplab --classes model.safetensors
"""

from __future__ import annotations

import sys
import time

NAME = "refine"
HELP = "refine labels or class probabilities with the dense CRF (block by block)"


def add_crf_options(parser, defaults=None) -> None:
    """The CRF options shared by refine and predict (``--iterations``, kernel widths, weights)."""
    from ..crf.params import CRFParams

    d = defaults or CRFParams()
    g = parser.add_argument_group("dense CRF (widths in pixels / 0-255 colour levels; compat = Potts weight)")
    g.add_argument("--iterations", type=int, default=None, help=f"mean-field iterations (default {d.iterations})")
    g.add_argument("--gaussian-sxy", type=float, default=None, help=f"smoothness kernel width (default {d.gaussian_sxy:g})")
    g.add_argument("--gaussian-compat", type=float, default=None, help=f"smoothness weight (default {d.gaussian_compat:g})")
    g.add_argument("--bilateral-sxy", type=float, default=None, help=f"appearance kernel width (default {d.bilateral_sxy:g})")
    g.add_argument("--bilateral-srgb", type=float, default=None, help=f"appearance colour width (default {d.bilateral_srgb:g})")
    g.add_argument("--bilateral-compat", type=float, default=None, help=f"appearance weight (default {d.bilateral_compat:g})")
    g.add_argument("--deeplab", action="store_true", help="start from DeepLab's published weights instead of segdeep's")


def crf_params_from_args(args):
    """A CRFParams from the options of :func:`add_crf_options` (unset options keep the defaults)."""
    from ..crf.params import CRFParams

    base = CRFParams.deeplab() if getattr(args, "deeplab", False) else CRFParams()
    values = base.to_dict()
    for key in values:
        given = getattr(args, key, None)
        if given is not None:
            values[key] = given
    return CRFParams.from_dict(values)


def configure(parser) -> None:
    parser.add_argument("image", metavar="IMAGE", help="image raster, any dtype: 8-bit as is, else a 2-98 percentile stretch of the whole raster (bands 1-3 unless --bands)")
    parser.add_argument("source", metavar="LABELS_OR_PROBS", help="label raster (1 band) or probability raster (1 band per class)")
    parser.add_argument("--out", required=True, help="output label GeoTIFF")
    add_crf_options(parser)
    parser.add_argument("--confidence", type=float, default=0.7,
                        help="probability given to a pixel's label when refining labels (default 0.7)")
    parser.add_argument("--min-region-px", type=int, default=0, help="merge regions smaller than this many pixels")
    parser.add_argument("--min-region-m2", type=float, default=None, help="same, in square metres (projected CRS)")
    parser.add_argument("--fill-holes-px", type=int, default=0, help="fill enclosed holes up to this many pixels")
    parser.add_argument("--majority-size", type=int, default=1,
                        help="majority (mode) filter window, odd pixels; 1 = off (default)")
    parser.add_argument("--classes", default=None, metavar="BUNDLE_OR_JSON",
                        help="class palette: model bundle (.safetensors) or JSON (default: the Dubai classes)")
    parser.add_argument("--bands", type=int, nargs="+", default=None, metavar="BAND",
                        help="1 to 3 image bands for the CRF's colours, 1-based (default the first three)")
    parser.add_argument("--block-size", type=int, default=1024, help="pixels per block side (default 1024)")
    parser.add_argument("--halo", type=int, default=None, help="context pixels around each block (default: 3 x bilateral-sxy)")
    parser.add_argument("--device", default=None, help="torch device, e.g. cpu or cuda (default: cuda when present)")
    parser.add_argument("--quiet", action="store_true", help="no progress output")


def run(args) -> int:
    import torch

    from ..errors import SegdeepError
    from ..io.paths import check_outputs
    from ..io.raster import open_raster
    from ..refine.postprocess import area_to_pixels
    from ..refine.raster import refine_raster

    check_outputs([("image", args.image), ("labels", args.source), ("--classes", args.classes)],
                  [("--out", args.out)])
    params = crf_params_from_args(args)
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    min_region = args.min_region_px
    if args.min_region_m2 is not None:
        info = open_raster(args.source, warn=False)
        if not info.georeferenced:
            raise SegdeepError(f"{args.source}: not georeferenced, so --min-region-m2 has no meaning; use --min-region-px")
        min_region = max(min_region, area_to_pixels(args.min_region_m2, info.transform, info.crs))
    start = time.perf_counter()

    def progress(done: int, total: int) -> None:
        if not args.quiet:
            print(f"\rblock {done}/{total}", end="" if done < total else "\n", file=sys.stderr, flush=True)

    out = refine_raster(args.image, args.source, args.out, params, confidence=args.confidence, classes=args.classes,
                        min_region_px=min_region, fill_holes_px=args.fill_holes_px,
                        majority_size=args.majority_size, block_size=args.block_size,
                        halo=args.halo, bands=args.bands, device=device, progress=progress)
    print(f"labels: {out}")
    if not args.quiet:
        print(f"(CRF {params.to_dict()}, {time.perf_counter() - start:.1f} s)", file=sys.stderr)
    return 0
