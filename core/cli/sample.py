"""Generate the sample scene: an aerial-like RGB GeoTIFF of a desert city and its label GeoTIFF.

Writes DIR/scene.tif (RGB, uint8, tiled, JPEG, overviews) and DIR/scene_labels.tif (the six Dubai
classes, colour table). The same --seed, --size and --gsd always give the same pixels. Large scenes
(e.g. --size 16384 for benchmarks) are generated block by block in bounded memory.

examples:
  segdeep sample --out sample_data --size 1536
  segdeep sample --out /tmp/big --size 16384
"""

from __future__ import annotations

import sys
import time

NAME = "sample"
HELP = "generate the sample scene (aerial-like RGB GeoTIFF + label GeoTIFF)"


def configure(parser) -> None:
    parser.add_argument("--out", required=True, metavar="DIR", help="folder for scene.tif and scene_labels.tif")
    parser.add_argument("--size", type=int, default=1024, help="width = height in pixels (default 1024)")
    parser.add_argument("--seed", type=int, default=0, help="layout seed (default 0)")
    parser.add_argument("--gsd", type=float, default=0.5, help="pixel size in metres (default 0.5)")
    parser.add_argument("--crs", default="EPSG:32640", help="projected CRS in metres (default EPSG:32640, UTM 40N)")
    parser.add_argument("--origin", type=float, nargs=2, metavar=("X", "Y"), default=None,
                        help="upper-left corner in CRS units (default: centred on Dubai)")
    parser.add_argument("--block-size", type=int, default=512,
                        help="pixels per generated block (default 512; memory grows with its square)")
    parser.add_argument("--preview", metavar="PNG", default=None,
                        help="also write a PNG with the image and its colour-coded labels side by side")
    parser.add_argument("--quiet", action="store_true", help="no progress output")


def run(args) -> int:
    from ..sample.scene import make_sample_scene, write_side_by_side

    start = time.perf_counter()

    def progress(done: int, total: int) -> None:
        if not args.quiet and total > 1:
            print(f"\rblock {done}/{total}", end="" if done < total else "\n", file=sys.stderr, flush=True)

    image, labels = make_sample_scene(args.out, size=args.size, seed=args.seed, gsd=args.gsd, crs=args.crs,
                                      origin=tuple(args.origin) if args.origin else None,
                                      block_size=args.block_size, progress=progress)
    print(f"image:  {image}")
    print(f"labels: {labels}")
    if args.preview:
        print(f"preview: {write_side_by_side(image, labels, args.preview)}")
    if not args.quiet:
        print(f"({args.size} x {args.size} px at {args.gsd} m, seed {args.seed}, "
              f"{time.perf_counter() - start:.1f} s)", file=sys.stderr)
    return 0
