"""Training data: (image, labels) sources, class-balanced window sampling and augmentation.

A :class:`TrainSource` is one image with its labels: two rasters read window by window (a label
raster, a colour-coded or palette mask through :func:`segdeep.io.label_sources.open_labels`, or a vector
file rasterized with :class:`segdeep.io.rasterize.VectorReference`), or
two in-memory arrays. Small rasters (up to ``cache_pixels``) are read once and kept in memory; large
ones are never loaded whole: every sample is a windowed read.

Class balance. Each source's labels are scanned once (block by block) into a coarse grid of
per-cell class counts (cells of ``cell_size`` pixels). A sample first draws a class with
probability proportional to ``frequency ** balance`` (``balance=0``: every class equally often,
``1``: as often as its pixels), then a cell in proportion to that class's pixels in it, then a
window centre uniformly inside the cell. Rare classes are seen far more often than their share.

Augmentation (:func:`augment`): flips, 90-degree rotations, scale jitter (the window read is
``tile_size * s`` pixels, resized to ``tile_size``) and colour jitter (per-band gain and offset,
gamma), all drawn from one seeded ``numpy.random.Generator`` so a run is reproducible.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from rasterio.windows import Window

from ..classes import NODATA_LABEL, ClassInfo
from ..errors import SegdeepError
from ..io.label_sources import open_labels
from ..io.raster import check_bands, open_dataset, open_raster, read_window
from ..io.rasterize import VectorReference, is_vector_path

IMAGE_SUFFIXES = (".tif", ".tiff", ".jpg", ".jpeg", ".png", ".jp2", ".img", ".vrt")
MASK_SUFFIXES = (*IMAGE_SUFFIXES, ".gpkg", ".geojson", ".json", ".shp", ".fgb")


@dataclass
class TrainSource:
    """One training image and its labels, readable by window.

    Build it with :meth:`from_files` or :meth:`from_arrays`. ``counts`` is the per-cell class-count
    grid (rows x cols x classes, int64) used for balanced sampling.
    """

    name: str
    width: int
    height: int
    num_bands: int
    dtype: str
    image_path: str | None = None
    label_path: str | None = None
    label_kind: str = "array"
    bands: list[int] | None = None
    cell_size: int = 32
    image: np.ndarray | None = None  # bands x H x W (cached or in-memory)
    labels: np.ndarray | None = None  # H x W uint8, 255 = ignore
    counts: np.ndarray | None = None
    _label_source: object | None = field(default=None, repr=False)
    _dataset: object | None = field(default=None, repr=False)

    # -------------------------------------------------------------- construction
    @classmethod
    def from_files(cls, image_path: str | Path, label_path: str | Path, classes, *,
                   bands: list[int] | None = None, attribute: str | None = None,
                   cache_pixels: int = 16_000_000, cell_size: int = 32) -> TrainSource:
        """An image raster and its labels (index raster, colour mask, palette image or vector)."""
        info = open_raster(image_path, warn=False)
        bands = check_bands(info, bands)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if is_vector_path(label_path):
                labels = _VectorLabels(VectorReference(label_path, info, attribute=attribute or "class_index",
                                                       classes=classes))
            else:
                labels = open_labels(label_path, classes, like=info, attribute=attribute)
        if labels.kind != "vector" and (labels.info.width, labels.info.height) != (info.width, info.height):
            raise SegdeepError(
                f"{label_path}: labels are {labels.info.width} x {labels.info.height} px but the image "
                f"{image_path} is {info.width} x {info.height} px; they must cover the same pixels")
        src = cls(Path(image_path).stem, info.width, info.height, len(bands), info.dtype,
                  image_path=str(image_path), label_path=str(label_path), label_kind=labels.kind,
                  bands=bands, cell_size=cell_size, _label_source=labels)
        if info.width * info.height <= cache_pixels:
            full = Window(0, 0, info.width, info.height)
            image, valid = read_window(str(image_path), full, bands)
            lab, _ = labels.read(full)
            src.image, src.labels = image, np.where(valid, lab, NODATA_LABEL).astype(np.uint8)
        src._check_labels(len(classes))
        src.counts = src._count_cells(len(classes))
        return src

    @classmethod
    def from_arrays(cls, image: np.ndarray, labels: np.ndarray, num_classes: int, *, name: str = "array",
                    cell_size: int = 32) -> TrainSource:
        """An in-memory image (bands x H x W, or H x W for one band) and labels (H x W, 255 = ignore)."""
        image = np.asarray(image)
        if image.ndim == 2:
            image = image[None]
        labels = np.asarray(labels)
        if image.ndim != 3 or labels.shape != image.shape[1:]:
            raise SegdeepError(f"{name}: image {image.shape} and labels {labels.shape} do not match; "
                               "expected bands x H x W and H x W")
        if labels.dtype != np.uint8:
            if labels.size and (labels.min() < 0 or labels.max() > NODATA_LABEL):
                raise SegdeepError(f"{name}: label values must be 0-255, got {labels.min()}..{labels.max()}")
            labels = labels.astype(np.uint8)
        src = cls(name, image.shape[2], image.shape[1], image.shape[0], str(image.dtype),
                  cell_size=cell_size, image=image, labels=labels)
        src._check_labels(num_classes)
        src.counts = src._count_cells(num_classes)
        return src

    def _check_labels(self, num_classes: int) -> None:
        if self.labels is None:
            return
        bad = (self.labels >= num_classes) & (self.labels != NODATA_LABEL)
        if bad.any():
            raise SegdeepError(
                f"{self.label_path or self.name}: label value {int(self.labels[bad][0])} is not a class "
                f"(there are {num_classes} classes, 0-{num_classes - 1}; 255 = ignore)")

    def _count_cells(self, num_classes: int) -> np.ndarray:
        """Per-cell class counts (rows x cols x classes); streams large label rasters by block."""
        cs = self.cell_size
        rows, cols = -(-self.height // cs), -(-self.width // cs)
        counts = np.zeros((rows, cols, num_classes), dtype=np.int64)
        block = max(cs, (2048 // cs) * cs)
        for r0 in range(0, self.height, block):
            for c0 in range(0, self.width, block):
                lab = self.read_labels(Window(c0, r0, min(block, self.width - c0), min(block, self.height - r0)))
                bad = (lab >= num_classes) & (lab != NODATA_LABEL)
                if bad.any():
                    raise SegdeepError(
                        f"{self.label_path or self.name}: label value {int(lab[bad][0])} is not a class "
                        f"(there are {num_classes} classes; 255 = ignore)")
                h, w = lab.shape
                rr, cc = np.mgrid[0:h, 0:w]
                keep = lab != NODATA_LABEL
                cell = ((rr[keep] + r0) // cs) * cols + (cc[keep] + c0) // cs
                code = cell * num_classes + lab[keep]
                counts.reshape(-1)[:] += np.bincount(code, minlength=rows * cols * num_classes)
        return counts

    # -------------------------------------------------------------- reading
    def read_image(self, window: Window) -> tuple[np.ndarray, np.ndarray]:
        """``(bands x h x w in the source dtype, valid h x w)``; outside the image: 0 and invalid."""
        if self.image is not None:
            return _crop(self.image, window), _crop(np.ones(self.image.shape[1:], bool), window)
        if self._dataset is None:
            self._dataset = open_dataset(self.image_path)
        return read_window(self._dataset, window, self.bands)

    def read_labels(self, window: Window) -> np.ndarray:
        """Labels (uint8, 255 = ignore or outside) of a window."""
        if self.labels is not None:
            return _crop(self.labels, window, fill=NODATA_LABEL)
        lab, valid = self._label_source.read(window)
        return np.where(valid, lab, NODATA_LABEL).astype(np.uint8)

    def describe(self) -> dict:
        """What the card records about this source."""
        d = {"name": self.name, "width": self.width, "height": self.height}
        if self.image_path:
            d.update(image=self.image_path, labels=self.label_path, label_kind=self.label_kind)
        return d

    def close(self) -> None:
        if self._dataset is not None:
            self._dataset.close()
            self._dataset = None


class _VectorLabels:
    """A vector reference rasterized window by window onto the image's grid (``read(window)``)."""

    kind = "vector"

    def __init__(self, reference) -> None:
        self.reference = reference
        self.info = reference.info

    def read(self, window: Window) -> tuple[np.ndarray, np.ndarray]:
        return self.reference.read(window)


