"""Training a segmentation model on labelled rasters, or on in-memory arrays, into a model bundle.

One code path, three front ends. :func:`iter_train` is a generator: it yields progress events
(:class:`Started`, :class:`Step` every optimiser step, :class:`EpochDone` with the validation scores)
and returns a :class:`TrainResult`; closing it cancels cleanly. :func:`train` (files; what
``segdeep train`` runs) and :func:`train_arrays` (napari fine-tuning from edited masks) drain it.

The loop: class-balanced random windows (see :mod:`segdeep.training.data`), augmentation,
cross-entropy with the ignore index (optional class weights, optional soft Dice), AdamW with a linear
warm-up and cosine decay, validation after each epoch with :class:`segdeep.evaluate.metrics.ConfusionMatrix`
(mean IoU over the classes), a checkpoint after each epoch (``<out>.checkpoint.pt`` beside the
output, for ``resume``), and the best model by validation mean IoU written as a bundle whose card
records classes, colours, normalisation, tile size, gsd, the training data, the settings and the
validation scores. A run with ``epochs`` is deterministic for a given ``seed`` (each epoch reseeds
from ``(seed, epoch)``, so a resumed run continues exactly); with ``time_budget`` the number of
steps depends on the machine's speed.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Generator, Sequence
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..classes import DUBAI_CLASSES, NODATA_LABEL, ClassInfo
from ..errors import SegdeepError
from ..models.bundle import ModelCard, load_bundle, read_card, save_bundle
from ..models.registry import create_model
from ..runtime import autocast_dtype, drain, resolve_device, resolve_precision
from .config import TrainConfig
from .data import (
    Augment,
    TrainSource,
    WindowSampler,
    band_statistics,
    check_classes_cover,
    class_weights_auto,
    pixel_scale,
    sample_batch,
)
from .events import EpochDone, Started, Step, TrainResult
from .validation import card_scores, evaluate_sources

# ------------------------------------------------------------------ helpers


def lr_at(progress: float, base: float, warmup: float) -> float:
    """Learning rate at ``progress`` (0-1 of the run): linear warm-up, then cosine decay to 1%."""
    progress = min(max(progress, 0.0), 1.0)
    if warmup > 0 and progress < warmup:
        return base * (0.01 + 0.99 * progress / warmup)
    t = (progress - warmup) / max(1e-9, 1 - warmup)
    return base * (0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * t)))


def dice_loss(logits: torch.Tensor, target: torch.Tensor, ignore_index: int = NODATA_LABEL) -> torch.Tensor:
    """Soft Dice loss (1 - mean Dice over classes present in the target or prediction)."""
    k = logits.shape[1]
    keep = (target != ignore_index).unsqueeze(1).float()
    prob = logits.float().softmax(1) * keep
    onehot = F.one_hot(target.clamp(0, k - 1), k).permute(0, 3, 1, 2).float() * keep
    inter = (prob * onehot).sum((0, 2, 3))
    denom = prob.sum((0, 2, 3)) + onehot.sum((0, 2, 3))
    present = onehot.sum((0, 2, 3)) > 0
    dice = (2 * inter + 1) / (denom + 1)
    return 1 - dice[present].mean() if present.any() else logits.sum() * 0


def split_validation(sources: list[TrainSource], fraction: float, seed: int
                     ) -> tuple[list[TrainSource], list[TrainSource]]:
    """Hold out ``fraction`` of the data: whole sources when there are several, else the bottom
    rows of the only (in-memory or cached) source."""
    if not 0 < fraction < 1:
        raise SegdeepError(f"--val-split {fraction}: expected a fraction between 0 and 1 (e.g. 0.2)")
    if len(sources) >= 2:
        order = np.random.default_rng(seed).permutation(len(sources))
        n_val = max(1, min(len(sources) - 1, round(len(sources) * fraction)))
        val = [sources[i] for i in sorted(order[:n_val])]
        return [s for s in sources if s not in val], val
    src = sources[0]
    if src.image is None:
        raise SegdeepError(f"{src.image_path}: one large image cannot be split for validation; "
                           "give --val-images/--val-labels")
    cut = int(round(src.height * (1 - fraction)))
    k = src.counts.shape[2]
    top = TrainSource.from_arrays(src.image[:, :cut], src.labels[:cut], k, name=f"{src.name}[train]")
    bottom = TrainSource.from_arrays(src.image[:, cut:], src.labels[cut:], k, name=f"{src.name}[val]")
    return [top], [bottom]


def checkpoint_path(out: str | Path) -> Path:
    """Where the checkpoint of a run writing ``out`` lives: ``<out>.checkpoint.pt`` beside it."""
    out = Path(out)
    return out.with_name(out.name + ".checkpoint.pt")


#: What a checkpoint written by :func:`_save_checkpoint` holds (checked before it is used).
_CHECKPOINT_KEYS = ("arch", "num_classes", "model", "optimizer", "epoch", "elapsed", "best_score", "history",
                    "mean", "std", "scale")


def _load_checkpoint(path: Path) -> dict:
    """A training checkpoint, loaded without unpickling code (``weights_only``); one line naming the
    file when it is cut short, damaged, holds code (a pickle ``weights_only`` refuses) or is not
    a segdeep checkpoint."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - torch raises many types for a bad file (zip, unpickling, EOF)
        detail = " ".join(str(exc).split())[:120]
        raise SegdeepError(f"{path}: not a readable segdeep training checkpoint ({type(exc).__name__}: {detail}); "
                           "it is cut short, damaged or holds code, which is never run; delete it and train "
                           "without --resume") from None
    if not isinstance(state, dict) or any(k not in state for k in _CHECKPOINT_KEYS):
        raise SegdeepError(f"{path}: not a segdeep training checkpoint (expected the keys {', '.join(_CHECKPOINT_KEYS)}); "
                           "delete it and train without --resume")
    return state


