"""Turn a label raster into polygons (GeoPackage, GeoJSON or Shapefile) with class attributes.

Polygons get class_index (class_idx in a Shapefile), class_name, area (CRS units^2), area_m2 and
perimeter; the raster is processed block by block and regions crossing block edges are merged, so
nothing is cut at a block edge. A GeoPackage carries a QGIS style with the class colours.

example:
  segdeep vectorize labels.tif --out polygons.gpkg --layer-per-class --simplify 0.5 --min-area 10
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

NAME = "vectorize"
HELP = "label raster -> polygons (GeoPackage / GeoJSON / Shapefile)"


def configure(parser) -> None:
    parser.add_argument("labels", help="label raster (uint8 class indices, 255 = nodata)")
    parser.add_argument("--out", required=True, help="output file: .gpkg, .geojson or .shp")
    parser.add_argument("--format", choices=["gpkg", "geojson", "shp"], default=None,
                        help="vector format (default: from the extension of --out)")
    parser.add_argument("--layer-per-class", action="store_true",
                        help="one layer per class (GeoJSON/Shapefile: one file per class)")
    parser.add_argument("--simplify", type=float, default=0.0, metavar="METRES",
                        help="topology-preserving simplification tolerance in CRS units (default 0: exact pixel edges)")
    parser.add_argument("--min-area", type=float, default=0.0, metavar="M2",
                        help="drop polygons smaller than this (m^2 when known, else CRS units^2)")
    parser.add_argument("--classes", default=None, metavar="BUNDLE_OR_JSON",
                        help="class names and colours: a model bundle or a palette JSON "
                             "(default: stored in the label raster, else the Dubai palette)")
    parser.add_argument("--exclude", nargs="+", default=[], metavar="CLASS",
                        help="class names or indices that get no polygons")
    parser.add_argument("--block-size", type=int, default=2048, metavar="N",
                        help="block side in pixels (memory, not the result, depends on it; default 2048)")
    parser.add_argument("--workers", type=_workers, default="auto", metavar="N|auto",
                        help="threads polygonizing blocks in parallel (default auto: one per CPU core; "
                             "1 = one thread; same result)")
    parser.add_argument("--scheduler", default=None, metavar="tcp://HOST:8786|local:N",
                        help="polygonize the blocks on a Dask cluster (extra napari-segdeep[dask]); same polygons")
    parser.add_argument("--quiet", action="store_true", help="no progress, only the summary line")


def _workers(text: str) -> int | str:
    import argparse

    if text == "auto":
        return text
    if text.isdigit() and int(text) >= 1:
        return int(text)
    raise argparse.ArgumentTypeError(f"{text!r} is not a number of threads >= 1 or 'auto'")


def run(args) -> int:
    from ..export.vectorize import vectorize_raster
    from ..io.paths import check_outputs
    from ..models.card import load_classes

    check_outputs([("label raster", args.labels), ("--classes", args.classes)], [("--out", args.out)])
    classes = load_classes(args.classes) if args.classes else None
    progress = None
    if not args.quiet and sys.stderr.isatty():
        def progress(done: int, total: int) -> None:
            print(f"\rblocks {done}/{total}", end="" if done < total else "\n", file=sys.stderr, flush=True)

    polygonize = vectorize_raster
    if args.scheduler:
        from functools import partial

        from ..distributed.vectorize import vectorize_distributed

        polygonize = partial(vectorize_distributed, scheduler=args.scheduler)
    summary = polygonize(
        args.labels, args.out, format=args.format, layer_per_class=args.layer_per_class,
        simplify=args.simplify, min_area=args.min_area, classes=classes, exclude=args.exclude,
        block_size=args.block_size, workers=args.workers, progress=progress,
    )
    files = ", ".join(Path(f).name for f in summary["files"])
    print(f"{summary['polygons']} polygons in {len(summary['layers'])} layer(s) -> {files} "
          f"({summary['seconds']:.1f} s)")
    if not args.quiet:
        print(json.dumps(summary["classes"], indent=1))
    return 0
