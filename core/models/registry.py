"""The model registry: architectures register themselves when their module is imported.

Adding an architecture is one new file in ``core/models/architectures/`` that decorates its builder with
``@register_model("name", output_stride=..., paper="...")``; :func:`list_models` and
:func:`create_model` import every module of the package first, so there is no list to keep by hand.

Other installed distributions add architectures through the entry-point group ``segdeep.models``:
each entry point names a module that registers its builders with :func:`register_model` when imported,
e.g. in the distribution's ``pyproject.toml``::

    [project.entry-points."segdeep.models"]
    my_net = "my_package.my_net"

The registry loads them after segdeep's own, so model bundles, the ``segdeep`` command and the Dask
workers (which all build networks through :func:`create_model`) run them like built-in ones. An entry
point that fails to load is skipped with a one-line warning naming it and its distribution; asking
for an architecture that is not registered then repeats that line in the error.
:func:`segdeep.testing.check_architecture` checks a third-party architecture as the built-in ones
are checked.
"""

from __future__ import annotations

import importlib
import logging
import pkgutil
import threading
from collections.abc import Callable
from dataclasses import dataclass

import torch.nn as nn

from ..errors import SegdeepError
from . import architectures  # the package only: its modules are imported by _load_all


@dataclass(frozen=True)
class ModelEntry:
    """What the registry knows about one architecture."""

    name: str
    builder: Callable[..., nn.Module]
    output_stride: int | str  # an int, or e.g. "8 or 16" when it is a keyword argument
    paper: str
    description: str


#: Entry-point group through which other distributions register architectures.
ENTRY_POINT_GROUP = "segdeep.models"

_REGISTRY: dict[str, ModelEntry] = {}
_LOADED = False
_LOADING = False
_LOCK = threading.RLock()
#: Entry points of ``ENTRY_POINT_GROUP`` that failed to load: one line each, naming them.
_BROKEN: list[str] = []
_log = logging.getLogger(__name__)


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
    """Import segdeep's architecture modules, then the entry points' (once per process).

    Threads (a Dask worker's) wait for the first one to finish; a module being imported that asks
    the registry again (same thread) is not loaded twice."""
    global _LOADED, _LOADING
    if _LOADED:
        return
    with _LOCK:
        if _LOADED or _LOADING:
            return
        _LOADING = True
        try:
            for info in pkgutil.iter_modules(architectures.__path__):
                if not info.name.startswith("_"):
                    importlib.import_module(f"{architectures.__name__}.{info.name}")
            _load_entry_points()
            _LOADED = True
        finally:
            _LOADING = False


def _load_entry_points() -> None:
    """Import the modules named in the ``segdeep.models`` entry points of installed distributions.

    A module that fails to import (or registers a name twice) is skipped: its one-line reason is
    logged as a warning and kept in ``_BROKEN`` for :func:`model_entry`'s error.
    """
    from importlib.metadata import entry_points

    for ep in entry_points(group=ENTRY_POINT_GROUP):
        try:
            ep.load()
        except Exception as exc:  # noqa: BLE001 - whatever a third-party module raises, skip it
            dist = f"{ep.dist.name} {ep.dist.version}" if ep.dist is not None else "unknown distribution"
            reason = " ".join(str(exc).split()) or "no message"
            line = (f"architecture entry point {ep.name!r} ({ep.value}) of distribution {dist!r} "
                    f"failed to load: {type(exc).__name__}: {reason[:200]}")
            _BROKEN.append(line)
            _log.warning("segdeep: %s", line)


def list_models() -> list[str]:
    """Names of every registered architecture, sorted."""
    _load_all()
    return sorted(_REGISTRY)


def model_entry(name: str) -> ModelEntry:
    """The registry entry for ``name``; a :class:`SegdeepError` lists the known names otherwise."""
    _load_all()
    if name not in _REGISTRY:
        broken = "".join(f"; {line}" for line in _BROKEN)
        raise SegdeepError(f"unknown architecture {name!r}; known: {', '.join(sorted(_REGISTRY))}{broken}")
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
