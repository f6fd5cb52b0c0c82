"""Training settings: one dataclass, sizes in pixels, ``lr`` per AdamW step, ``time_budget`` in minutes."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

__all__ = ["TrainConfig"]


@dataclass
class TrainConfig:
    """Training settings. Sizes in pixels, ``lr`` per AdamW step, ``time_budget`` in minutes."""

    arch: str = "unet"
    model_kwargs: dict = field(default_factory=lambda: {"base_channels": 16})
    tile_size: int = 256
    batch_size: int = 8
    epochs: int | None = None  # None with no time_budget: 20
    time_budget: float | None = None
    steps_per_epoch: int | None = None  # default: about one pass over the training pixels, 10-400
    lr: float = 2e-3
    weight_decay: float = 1e-4
    warmup: float = 0.05  # fraction of the run spent warming up (at most 300 steps)
    class_weights: str | Sequence[float] = "auto"  # "auto", "none" or one weight per class
    dice: float = 0.0  # weight of the soft Dice loss added to cross-entropy
    augment: bool = True
    balance: float = 0.5  # class-balanced sampling exponent (0 = uniform over classes)
    device: str = "auto"
    precision: str = "auto"  # auto, fp32, bf16, fp16
    seed: int = 0
    val_split: float = 0.0
    val_tile_size: int = 512
    max_val_pixels: int = 25_000_000
    gsd: float | None = None

    def total_epochs(self) -> int | None:
        if self.epochs is None and self.time_budget is None:
            return 20
        return self.epochs