def _crop(a: np.ndarray, window: Window, fill=0) -> np.ndarray:
    """A window of an in-memory array (last two axes), padded with ``fill`` outside."""
    c0, r0, w, h = int(window.col_off), int(window.row_off), int(window.width), int(window.height)
    H, W = a.shape[-2:]
    out = np.full((*a.shape[:-2], h, w), fill, dtype=a.dtype)
    rs, re_ = max(0, r0), min(H, r0 + h)
    cs, ce = max(0, c0), min(W, c0 + w)
    if re_ > rs and ce > cs:
        out[..., rs - r0:re_ - r0, cs - c0:ce - c0] = a[..., rs:re_, cs:ce]
    return out


def find_pairs(folder: str | Path) -> list[tuple[Path, Path]]:
    """(image, mask) pairs of a dataset folder holding ``images/`` and ``masks/`` (or ``labels/``),
    matched by file stem (a mask named ``<stem>_labels`` or ``<stem>_mask`` also matches)."""
    folder = Path(folder)
    images_dir = folder / "images"
    masks_dir = next((folder / n for n in ("masks", "labels") if (folder / n).is_dir()), None)
    if not images_dir.is_dir() or masks_dir is None:
        raise SegdeepError(f"{folder}: a dataset folder must hold images/ and masks/ (or labels/) subfolders")
    masks = {}
    for m in sorted(masks_dir.iterdir()):
        if m.suffix.lower() in MASK_SUFFIXES:
            stem = m.stem
            for tail in ("_labels", "_label", "_mask"):
                if stem.endswith(tail):
                    stem = stem[: -len(tail)]
            masks.setdefault(stem, m)
    pairs, missing = [], []
    for img in sorted(images_dir.iterdir()):
        if img.suffix.lower() not in IMAGE_SUFFIXES or img.name.endswith(".aux.xml"):
            continue
        if img.stem in masks:
            pairs.append((img, masks[img.stem]))
        else:
            missing.append(img.name)
    if missing:
        raise SegdeepError(f"{masks_dir}: no mask for image(s) {', '.join(missing[:5])} (matched by file stem)")
    if not pairs:
        raise SegdeepError(f"{images_dir}: no images ({', '.join(IMAGE_SUFFIXES)})")
    return pairs


