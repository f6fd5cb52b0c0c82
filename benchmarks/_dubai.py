"""Real Dubai aerial images and corrupted-truth class probabilities, for the CRF scripts.

The images and masks come from ``../shared/data/dubai`` (or ``SEGDEEP_SHARED_DATA``); they are never
copied into the repository. ``corrupted_probs`` turns a true label map into the kind of output a
segmentation network gives: class probabilities with softened (blurred) boundaries and spatially
correlated errors - the unary the CRF is supposed to clean up.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from PIL import Image
from scipy import ndimage
from segdeep.classes import DUBAI_CLASSES, decode_rgb_mask


def data_root() -> Path | None:
    env = os.environ.get("SEGDEEP_SHARED_DATA")
    root = Path(env) if env else Path(__file__).resolve().parents[1].parent / "shared" / "data"
    return root / "dubai" if (root / "dubai").is_dir() else None


def dubai_pairs(tile: int) -> list[tuple[Path, Path]]:
    """(image, mask) paths of one Dubai tile folder."""
    root = data_root()
    if root is None:
        return []
    images = sorted((root / f"tile_{tile}" / "images").glob("*.jpg"))
    return [(p, root / f"tile_{tile}" / "masks" / (p.stem + ".png")) for p in images]


def load_pair(image: Path, mask: Path) -> tuple[np.ndarray, np.ndarray]:
    """RGB image (H x W x 3 uint8) and labels (H x W uint8, 255 = ignore)."""
    rgb = np.asarray(Image.open(image).convert("RGB"))
    labels = decode_rgb_mask(np.asarray(Image.open(mask).convert("RGB")), DUBAI_CLASSES, where=str(mask))
    return np.ascontiguousarray(rgb), labels


def tiled(a: np.ndarray, size: int) -> np.ndarray:
    """Crop (or mirror-tile, for images smaller than ``size``) the first two axes to size x size."""
    reps = [-(-size // a.shape[0]), -(-size // a.shape[1])] + [1] * (a.ndim - 2)
    if reps[0] > 1 or reps[1] > 1:
        a = np.pad(a, [(0, (reps[0] - 1) * a.shape[0]), (0, (reps[1] - 1) * a.shape[1])] + [(0, 0)] * (a.ndim - 2),
                   mode="symmetric")
    return np.ascontiguousarray(a[:size, :size])


def corrupted_probs(labels: np.ndarray, num_classes: int = 6, seed: int = 0, blur_px: float = 4.0,
                    noise: float = 2.0, noise_px: float = 8.0, sharpness: float = 4.0) -> np.ndarray:
    """Class probabilities (C x H x W float32) from a true label map: one-hot, Gaussian-blurred by
    ``blur_px`` (soft boundaries), plus smooth random logit noise of std ``noise`` and correlation
    length ``noise_px`` (blob-shaped mistakes); ignore pixels get a uniform one-hot."""
    rng = np.random.default_rng(seed)
    onehot = np.zeros((num_classes, *labels.shape), np.float32)
    valid = labels < num_classes
    onehot[(labels[valid], *np.nonzero(valid))] = 1.0
    onehot[:, ~valid] = 1.0 / num_classes
    soft = ndimage.gaussian_filter(onehot, (0, blur_px, blur_px))
    field = ndimage.gaussian_filter(rng.normal(size=onehot.shape).astype(np.float32), (0, noise_px, noise_px))
    field *= noise / max(float(field.std()), 1e-6)
    logits = sharpness * soft + field
    logits -= logits.max(0, keepdims=True)
    p = np.exp(logits)
    return (p / p.sum(0, keepdims=True)).astype(np.float32)


def miou(truth: np.ndarray, pred: np.ndarray, num_classes: int = 6, ignore: int = 255) -> float:
    """Mean IoU over classes present in truth or prediction (ignore pixels excluded)."""
    keep = truth != ignore
    cm = np.bincount(truth[keep].astype(np.int64) * num_classes + pred[keep], minlength=num_classes ** 2)
    cm = cm.reshape(num_classes, num_classes)
    inter = np.diag(cm)
    union = cm.sum(0) + cm.sum(1) - inter
    present = union > 0
    return float((inter[present] / union[present]).mean())
