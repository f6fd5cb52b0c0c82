"""Score a predicted label raster against reference labels and write the report files.

PRED is a label raster (e.g. segdeep's labels.tif). TRUTH is a label raster, a colour-coded RGB or
paletted mask (decoded with --classes), or a vector file (.gpkg/.geojson/.shp) with a class attribute.
Writes report.json, report.csv, report.md, report.html, confusion.png and per_class_iou.png in --out.
"""

from __future__ import annotations

from pathlib import Path

from tqdm import tqdm

NAME = "evaluate"
HELP = "score predicted labels against reference labels; write the accuracy report"


def configure(parser) -> None:
    parser.add_argument("prediction", metavar="PRED", help="predicted label raster")
    parser.add_argument("truth", metavar="TRUTH", help="reference: label raster, colour mask or vector file")
    parser.add_argument("--out", required=True, help="folder for the report files")
    parser.add_argument("--classes", metavar="BUNDLE_OR_JSON",
                        help="class palette (model bundle or JSON); default: the prediction's own, else Dubai's")
    parser.add_argument("--ignore-index", type=int, default=255, metavar="N",
                        help="reference label that is not scored (default 255)")
    parser.add_argument("--attribute", help="class column of a vector reference (default: class_index or class_name)")
    parser.add_argument("--block-size", type=int, default=2048, metavar="PX", help="pixels per block side (memory)")
    parser.add_argument("--scheduler", default=None, metavar="tcp://HOST:8786|local:N",
                        help="score the blocks on a Dask cluster (extra napari-segdeep[dask]); same scores")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def run(args) -> int:
    from ..evaluate.rasters import evaluate_rasters, pick_classes
    from ..evaluate.report import REPORT_FILES, write_report
    from ..io.paths import check_outputs
    from ..models.card import load_classes

    check_outputs([("prediction", args.prediction), ("truth", args.truth), ("--classes", args.classes)],
                  [("--out", args.out)] + [(f"report file {name} in --out", Path(args.out) / name)
                                           for name in REPORT_FILES])
    classes = load_classes(args.classes) if args.classes else pick_classes(None, args.prediction)
    with tqdm(total=0, unit="block", disable=True if args.quiet else None, leave=False) as bar:
        def progress(done, total):
            bar.total = total
            bar.update(done - bar.n)

        score = evaluate_rasters
        if args.scheduler:
            from functools import partial

            from ..distributed.evaluate import evaluate_distributed

            score = partial(evaluate_distributed, scheduler=args.scheduler)
        result = score(args.prediction, args.truth, classes=classes,
                       ignore_index=args.ignore_index, block_size=args.block_size,
                       attribute=args.attribute, progress=progress)
    paths = write_report(result, Path(args.out), classes=classes, notes=result.get("notes", ()),
                         inputs=result["inputs"])
    print(f"pixel accuracy {result['pixel_accuracy']:.4f}   mean accuracy {result['mean_accuracy']:.4f}   "
          f"mean IU {result['mean_iou']:.4f}   frequency-weighted IU {result['frequency_weighted_iou']:.4f}")
    for c in result["classes"]:
        iou = "absent" if c["iou"] is None else f"{c['iou']:.4f}"
        print(f"  {c['index']:>3} {c['name']:<20} IoU {iou:>8}   support {c['support']}")
    print(f"report: {paths['html']}  (also report.json, report.csv, report.md, confusion.png)")
    return 0
