"""The model registry: architectures register themselves when their module is imported.

Adding an architecture is one new file in ``core/models/architectures/`` that decorates its builder with
``@register_model("name", output_stride=..., paper="...")``; :func:`list_models` and
:func:`create_model` import every module of the package first, so there is no list to keep by hand.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable
from dataclasses import dataclass

import torch.nn as nn

from ..errors import SegdeepError


@dataclass(frozen=True)
class ModelEntry:
    """What the registry knows about one architecture."""

    name: str
    builder: Callable[..., nn.Module]
    output_stride: int | str  # an int, or e.g. "8 or 16" when it is a keyword argument
    paper: str
    description: str


_REGISTRY: dict[str, ModelEntry] = {}
_LOADED = False


def register_model(name: str, *, output_stride: int | str, paper: str = "", description: str = ""):
    """Decorator: register ``builder(num_classes=..., in_channels=..., **kwargs) -> nn.Module``."""

    def wrap(builder):
        if name in _REGISTRY and _REGISTRY[name].builder is not builder:
            raise ValueError(f"model name {name!r} is registered twice")
        doc = description or (builder.__doc__ or "").strip().splitlines()[0:1]
        _REGISTRY[name] = ModelEntry(name, builder, output_stride, paper,
                                     doc if isinstance(doc, str) else (doc[0] if doc else ""))
        return builder

    return wrap


def _load_all() -> None:
    global _LOADED
    if _LOADED:
        return
    from . import architectures

    for info in pkgutil.iter_modules(architectures.__path__):
        if not info.name.startswith("_"):
            importlib.import_module(f"{architectures.__name__}.{info.name}")
    _LOADED = True


def list_models() -> list[str]:
    """Names of every registered architecture, sorted."""
    _load_all()
    return sorted(_REGISTRY)


def model_entry(name: str) -> ModelEntry:
    """The registry entry for ``name``; a :class:`SegdeepError` lists the known names otherwise."""
    _load_all()
    if name not in _REGISTRY:
        raise SegdeepError(f"unknown architecture {name!r}; known: {', '.join(sorted(_REGISTRY))}")
    return _REGISTRY[name]


def create_model(name: str, num_classes: int = 6, in_channels: int = 3, **kwargs) -> nn.Module:
    """Build an architecture by name with randomly initialised weights.

    ``num_classes`` is the number of output classes, ``in_channels`` the number of input bands
    (the first convolution is adapted when it is not 3). Other keyword arguments (``backbone``,
    ``output_stride``, ``aux_loss``, ...) go to the architecture's builder.
    """
    entry = model_entry(name)
    try:
        return entry.builder(num_classes=num_classes, in_channels=in_channels, **kwargs)
    except TypeError as exc:
        raise SegdeepError(f"architecture {name!r}: {exc}") from None