# ------------------------------------------------------------------ normalisation


def pixel_scale(dtype: str) -> float:
    """Factor taking raw pixels to about 0-1: 1/255 for 8-bit, 1/65535 for 16-bit, else 1."""
    if dtype in ("uint8", "int8"):
        return 1 / 255
    if dtype in ("uint16", "int16"):
        return 1 / 65535
    return 1.0


def band_statistics(sources: list[TrainSource], scale: float, rng: np.random.Generator,
                    windows_per_source: int = 8, size: int = 256) -> tuple[list[float], list[float]]:
    """Per-band mean and std of ``pixel * scale`` over valid pixels of random windows of each source."""
    total, total_sq, n = None, None, 0
    for src in sources:
        for _ in range(windows_per_source if src.image is None else 1):
            if src.image is not None:
                data, valid = src.image, np.ones(src.image.shape[1:], bool)
            else:
                c = int(rng.integers(0, max(1, src.width - size + 1)))
                r = int(rng.integers(0, max(1, src.height - size + 1)))
                data, valid = src.read_image(Window(c, r, min(size, src.width), min(size, src.height)))
            x = data[:, valid].astype(np.float64) * scale
            if total is None:
                total, total_sq = np.zeros(x.shape[0]), np.zeros(x.shape[0])
            total += x.sum(1)
            total_sq += (x * x).sum(1)
            n += x.shape[1]
    if not n:
        raise SegdeepError("the training images have no valid pixels")
    mean = total / n
    std = np.sqrt(np.maximum(total_sq / n - mean**2, 1e-12))
    return [float(v) for v in mean], [float(max(v, 1e-3)) for v in std]


# ------------------------------------------------------------------ sampling


class WindowSampler:
    """Draws training windows from sources, balanced towards rare classes (see module docstring).

    ``balance`` in [0, 1] is the exponent on class frequency (0.5 default: square-root balancing).
    """

    def __init__(self, sources: list[TrainSource], num_classes: int, balance: float = 0.5) -> None:
        self.sources = sources
        self.num_classes = num_classes
        per_class = np.zeros(num_classes, dtype=np.float64)
        self._cells = []  # per class: (source index array, flat cell array, cumulative weights)
        for s in sources:
            per_class += s.counts.reshape(-1, num_classes).sum(0)
        if per_class.sum() == 0:
            raise SegdeepError("the training labels hold no class pixels (all ignore / nodata)")
        self.class_pixels = per_class
        freq = per_class / per_class.sum()
        w = np.where(per_class > 0, freq ** balance, 0.0)
        self.class_prob = w / w.sum()
        for k in range(num_classes):
            src_idx, cell_idx, weights = [], [], []
            for i, s in enumerate(sources):
                c = s.counts.reshape(-1, num_classes)[:, k]
                nz = np.flatnonzero(c)
                src_idx.append(np.full(nz.size, i))
                cell_idx.append(nz)
                weights.append(c[nz].astype(np.float64))
            weights = np.concatenate(weights) if weights else np.zeros(0)
            cum = np.cumsum(weights)
            self._cells.append((np.concatenate(src_idx), np.concatenate(cell_idx), cum))

    def draw(self, rng: np.random.Generator, size: int) -> tuple[int, Window]:
        """A source index and a ``size`` x ``size`` window centred near a pixel of a drawn class."""
        k = int(rng.choice(self.num_classes, p=self.class_prob))
        src_idx, cell_idx, cum = self._cells[k]
        j = int(np.searchsorted(cum, rng.random() * cum[-1], side="right"))
        j = min(j, cum.size - 1)
        s = self.sources[int(src_idx[j])]
        cols = s.counts.shape[1]
        r, c = divmod(int(cell_idx[j]), cols)
        cy = r * s.cell_size + rng.random() * s.cell_size
        cx = c * s.cell_size + rng.random() * s.cell_size
        # Keep the window inside the image when the image is larger than the window.
        x0 = int(round(cx - size / 2))
        y0 = int(round(cy - size / 2))
        x0 = min(max(x0, 0), max(0, s.width - size)) if s.width >= size else int(round((s.width - size) / 2))
        y0 = min(max(y0, 0), max(0, s.height - size)) if s.height >= size else int(round((s.height - size) / 2))
        return int(src_idx[j]), Window(x0, y0, size, size)


