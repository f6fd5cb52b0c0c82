"""Write a PNG of an image with its label overlay and a legend (class colours and names).

Huge rasters are read decimated (from overviews when the file has them), so memory stays small;
non-8-bit imagery (uint16, panchromatic) is stretched between its 2nd and 98th percentiles.

example:
  segdeep preview scene.tif labels.tif --out preview.png --max-size 2000
"""

from __future__ import annotations

NAME = "preview"
HELP = "image + label overlay + legend -> PNG"


def configure(parser) -> None:
    parser.add_argument("image", help="the image raster")
    parser.add_argument("labels", help="the label raster on the same grid")
    parser.add_argument("--out", required=True, help="PNG to write")
    parser.add_argument("--classes", default=None, metavar="BUNDLE_OR_JSON",
                        help="class names and colours (default: stored in the label raster, else Dubai's)")
    parser.add_argument("--max-size", type=int, default=1600, metavar="PX",
                        help="longest side of the image part, pixels (default 1600)")
    parser.add_argument("--alpha", type=float, default=0.45, help="overlay opacity 0-1 (default 0.45)")
    parser.add_argument("--bands", type=int, nargs="+", default=None, metavar="B",
                        help="1-based bands to show: 1 (grey) or 3 (RGB); default 1 2 3")


def run(args) -> int:
    from ..export.preview import write_preview
    from ..io.paths import check_outputs
    from ..models.card import load_classes

    check_outputs([("image", args.image), ("labels", args.labels), ("--classes", args.classes)],
                  [("--out", args.out)])
    classes = load_classes(args.classes) if args.classes else None
    out = write_preview(args.image, args.labels, args.out, classes=classes, max_size=args.max_size,
                        alpha=args.alpha, bands=args.bands)
    print(f"preview -> {out}")
    return 0
