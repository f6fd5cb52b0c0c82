"""Validation during training: tiled prediction over labelled sources and the card's scores."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from ..evaluate.metrics import ConfusionMatrix, scores
from .data import TrainSource


def _pad_to(x: torch.Tensor, multiple: int = 32) -> tuple[torch.Tensor, int, int]:
    h, w = x.shape[-2:]
    ph, pw = -h % multiple, -w % multiple
    if ph or pw:
        x = F.pad(x, (0, pw, 0, ph), mode="reflect" if min(h, w) > max(ph, pw) else "constant")
    return x, h, w


@torch.inference_mode()
def predict_source(model, src: TrainSource, scale: float, mean, std, device, tile_size: int = 512,
                   margin: int = 32, max_pixels: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Labels predicted over a source (or an evenly spread subset of its tiles when it is larger than
    ``max_pixels``) and the truth there: two flat uint8 arrays for the confusion matrix."""
    from rasterio.windows import Window

    m = torch.tensor(mean, dtype=torch.float32, device=device).view(1, -1, 1, 1)
    sd = torch.tensor(std, dtype=torch.float32, device=device).view(1, -1, 1, 1)
    tiles = [(c, r) for r in range(0, src.height, tile_size) for c in range(0, src.width, tile_size)]
    if max_pixels and len(tiles) * tile_size**2 > max_pixels:
        keep = max(1, max_pixels // tile_size**2)
        tiles = [tiles[i] for i in np.linspace(0, len(tiles) - 1, keep).round().astype(int)]
    preds, truths = [], []
    for c, r in tiles:
        w, h = min(tile_size, src.width - c), min(tile_size, src.height - r)
        win = Window(c - margin, r - margin, w + 2 * margin, h + 2 * margin)
        data, valid = src.read_image(win)
        x = torch.from_numpy(data.astype(np.float32) * scale)[None].to(device)
        x = (x - m) / sd
        x, hh, ww = _pad_to(x)
        logits = model(x)[..., :hh, :ww]
        pred = logits.argmax(1)[0, margin:margin + h, margin:margin + w].to(torch.uint8).cpu().numpy()
        truth = src.read_labels(Window(c, r, w, h))
        ok = valid[margin:margin + h, margin:margin + w]
        preds.append(pred[ok])
        truths.append(truth[ok])
    return np.concatenate(truths), np.concatenate(preds)


def evaluate_sources(model, sources, classes, scale, mean, std, device, tile_size=512, max_pixels=None) -> dict:
    """Validation scores (:func:`segdeep.evaluate.metrics.scores`) of ``model`` over labelled sources."""
    cm = ConfusionMatrix(len(classes))
    per_source = max_pixels // max(1, len(sources)) if max_pixels else None
    was_training = model.training
    model.eval()
    try:
        for src in sources:
            truth, pred = predict_source(model, src, scale, mean, std, device, tile_size, max_pixels=per_source)
            cm.update(truth, pred)
    finally:
        model.train(was_training)
    return scores(cm, list(classes))


def card_scores(val: dict | None) -> dict:
    """The validation scores kept in the card: the four scores and per-class IoU/accuracy/F1."""
    if not val:
        return {}
    keep = ("pixel_accuracy", "mean_accuracy", "mean_iou", "frequency_weighted_iou", "num_pixels")
    out = {k: val[k] for k in keep if k in val}
    out["classes"] = [{k: c[k] for k in ("index", "name", "iou", "accuracy", "precision", "f1", "support")}
                      for c in val["classes"]]
    return out