@dataclass
class Augment:
    """Augmentation settings; ``enabled=False`` turns all of them off."""

    enabled: bool = True
    flips: bool = True
    rotate90: bool = True
    scale: tuple[float, float] = (0.75, 1.33)
    gain: float = 0.15  # per-band multiplicative jitter (+/-)
    offset: float = 0.05  # per-band additive jitter, in units of the 0-1 pixel range
    gamma: float = 0.15  # gamma in [1 - g, 1 + g]


def sample_batch(sampler: WindowSampler, rng: np.random.Generator, batch_size: int, tile_size: int,
                 scale: float, mean: list[float], std: list[float], augment: Augment
                 ) -> tuple[torch.Tensor, torch.Tensor]:
    """One batch: normalised images (N x C x tile x tile float32) and labels (N x tile x tile int64)."""
    xs, ys = [], []
    for _ in range(batch_size):
        s = 1.0
        if augment.enabled and augment.scale[1] > augment.scale[0]:
            lo, hi = np.log(augment.scale[0]), np.log(augment.scale[1])
            s = float(np.exp(rng.uniform(lo, hi)))
        read = max(8, int(round(tile_size * s)))
        i, window = sampler.draw(rng, read)
        src = sampler.sources[i]
        data, valid = src.read_image(window)
        lab = src.read_labels(window)
        lab = np.where(valid, lab, NODATA_LABEL)
        x = torch.from_numpy(data.astype(np.float32) * scale)
        y = torch.from_numpy(lab.astype(np.int64))
        if read != tile_size:
            x = F.interpolate(x[None], size=(tile_size, tile_size), mode="bilinear", align_corners=False,
                              antialias=read > tile_size)[0]
            y = F.interpolate(y[None, None].float(), size=(tile_size, tile_size), mode="nearest")[0, 0].long()
        x, y = augment_pair(x, y, rng, augment)
        xs.append(x)
        ys.append(y)
    x = torch.stack(xs)
    m = torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1)
    sd = torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1)
    return (x - m) / sd, torch.stack(ys)


def augment_pair(x: torch.Tensor, y: torch.Tensor, rng: np.random.Generator, augment: Augment
                 ) -> tuple[torch.Tensor, torch.Tensor]:
    """Flips, 90-degree rotation and colour jitter of one image (C x H x W, ~0-1) and labels (H x W)."""
    if not augment.enabled:
        return x, y
    if augment.flips and rng.random() < 0.5:
        x, y = x.flip(-1), y.flip(-1)
    if augment.flips and rng.random() < 0.5:
        x, y = x.flip(-2), y.flip(-2)
    if augment.rotate90:
        k = int(rng.integers(0, 4))
        if k:
            x, y = torch.rot90(x, k, (-2, -1)), torch.rot90(y, k, (-2, -1))
    c = x.shape[0]
    if augment.gamma:
        g = float(rng.uniform(1 - augment.gamma, 1 + augment.gamma))
        x = x.clamp(min=0) ** g
    if augment.gain or augment.offset:
        gain = torch.from_numpy(rng.uniform(1 - augment.gain, 1 + augment.gain, c).astype(np.float32))
        off = torch.from_numpy(rng.uniform(-augment.offset, augment.offset, c).astype(np.float32))
        x = x * gain.view(-1, 1, 1) + off.view(-1, 1, 1)
    return x.contiguous(), y.contiguous()


def class_weights_auto(class_pixels: np.ndarray, max_ratio: float = 10.0) -> list[float]:
    """Inverse square-root frequency weights, mean 1 over present classes, capped at ``max_ratio``."""
    freq = class_pixels / max(class_pixels.sum(), 1)
    w = np.where(freq > 0, 1.0 / np.sqrt(np.maximum(freq, 1e-12)), 0.0)
    present = w > 0
    w = np.minimum(w, w[present].min() * max_ratio)
    w = w / w[present].mean()
    return [float(v) for v in w]


def check_classes_cover(classes: list[ClassInfo]) -> None:
    """Class indices must be 0 .. K-1 (the model's outputs)."""
    idx = [c.index for c in classes]
    if idx != list(range(len(classes))):
        raise SegdeepError(f"class indices must be 0..{len(classes) - 1} in order to train, got {idx}")