def _save_checkpoint(path: Path, state: dict) -> None:
    tmp = path.with_name(path.name + ".tmp")
    try:
        torch.save(state, tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


# ------------------------------------------------------------------ the loop


def iter_train(train_sources: list[TrainSource], classes: Sequence[ClassInfo], config: TrainConfig, *,
               val_sources: list[TrainSource] | None = None, out: str | Path | None = None,
               init: str | Path | None = None, resume: bool = False, name: str | None = None,
               half: bool = False) -> Generator[Started | Step | EpochDone, None, TrainResult]:
    """Train, yielding progress events; returns a :class:`TrainResult` (the best model and its card).

    ``init``: a model bundle to fine-tune (its architecture, classes and normalisation are kept).
    ``out``: the bundle to write (best model so far after every epoch; fp16 weights with ``half``)
    and, beside it, the checkpoint that ``resume=True`` continues from. Without validation data the
    model with the lowest training loss of an epoch is kept.
    """
    classes = list(classes)
    check_classes_cover(classes)
    if not train_sources:
        raise SegdeepError("no training data: give images and labels")
    if config.tile_size < 32 or config.tile_size % 32:
        raise SegdeepError(f"--tile-size {config.tile_size}: use a multiple of 32, at least 32")
    if config.batch_size < 1:
        raise SegdeepError(f"--batch-size {config.batch_size}: must be at least 1")
    bands = {s.num_bands for s in train_sources + list(val_sources or [])}
    if len(bands) != 1:
        raise SegdeepError(f"the images have different band counts {sorted(bands)}; give --bands")
    in_channels = bands.pop()
    device = resolve_device(config.device)
    precision = resolve_precision(config.precision, device)
    amp_dtype = autocast_dtype(precision)
    torch.manual_seed(config.seed)
    rng0 = np.random.default_rng(config.seed)
    val_sources = list(val_sources or [])
    if not val_sources and config.val_split:
        train_sources, val_sources = split_validation(train_sources, config.val_split, config.seed)

    if init is not None:
        model, base_card = load_bundle(init, device="cpu")
        if [c.index for c in base_card.classes] != [c.index for c in classes]:
            raise SegdeepError(f"{init}: the model has classes {[c.name for c in base_card.classes]}; the labels "
                               f"were read with {[c.name for c in classes]} (use the bundle as the palette)")
        if len(base_card.bands) != in_channels:
            raise SegdeepError(f"{init}: the model takes {len(base_card.bands)} band(s), the images have {in_channels}")
        arch, kwargs = base_card.architecture, dict(base_card.kwargs)
        scale, mean, std = base_card.scale, list(base_card.mean), list(base_card.std)
        classes = list(base_card.classes)
    else:
        arch, kwargs = config.arch, dict(config.model_kwargs)
        model = create_model(arch, num_classes=len(classes), in_channels=in_channels, **kwargs)
        scale = pixel_scale(train_sources[0].dtype)
        mean, std = band_statistics(train_sources, scale, rng0)
    model.to(device).train()
    # channels_last: 1.45x faster training steps on this CPU (U-Net, bf16; same as the engine's choice)
    channels_last = device.type == "cpu"
    if channels_last:
        model.to(memory_format=torch.channels_last)
    num_params = sum(p.numel() for p in model.parameters())

    sampler = WindowSampler(train_sources, len(classes), config.balance)
    if isinstance(config.class_weights, str):
        if config.class_weights == "auto":
            weights = class_weights_auto(sampler.class_pixels)
        elif config.class_weights == "none":
            weights = None
        else:
            raise SegdeepError(f"--class-weights {config.class_weights!r}: use auto, none or one number per class")
    else:
        weights = [float(w) for w in config.class_weights]
        if len(weights) != len(classes):
            raise SegdeepError(f"--class-weights: {len(weights)} numbers for {len(classes)} classes")
    weight_t = torch.tensor(weights, dtype=torch.float32, device=device) if weights else None
    train_pixels = sum(s.width * s.height for s in train_sources)
    steps_per_epoch = config.steps_per_epoch or int(
        min(400, max(10, round(train_pixels / (config.batch_size * config.tile_size**2)))))
    total_epochs = config.total_epochs()
    total_steps = total_epochs * steps_per_epoch if total_epochs else None
    budget_s = config.time_budget * 60 if config.time_budget else None
    warmup = min(config.warmup, 300 / total_steps) if total_steps else config.warmup

    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    scaler = torch.amp.GradScaler("cuda") if precision == "fp16" else None
    augment = Augment(enabled=config.augment)
    history: list[dict] = []
    best_score, best_state, best_val, start_epoch, elapsed0 = -float("inf"), None, {}, 0, 0.0
    ckpt = checkpoint_path(out) if out else None
    if resume:
        if ckpt is None or not ckpt.exists():
            raise SegdeepError(f"{ckpt or 'resume'}: no checkpoint to resume from (it is written beside --out after each epoch)")
        state = _load_checkpoint(ckpt)
        if state["arch"] != arch or state["num_classes"] != len(classes):
            raise SegdeepError(f"{ckpt}: the checkpoint is a {state['arch']} with {state['num_classes']} classes; "
                               f"this run is a {arch} with {len(classes)}")
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        start_epoch, elapsed0 = int(state["epoch"]), float(state["elapsed"])
        best_score, history = float(state["best_score"]), list(state["history"])
        best_state, best_val = state.get("best_model"), dict(state.get("best_val") or {})
        mean, std, scale = list(state["mean"]), list(state["std"]), float(state["scale"])

    def make_card(val: dict | None, epochs_done: int, elapsed: float) -> ModelCard:
        training = {
            "data": [s.describe() for s in train_sources],
            "validation_data": [s.describe() for s in val_sources],
            "settings": {k: v for k, v in asdict(config).items() if k not in ("model_kwargs",)},
            "epochs": epochs_done, "steps_per_epoch": steps_per_epoch, "seconds": round(elapsed, 1),
            "device": str(device), "precision": precision, "class_weights": weights,
            "init": str(init) if init else None, "history": history,
        }
        return ModelCard(name=name or (Path(out).stem if out else arch), architecture=arch, kwargs=kwargs,
                         classes=list(classes), bands=list(train_sources[0].bands or range(1, in_channels + 1)),
                         mean=list(mean), std=list(std), scale=scale, tile_size=config.tile_size,
                         gsd=config.gsd, training=training, validation=dict(val or {}))

    yield Started(total_epochs, steps_per_epoch, num_params, str(device), start_epoch)
    epoch, t_start, stop = start_epoch, time.perf_counter(), False
    try:
        while not stop:
            if total_epochs is not None and epoch >= total_epochs:
                break
            rng = np.random.default_rng([config.seed, epoch])
            torch.manual_seed(config.seed * 100_003 + epoch)
            model.train()
            losses, t_epoch = [], time.perf_counter()
            for step in range(1, steps_per_epoch + 1):
                elapsed = elapsed0 + time.perf_counter() - t_start
                if budget_s:
                    progress = elapsed / budget_s
                else:
                    progress = (epoch * steps_per_epoch + step - 1) / total_steps
                lr = lr_at(progress, config.lr, warmup)
                for g in optimizer.param_groups:
                    g["lr"] = lr
                x, y = sample_batch(sampler, rng, config.batch_size, config.tile_size, scale, mean, std, augment)
                x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
                if channels_last:
                    x = x.contiguous(memory_format=torch.channels_last)
                with torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
                    logits = model(x)
                loss = F.cross_entropy(logits.float(), y, weight=weight_t, ignore_index=NODATA_LABEL)
                if config.dice:
                    loss = loss + config.dice * dice_loss(logits, y)
                optimizer.zero_grad(set_to_none=True)
                if scaler is not None:
                    scaler.scale(loss).backward()
                    scaler.step(optimizer)
                    scaler.update()
                else:
                    loss.backward()
                    optimizer.step()
                losses.append(float(loss.detach()))
                rate = step * config.batch_size / max(1e-9, time.perf_counter() - t_epoch)
                yield Step(epoch + 1, step, steps_per_epoch, losses[-1], lr, rate,
                           elapsed0 + time.perf_counter() - t_start)
                if budget_s and elapsed0 + time.perf_counter() - t_start >= budget_s:
                    stop = True
                    break
            epoch += 1
            val = None
            if val_sources:
                val = evaluate_sources(model, val_sources, classes, scale, mean, std, device,
                                       config.val_tile_size, config.max_val_pixels)
            score = val["mean_iou"] if val else -float(np.mean(losses))
            improved = score > best_score
            if improved:
                best_score, best_val = score, card_scores(val)
                best_state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
            elapsed = elapsed0 + time.perf_counter() - t_start
            history.append({"epoch": epoch, "train_loss": float(np.mean(losses)), "steps": len(losses),
                            "lr": lr, "seconds": round(elapsed, 1),
                            "val_mean_iou": val["mean_iou"] if val else None,
                            "val_pixel_accuracy": val["pixel_accuracy"] if val else None})
            if out is not None:
                if improved:
                    best_model = _model_copy(model, best_state)
                    best_card = make_card(best_val, epoch, elapsed)
                    save_bundle(best_model, best_card, out, half=half)
                _save_checkpoint(ckpt, {
                    "arch": arch, "num_classes": len(classes), "model": model.state_dict(),
                    "optimizer": optimizer.state_dict(), "epoch": epoch, "elapsed": elapsed,
                    "best_score": best_score, "history": history, "best_model": best_state, "best_val": best_val,
                    "mean": list(mean), "std": list(std), "scale": float(scale)})
            yield EpochDone(epoch, float(np.mean(losses)), val, improved, elapsed)
    finally:
        for s in train_sources + val_sources:
            s.close()
    elapsed = elapsed0 + time.perf_counter() - t_start
    if best_state is not None:
        model.load_state_dict(best_state)
    if channels_last:  # hand back an ordinary model: NCHW inputs on channels_last weights take a slow path
        model.to(memory_format=torch.contiguous_format)
    model.eval()
    card = make_card(best_val, epoch, elapsed)
    if out is not None:
        save_bundle(model, card, out, half=half)
    return TrainResult(model, card, history, Path(out) if out else None)


def _model_copy(model: torch.nn.Module, state: dict) -> torch.nn.Module:
    import copy

    m = copy.deepcopy(model).cpu()
    m.load_state_dict(state)
    return m.eval()


# ------------------------------------------------------------------ front ends


def open_sources(images: Sequence[str | Path], labels: Sequence[str | Path], classes, *,
                 bands: list[int] | None = None, attribute: str | None = None,
                 cache_pixels: int = 16_000_000) -> list[TrainSource]:
    """:class:`TrainSource` objects for matching lists of image and label files."""
    if len(images) != len(labels):
        raise SegdeepError(f"{len(images)} image(s) but {len(labels)} label file(s); give one label file per image")
    return [TrainSource.from_files(i, lab, classes, bands=bands, attribute=attribute, cache_pixels=cache_pixels)
            for i, lab in zip(images, labels, strict=True)]


def train(images: Sequence[str | Path], labels: Sequence[str | Path], out: str | Path, *,
          classes: Sequence[ClassInfo] | None = None, val_images: Sequence[str | Path] = (),
          val_labels: Sequence[str | Path] = (), config: TrainConfig | None = None, init=None,
          resume: bool = False, bands: list[int] | None = None, attribute: str | None = None,
          callback=None) -> TrainResult:
    """Train from image/label files and write the best model to the bundle ``out`` (``.safetensors``).

    Labels may be class-index rasters, colour-coded RGB or palette masks (decoded with ``classes``,
    default Dubai's) or vector files (``attribute`` = class column). ``callback(event)`` sees the
    progress events of :func:`iter_train`.
    """
    if init is not None and classes is None:
        classes = list(read_card(init).classes)
    classes = list(classes or DUBAI_CLASSES)
    config = config or TrainConfig()
    sources = open_sources(images, labels, classes, bands=bands, attribute=attribute)
    val = open_sources(val_images, val_labels, classes, bands=bands, attribute=attribute) if val_images else []
    return drain(iter_train(sources, classes, config, val_sources=val, out=out, init=init, resume=resume), callback)


def iter_train_arrays(images: list[np.ndarray], labels: list[np.ndarray], *,
                      classes: Sequence[ClassInfo] | None = None, val_images: list[np.ndarray] = (),
                      val_labels: list[np.ndarray] = (), config: TrainConfig | None = None, init=None,
                      out: str | Path | None = None) -> Generator[Started | Step | EpochDone, None, TrainResult]:
    """:func:`iter_train` on in-memory arrays (images bands x H x W, labels H x W uint8, 255 = ignore):
    yields progress events, returns a :class:`TrainResult`; closing it cancels (napari's Train widget).

    ``init``: a bundle to fine-tune; its classes are then the palette. Without ``classes``: Dubai's.
    """
    if init is not None and classes is None:
        classes = list(read_card(init).classes)
    classes = list(classes or DUBAI_CLASSES)
    if len(images) != len(labels) or len(val_images) != len(val_labels):
        raise SegdeepError(f"{len(images)} image(s) but {len(labels)} label array(s), "
                           f"{len(val_images)} validation image(s) but {len(val_labels)} label array(s)")
    k = len(classes)
    sources = [TrainSource.from_arrays(i, lab, k, name=f"array {n}")
               for n, (i, lab) in enumerate(zip(images, labels, strict=True))]
    val = [TrainSource.from_arrays(i, lab, k, name=f"validation array {n}")
           for n, (i, lab) in enumerate(zip(val_images, val_labels, strict=True))]
    return (yield from iter_train(sources, classes, config or TrainConfig(), val_sources=val, out=out, init=init))


def train_arrays(images: list[np.ndarray], labels: list[np.ndarray], *, classes: Sequence[ClassInfo] | None = None,
                 val_images: list[np.ndarray] = (), val_labels: list[np.ndarray] = (),
                 config: TrainConfig | None = None, init=None, out: str | Path | None = None,
                 callback=None) -> tuple[torch.nn.Module, object, list[dict]]:
    """Train from in-memory arrays (images bands x H x W, labels H x W uint8 with 255 = ignore).

    ``init``: a bundle to fine-tune. ``callback(event)`` sees the progress events. Returns
    ``(model, card, history)``; see :func:`iter_train_arrays` for the generator form.
    """
    result = drain(iter_train_arrays(images, labels, classes=classes, val_images=val_images, val_labels=val_labels,
                                     config=config, init=init, out=out), callback)
    return result.model, result.card, result.history
