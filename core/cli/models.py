"""List the architectures segdeep can build and the model bundles it finds.

Architectures: name, parameters in millions (6 classes, 3 input bands, default options), output
stride and paper. Bundles: every ``.safetensors`` file in the shipped ``sample_data/models/`` folder
and in each ``--folder``, with its card summary (classes, tile size, ground sample distance, validation
mean IoU). Only the file headers are read; networks are built on PyTorch's "meta" device to count
their parameters, so nothing is allocated and nothing is downloaded.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ..errors import SegdeepError

NAME = "models"
HELP = "list architectures (parameters, output stride) and model bundles"

#: The model bundles shipped with segdeep (present in a source checkout).
SAMPLE_MODELS = Path(__file__).resolve().parents[2] / "sample_data" / "models"


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--folder", action="append", default=[], metavar="DIR",
                        help="also list the bundles (*.safetensors) in DIR (repeatable)")
    parser.add_argument("--classes", type=int, default=6, metavar="N",
                        help="number of classes used to count parameters (default 6)")


def parameter_count(name: str, num_classes: int = 6, in_channels: int = 3, **kwargs) -> int:
    """Parameters of architecture ``name`` with default options, counted without allocating."""
    import torch

    from ..models import create_model

    with torch.device("meta"):
        model = create_model(name, num_classes=num_classes, in_channels=in_channels, **kwargs)
    return sum(p.numel() for p in model.parameters())


def _table(rows: list[list[str]], header: list[str]) -> str:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(str(c).ljust(w) for c, w in zip(header, widths, strict=True)).rstrip(),
             "  ".join("-" * w for w in widths)]
    lines += ["  ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    return "\n".join(lines)


def _miou(validation: dict) -> str:
    for key in ("mean_iou", "miou", "mIoU", "mean_iu"):
        if isinstance(validation.get(key), int | float):
            value = float(validation[key])
            return f"{value:.3f}" if value <= 1 else f"{value:.1f}"
    return "-"


def bundle_rows(folders: list[Path]) -> list[list[str]]:
    """One row per bundle: file, name, architecture, classes, tile size, gsd, val mIoU (or the error)."""
    from ..models.bundle import read_card

    rows = []
    for folder in folders:
        for path in sorted(folder.glob("*.safetensors")):
            try:
                card = read_card(path)
            except SegdeepError as exc:
                rows.append([str(path), f"unreadable: {exc}", "", "", "", "", ""])
                continue
            names = ", ".join(c.name for c in card.classes)
            gsd = f"{card.gsd:g} m" if card.gsd else "-"
            rows.append([str(path), card.name or "-", card.architecture, f"{len(card.classes)}: {names}",
                         f"{card.tile_size}", gsd, _miou(card.validation)])
    return rows


def run(args: argparse.Namespace) -> int:
    from ..models import list_models, model_entry

    folders = [Path(f) for f in args.folder]
    for folder in folders:
        if not folder.is_dir():
            raise SegdeepError(f"--folder {folder}: no such directory")
    rows = []
    for name in list_models():
        entry = model_entry(name)
        millions = parameter_count(name, num_classes=args.classes) / 1e6
        rows.append([name, f"{millions:.1f}", str(entry.output_stride), entry.paper])
    print(f"Architectures (parameters for {args.classes} classes, 3 bands, default options):\n")
    print(_table(rows, ["name", "params (M)", "output stride", "paper"]))
    searched = ([SAMPLE_MODELS] if SAMPLE_MODELS.is_dir() else []) + folders
    bundles = bundle_rows(searched)
    print(f"\nModel bundles in {', '.join(str(f) for f in searched) or '(no folder)'}:\n")
    if bundles:
        print(_table(bundles, ["file", "name", "architecture", "classes", "tile", "gsd", "val mIoU"]))
    else:
        print("(none)")
    return 0
