"""Test-time fusion over input scales and left-right flips (DeepLab's multi-scale inference).

DeepLab v1/v2 run the network on the image at several scales and fuse the predictions; v3 adds
left-right flipped inputs. Here each *tile* (the model input, T x T pixels) is resized to
``round(T x s)`` pixels for every scale ``s`` (bilinear; antialiased when shrinking), run through the
model, and optionally run again mirrored left-right (the output mirrored back); every prediction's
softmax probabilities are resized back to T x T (bilinear) and the probabilities are averaged.

The result only depends on the tile's pixels, so the engine's invariants hold unchanged: labels are
identical for every block size, block order, resume and cluster run. Scales ``(1.0,)`` without flip
is exactly the plain forward pass (:attr:`TestTimeFusion.identity`; the engine then skips this
module). No torch at import time: :func:`fused_probabilities` imports it when called.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from ..errors import SegdeepError

__all__ = ["TestTimeFusion", "fused_probabilities", "parse_scales"]

#: Smallest and largest accepted scale factors.
SCALE_RANGE = (0.125, 4.0)


def parse_scales(scales: str | float | Sequence[float] | None) -> tuple[float, ...]:
    """Scale factors from ``"0.5,0.75,1"``, a number or a sequence; sorted, each once.

    None or empty: ``(1.0,)``. Each must lie in :data:`SCALE_RANGE`; an error names the value."""
    if scales is None:
        return (1.0,)
    items = scales.replace(" ", "").split(",") if isinstance(scales, str) else (
        [scales] if isinstance(scales, int | float) else list(scales))
    values = []
    for item in items:
        if item == "":
            continue
        try:
            value = float(item)
        except (TypeError, ValueError):
            raise SegdeepError(f"scales {scales!r}: {item!r} is not a number; expected e.g. 0.5,0.75,1,1.25") from None
        if not SCALE_RANGE[0] <= value <= SCALE_RANGE[1]:
            raise SegdeepError(f"scale {value:g} is out of range: each scale must be between "
                               f"{SCALE_RANGE[0]:g} and {SCALE_RANGE[1]:g} (e.g. 0.5,0.75,1,1.25)")
        values.append(value)
    return tuple(sorted(set(values))) or (1.0,)


@dataclass(frozen=True)
class TestTimeFusion:
    """Scales (factors of the tile size, e.g. ``(0.75, 1.0, 1.25)``) and whether to add flipped inputs."""

    __test__ = False  # not a pytest class, whatever its name

    scales: tuple[float, ...] = (1.0,)
    flip: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "scales", parse_scales(self.scales))
        object.__setattr__(self, "flip", bool(self.flip))

    @property
    def identity(self) -> bool:
        """True when this is the plain forward pass (scale 1 only, no flip)."""
        return self.scales == (1.0,) and not self.flip

    @property
    def passes(self) -> int:
        """Forward passes per tile (scales x 2 with flip)."""
        return len(self.scales) * (2 if self.flip else 1)

    def to_dict(self) -> dict:
        """JSON form, for ``run.json`` and the resume fingerprint."""
        return {"scales": list(self.scales), "flip": self.flip}


def fused_probabilities(probabilities: Callable[[Any], Any], x, fusion: TestTimeFusion):
    """Average of ``probabilities(x')`` over the scaled (and flipped) versions ``x'`` of ``x``.

    ``x``: float N x bands x T x T model inputs (a torch tensor); ``probabilities``: the engine's
    model call, taking such a batch of any spatial size and returning N x classes x h x w softmax
    probabilities (float32) of the same size. Returns N x classes x T x T float32 probabilities.
    """
    import torch.nn.functional as F

    size = tuple(x.shape[-2:])
    total = None
    for scale in fusion.scales:
        if scale == 1.0:
            xs = x
        else:
            scaled = tuple(max(1, round(n * scale)) for n in size)
            xs = F.interpolate(x, size=scaled, mode="bilinear", align_corners=False, antialias=scale < 1.0)
        views = [(xs, False), (xs.flip(-1), True)] if fusion.flip else [(xs, False)]
        for view, flipped in views:
            p = probabilities(view)
            if flipped:
                p = p.flip(-1)
            if tuple(p.shape[-2:]) != size:
                p = F.interpolate(p, size=size, mode="bilinear", align_corners=False)
            total = p if total is None else total + p
    return total / fusion.passes
