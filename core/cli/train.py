"""Train a segmentation model on your own labelled rasters and write a model bundle.

Labels are class-index rasters (0..K-1, 255 = ignore), colour-coded RGB or palette masks decoded
with --classes (default: the Dubai palette), or vector files (GeoPackage, GeoJSON, Shapefile) with a
class column (--label-attribute), rasterized onto each image's grid. Training samples random windows
(class-balanced), augments them, and keeps the model with the best validation mean IoU; a checkpoint
beside --out lets --resume continue an interrupted run.

examples:
  segdeep train --images a.tif b.tif --labels a_labels.tif b_labels.tif --arch unet \\
      --model-arg base_channels=16 --epochs 30 --val-split 0.2 --out my_model.safetensors
  segdeep train --dataset-dir data/train --val-dataset-dir data/val --arch deeplab_v3plus \\
      --backbone mobilenet_v3_large --time-budget 60 --out my_model.safetensors
  segdeep train --images scene.tif --labels buildings.gpkg --label-attribute class \\
      --classes classes.json --out m.safetensors
  segdeep train --images scene.tif --labels fixed_labels.tif --init default.safetensors --epochs 5 --out tuned.safetensors
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ..errors import SegdeepError

NAME = "train"
HELP = "train a model on labelled rasters (class rasters, colour masks or polygons) into a bundle"


def configure(parser) -> None:
    data = parser.add_argument_group("training data")
    data.add_argument("--images", nargs="+", default=[], metavar="IMAGE", help="training rasters")
    data.add_argument("--labels", nargs="+", default=[], metavar="LABELS",
                      help="one label file per image: class raster, colour mask or vector file")
    data.add_argument("--dataset-dir", nargs="+", default=[], metavar="DIR",
                      help="folder(s) holding images/ and masks/ (pairs matched by file stem)")
    data.add_argument("--val-images", nargs="+", default=[], metavar="IMAGE", help="validation rasters")
    data.add_argument("--val-labels", nargs="+", default=[], metavar="LABELS", help="their labels")
    data.add_argument("--val-dataset-dir", nargs="+", default=[], metavar="DIR", help="validation folder(s)")
    data.add_argument("--val-split", type=float, default=0.0, metavar="FRACTION",
                      help="hold out this fraction of the training data when no validation data is given")
    data.add_argument("--classes", default=None, metavar="JSON_OR_BUNDLE",
                      help="class palette (names, colours): a JSON file or a model bundle (default: Dubai's six)")
    data.add_argument("--label-attribute", default=None, metavar="COLUMN",
                      help="class column of vector labels: class indices or class names (default class_index)")
    data.add_argument("--bands", default=None, metavar="1,2,3", help="1-based image bands to train on (default all)")
    data.add_argument("--gsd", type=float, default=None, metavar="METRES",
                      help="ground sample distance recorded in the card (default: from the first georeferenced image)")
    model = parser.add_argument_group("model")
    model.add_argument("--arch", default="unet", help="architecture (segdeep.list_models()); default unet")
    model.add_argument("--backbone", default=None, help="backbone for deeplab*, pspnet, ... (e.g. mobilenet_v3_large, resnet18)")
    model.add_argument("--model-arg", action="append", default=[], metavar="KEY=VALUE",
                       help="extra architecture argument, e.g. base_channels=16 (repeatable; value parsed as JSON)")
    model.add_argument("--init", default=None, metavar="BUNDLE",
                       help="fine-tune this model bundle (keeps its architecture, classes and normalisation)")
    model.add_argument("--out", required=True, metavar="BUNDLE", help="model bundle to write (.safetensors)")
    model.add_argument("--half", action="store_true", help="store fp16 weights (half the file size)")
    run = parser.add_argument_group("schedule")
    run.add_argument("--tile-size", type=int, default=256, metavar="PX", help="training window side (default 256)")
    run.add_argument("--batch-size", type=int, default=8, metavar="N", help="windows per step (default 8)")
    stop = run.add_mutually_exclusive_group()
    stop.add_argument("--epochs", type=int, default=None, metavar="N", help="epochs (default 20)")
    stop.add_argument("--time-budget", type=float, default=None, metavar="MINUTES", help="train for this long instead")
    run.add_argument("--steps-per-epoch", type=int, default=None, metavar="N",
                     help="optimiser steps per epoch (default: about one pass over the training pixels)")
    run.add_argument("--lr", type=float, default=2e-3, help="peak AdamW learning rate (default 2e-3)")
    run.add_argument("--weight-decay", type=float, default=1e-4)
    run.add_argument("--class-weights", default="auto", metavar="auto|none|W1,W2,...",
                     help="cross-entropy class weights (auto: inverse square-root frequency)")
    run.add_argument("--dice", type=float, default=0.0, metavar="WEIGHT", help="add a soft Dice loss with this weight")
    run.add_argument("--augment", action=argparse.BooleanOptionalAction, default=True,
                     help="flips, 90-degree rotations, scale and colour jitter (default on)")
    run.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    run.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16", "fp16"],
                     help="auto: fp32 on CPU, bf16/fp16 autocast on CUDA")
    run.add_argument("--seed", type=int, default=0)
    run.add_argument("--resume", action="store_true", help="continue from the checkpoint beside --out")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def _pairs(args, images, labels, dirs, what: str):
    from ..training.data import find_pairs

    images, labels = list(images), list(labels)
    if len(images) != len(labels):
        raise SegdeepError(f"--{what}images: {len(images)} image(s) but {len(labels)} label file(s); "
                           "give one label file per image, in the same order")
    for d in dirs:
        for i, m in find_pairs(d):
            images.append(i)
            labels.append(m)
    return images, labels


def _model_kwargs(args) -> dict:
    kwargs = {}
    if args.backbone:
        kwargs["backbone"] = args.backbone
    for item in args.model_arg:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise SegdeepError(f"--model-arg {item!r}: expected KEY=VALUE, e.g. base_channels=16")
        try:
            kwargs[key.strip()] = json.loads(value)
        except json.JSONDecodeError:
            kwargs[key.strip()] = value
    return kwargs


def _class_weights(text: str):
    if text in ("auto", "none"):
        return text
    try:
        return [float(v) for v in text.split(",")]
    except ValueError:
        raise SegdeepError(f"--class-weights {text!r}: use auto, none or numbers separated by commas") from None


def run(args) -> int:
    from ..io.paths import check_outputs
    from ..models.card import load_classes
    from ..runtime import drain
    from ..training.config import TrainConfig
    from ..training.events import EpochDone, Started, Step
    from ..training.loop import checkpoint_path, iter_train, open_sources

    images, labels = _pairs(args, args.images, args.labels, args.dataset_dir, "")
    if not images:
        raise SegdeepError("no training data: give --images and --labels, or --dataset-dir")
    val_images, val_labels = _pairs(args, args.val_images, args.val_labels, args.val_dataset_dir, "val-")
    out = Path(args.out)
    if out.suffix != ".safetensors":
        raise SegdeepError(f"--out {out}: a model bundle is a .safetensors file")
    check_outputs([("training image", p) for p in images] + [("training labels", p) for p in labels]
                  + [("validation image", p) for p in val_images] + [("validation labels", p) for p in val_labels]
                  + [("--init bundle", args.init), ("--classes", args.classes)],
                  [("--out", out), ("checkpoint beside --out", checkpoint_path(out))])
    if not out.parent.exists():
        out.parent.mkdir(parents=True, exist_ok=True)
    if args.init:
        from ..models.bundle import read_card

        card = read_card(args.init)
        classes = list(card.classes)
    else:
        classes = load_classes(args.classes)
    bands = None
    if args.bands:
        try:
            bands = [int(b) for b in args.bands.split(",")]
        except ValueError:
            raise SegdeepError(f"--bands {args.bands!r}: expected 1-based band numbers separated by commas") from None
    train_sources = open_sources(images, labels, classes, bands=bands, attribute=args.label_attribute)
    val_sources = open_sources(val_images, val_labels, classes, bands=bands, attribute=args.label_attribute)
    gsd = args.gsd
    if gsd is None:
        from ..io.raster import open_raster

        info = open_raster(images[0], warn=False)
        gsd = float(info.res[0]) if info.georeferenced and info.crs is not None and info.crs.is_projected else None
    config = TrainConfig(
        arch=args.arch, model_kwargs=_model_kwargs(args), tile_size=args.tile_size, batch_size=args.batch_size,
        epochs=args.epochs, time_budget=args.time_budget, steps_per_epoch=args.steps_per_epoch, lr=args.lr,
        weight_decay=args.weight_decay, class_weights=_class_weights(args.class_weights), dice=args.dice,
        augment=args.augment, device=args.device, precision=args.precision, seed=args.seed,
        val_split=args.val_split, gsd=gsd)
    events = iter_train(train_sources, classes, config, val_sources=val_sources, out=out, init=args.init,
                        resume=args.resume, half=args.half)
    bar = None

    def show(e) -> None:
        nonlocal bar
        if isinstance(e, Started):
            total = f"{e.total_epochs} epochs" if e.total_epochs else f"{args.time_budget} min"
            resumed = f", resuming after epoch {e.resumed_epoch}" if e.resumed_epoch else ""
            print(f"segdeep train: {config.arch if not args.init else args.init} "
                  f"({e.num_parameters / 1e6:.2f} M parameters) on {e.device}, {len(train_sources)} training "
                  f"image(s), {len(val_sources)} validation image(s), {total} of {e.steps_per_epoch} steps"
                  f"{resumed}", file=sys.stderr)
        elif isinstance(e, Step):
            if bar is None and not args.quiet:
                from tqdm import tqdm

                bar = tqdm(total=e.steps_per_epoch, unit="step", file=sys.stderr, dynamic_ncols=True,
                           disable=None, leave=False)
            if bar is not None:
                if e.step == 1:
                    bar.reset()
                    bar.set_description(f"epoch {e.epoch}")
                bar.update(1)
                bar.set_postfix_str(f"loss {e.loss:.3f} lr {e.lr:.1e} {e.tiles_per_second:.1f} tiles/s")
        elif isinstance(e, EpochDone):
            if bar is not None:
                bar.clear()
            val = (f", val mIoU {e.val['mean_iou']:.3f} pixel acc {e.val['pixel_accuracy']:.3f}"
                   if e.val else "")
            print(f"epoch {e.epoch}: loss {e.train_loss:.3f}{val}{'  (best, saved)' if e.best else ''} "
                  f"[{e.elapsed / 60:.1f} min]", file=sys.stderr)

    try:
        result = drain(events, show)
    finally:
        if bar is not None:
            bar.close()
        events.close()
    v = result.card.validation
    if v.get("mean_iou") is not None:
        per_class = ", ".join(f"{c['name']} {c['iou']:.2f}" for c in v.get("classes", []) if c.get("iou") is not None)
        print(f"best validation mean IoU {v['mean_iou']:.3f} ({per_class})")
    print(f"model: {result.path}")
    return 0
