"""What :func:`segdeep.training.loop.iter_train` yields (progress) and returns (the result)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

__all__ = ["EpochDone", "Started", "Step", "TrainResult"]


@dataclass
class Started:
    total_epochs: int | None
    steps_per_epoch: int
    num_parameters: int
    device: str
    resumed_epoch: int = 0


@dataclass
class Step:
    epoch: int
    step: int  # within the epoch, from 1
    steps_per_epoch: int
    loss: float
    lr: float
    tiles_per_second: float
    elapsed: float  # seconds of training so far (including before a resume)


@dataclass
class EpochDone:
    epoch: int
    train_loss: float
    val: dict | None  # segdeep.evaluate.metrics.scores() of the validation data
    best: bool
    elapsed: float


@dataclass
class TrainResult:
    model: torch.nn.Module  # the best model (eval mode)
    card: object  # segdeep.models.bundle.ModelCard
    history: list[dict]
    path: Path | None = None
