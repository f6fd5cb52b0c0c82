"""Factories for tests, here and in packages that extend segdeep.

- :func:`write_geotiff`: a small GeoTIFF with a real CRS and transform (UTM 40N, 0.5 m) by default.
- :func:`scene_arrays` and :func:`blob_arrays`: a small RGB image with its label array;
  :func:`numbered_classes`: a palette of n classes.
- :func:`tiny_card`, :func:`tiny_model` and :func:`tiny_bundle`: a model bundle small enough to run
  on a CPU in a test (random weights from a fixed seed).
- :func:`check_architecture` (and :class:`ArchitectureCheck`, one method per check): the checks every
  built-in architecture passes, so that a third-party architecture registered through the
  ``segdeep.models`` entry-point group can be tested the same way::

      from segdeep.testing import check_architecture

      def test_my_net():
          check_architecture("my_net", width=8)  # keyword arguments that keep it small

Torch is imported inside the functions that need it, so ``import segdeep.testing`` stays light.
Nothing in segdeep itself imports this module.
"""

from __future__ import annotations

import importlib.util
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import rasterio
from rasterio.transform import Affine, from_origin

from .classes import DUBAI_CLASSES, ClassInfo

if TYPE_CHECKING:  # pragma: no cover
    import torch.nn as nn

    from .models.bundle import ModelCard

#: CRS of the generated rasters unless told otherwise: WGS 84 / UTM zone 40N (Dubai).
CRS = "EPSG:32640"
#: Transform of the generated rasters unless told otherwise: 0.5 m pixels, upper-left corner at
#: (300000 m E, 2780000 m N).
TRANSFORM = from_origin(300000.0, 2780000.0, 0.5, 0.5)

#: Builder keyword arguments that make an architecture cheap enough for a test on a CPU: the same
#: layers and wiring as the default, fewer channels (or a ResNet-18 backbone).
LIGHT_KWARGS: dict[str, dict] = {
    "fcn32s": {"fc_channels": 64},
    "fcn16s": {"fc_channels": 64},
    "fcn8s": {"fc_channels": 64},
    "dilated": {"fc_channels": 64},
    "deeplab_v1": {"fc_channels": 64},
    "pspnet": {"backbone": "resnet18", "head_channels": 64},
    "unet": {"base_channels": 4, "depth": 3},
    "deeplab_v2": {"backbone": "resnet18"},
    "deeplab_v3": {"backbone": "resnet18"},
    "deeplab_v3plus": {"backbone": "resnet18"},
    "refinenet": {"backbone": "resnet18", "top_channels": 32, "channels": 16},
    "refinenet_lw": {"backbone": "resnet18", "top_channels": 32, "channels": 16},
    "gcn": {"backbone": "resnet18", "k": 7},
}


# --------------------------------------------------------------------------------------- rasters

def write_geotiff(path: str | os.PathLike, array: np.ndarray, *, crs=CRS, transform: Affine | None = None,
                  nodata: float | None = None, colorinterp: Sequence | None = None,
                  descriptions: Sequence[str] | None = None, **profile) -> Path:
    """Write ``array`` (bands x height x width, or height x width) as a GeoTIFF; returns its path.

    ``crs`` (anything rasterio accepts; None for none) and ``transform`` (pixel -> CRS units,
    default :data:`TRANSFORM`: 0.5 m pixels) georeference it; ``nodata`` is the band's nodata
    value; ``colorinterp`` (e.g. ``[ColorInterp.red, ...]``) and ``descriptions`` are set per band;
    other keyword arguments go to the profile (``tiled=True``, ``compress="deflate"``, ...).
    """
    array = np.asarray(array)
    if array.ndim == 2:
        array = array[None]
    if array.ndim != 3:
        raise ValueError(f"{path}: array must be bands x height x width or height x width, "
                         f"got shape {array.shape}")
    transform = TRANSFORM if transform is None else transform
    profile = dict(driver="GTiff", width=array.shape[2], height=array.shape[1], count=array.shape[0],
                   dtype=array.dtype, crs=crs, transform=transform, nodata=nodata, **profile)
    with rasterio.open(path, "w", **profile) as ds:
        ds.write(array)
        if colorinterp is not None:
            ds.colorinterp = list(colorinterp)
        if descriptions is not None:
            ds.descriptions = tuple(descriptions)
    return Path(path)


def scene_arrays(size: int = 96, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A small RGB scene: ``(image 3 x size x size uint8, labels size x size uint8)``.

    Land (class 1) with a building (class 0) in the upper half and a road (class 2) along the right
    edge; each class has its own colour, plus a little noise (+-10).
    """
    rng = np.random.default_rng(seed)
    labels = np.full((size, size), 1, np.uint8)  # land
    labels[size // 4: size // 2, size // 4: 3 * size // 4] = 0  # a building
    labels[:, size - size // 6:] = 2  # a road
    colours = {0: (60, 60, 150), 1: (200, 170, 120), 2: (90, 90, 90)}
    image = np.zeros((3, size, size), np.uint8)
    for k, rgb in colours.items():
        for b in range(3):
            image[b][labels == k] = rgb[b]
    image = np.clip(image.astype(int) + rng.integers(-10, 10, image.shape), 0, 255).astype(np.uint8)
    return image, labels


def blob_arrays(colours: Sequence[tuple[int, int, int]], size: int = 96, seed: int = 0,
                noise: float = 45.0) -> tuple[np.ndarray, np.ndarray]:
    """Blobs of ``len(colours)`` classes, class k drawn in ``colours[k]`` plus Gaussian noise of
    standard deviation ``noise``: ``(image 3 x size x size uint8, labels size x size uint8)``."""
    from scipy import ndimage

    k = len(colours)
    rng = np.random.default_rng(seed)
    field = ndimage.gaussian_filter(rng.normal(size=(k, size, size)), (0, 5, 5))
    labels = field.argmax(0).astype(np.uint8)
    image = np.array(colours)[labels].transpose(2, 0, 1) + rng.normal(0, noise, (3, size, size))
    return np.clip(image, 0, 255).astype(np.uint8), labels


def numbered_classes(n: int) -> list[ClassInfo]:
    """``n`` classes named ``"class 0"``, ``"class 1"``, ... with distinct colours."""
    return [ClassInfo(i, f"class {i}", ((67 * i) % 256, (139 * i + 80) % 256, (29 * i + 160) % 256))
            for i in range(n)]


# --------------------------------------------------------------------------------------- models

def tiny_card(architecture: str = "unet", *, kwargs: dict | None = None,
              classes: Sequence[ClassInfo] | None = None, bands: Sequence[int] | None = None,
              tile_size: int = 64, **fields) -> ModelCard:
    """A model card for a small network: ``kwargs`` default to :data:`LIGHT_KWARGS` for the
    architecture, ``classes`` to the six Dubai classes, ``bands`` to ``[1, 2, 3]``, the name to
    ``"tiny <architecture>"``; tile size in pixels. For other than 3 bands, ``mean`` and ``std``
    default to 0.45 and 0.225 per band. Other keyword arguments are card fields (``gsd``, ...)."""
    from .models.bundle import ModelCard

    bands = [1, 2, 3] if bands is None else list(bands)
    if len(bands) != 3:
        fields.setdefault("mean", [0.45] * len(bands))
        fields.setdefault("std", [0.225] * len(bands))
    fields.setdefault("name", f"tiny {architecture}")
    kwargs = dict(LIGHT_KWARGS.get(architecture, {}) if kwargs is None else kwargs)
    return ModelCard(architecture=architecture, kwargs=kwargs,
                     classes=list(DUBAI_CLASSES if classes is None else classes), bands=bands,
                     tile_size=tile_size, **fields)


def tiny_model(card: ModelCard, seed: int = 0) -> nn.Module:
    """The card's network with random weights drawn from ``seed`` (the global torch random state is
    left as it was), in eval mode."""
    import torch

    from .models.registry import create_model

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = create_model(card.architecture, num_classes=card.num_classes,
                             in_channels=card.in_channels, **card.kwargs)
    return model.eval()


def tiny_bundle(path: str | os.PathLike, architecture: str = "unet", *, seed: int = 0, half: bool = False,
                **card_fields) -> Path:
    """Write a bundle of a small network with random weights (from ``seed``) to ``path``.

    Keyword arguments are :func:`tiny_card`'s (``kwargs``, ``classes``, ``bands``, ``tile_size``,
    ``name``, ``gsd``, ...); ``half=True`` stores float16 weights. Returns the path.
    """
    from .models.bundle import save_bundle

    card = tiny_card(architecture, **card_fields)
    return save_bundle(tiny_model(card, seed), card, path, half=half)


# --------------------------------------------------------------------------------------- architectures

def _first_conv(model: nn.Module) -> nn.Conv2d:
    import torch.nn as nn

    return next(m for m in model.modules() if isinstance(m, nn.Conv2d))


class ArchitectureCheck:
    """The checks of one registered architecture, each a method that raises AssertionError.

    ``kwargs`` go to the builder (use them to make the network small); the model is built once with
    ``num_classes`` classes and 3 bands, in eval mode, and run on one input of
    ``height x width`` pixels (29 x 43 by default: odd, and a multiple of no output stride).
    Layers that are zero-initialised (FCN's score layers, as in its paper) get small random weights
    so that outputs and gradients are not trivially zero.
    """

    #: (input bands, classes) pairs that :meth:`in_channels_and_classes` is run with.
    IN_CHANNELS_AND_CLASSES = ((1, 2), (4, 7), (8, 2))

    def __init__(self, name: str, *, num_classes: int = 5, height: int = 29, width: int = 43,
                 seed: int = 0, **kwargs) -> None:
        import torch

        self.name, self.kwargs, self.seed = name, kwargs, seed
        self.num_classes, self.height, self.width = num_classes, height, width
        self.model = self.build(num_classes=num_classes).eval()
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.x = torch.randn(1, 3, height, width)
        with torch.no_grad():
            self.y = self.model(self.x)

    def _fail(self, message: str) -> None:
        raise AssertionError(f"architecture {self.name!r}: {message}")

    def build(self, **overrides) -> nn.Module:
        """The architecture with this check's keyword arguments (and ``overrides``), its weights
        drawn from this check's seed (the global torch random state is left as it was)."""
        import torch

        from .models.registry import create_model

        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed)
            model = create_model(self.name, **{**self.kwargs, **overrides})
            with torch.no_grad():
                for p in model.parameters():
                    if p.dim() > 1 and not p.any():
                        p.normal_(0.0, 0.01)
        return model

    def registry_entry(self) -> None:
        """Registered with an output stride, and a paper or a description."""
        from .models.registry import model_entry

        entry = model_entry(self.name)
        if not entry.output_stride:
            self._fail("register_model(..., output_stride=...) is missing")
        if not (entry.paper or entry.description):
            self._fail("register it with paper=... or description=... (or give the builder a docstring)")

    def forward_odd_size(self) -> None:
        """A plain tensor of logits ``(1, classes, height, width)`` for an input whose size is not a
        multiple of the output stride; finite and not constant."""
        import torch

        y = self.y
        if type(y) is not torch.Tensor:
            self._fail(f"forward must return a tensor, got {type(y).__name__}")
        if y.shape != (1, self.num_classes, self.height, self.width):
            self._fail(f"input (1, 3, {self.height}, {self.width}) gave output {tuple(y.shape)}, "
                       f"expected (1, {self.num_classes}, {self.height}, {self.width})")
        if not torch.isfinite(y).all():
            self._fail("output has non-finite values")
        if not y.std() > 0:
            self._fail("output is constant")

    def backward(self) -> None:
        """Cross-entropy with ignored (255) pixels back-propagates to every trainable parameter
        and to the first convolution. Batch-norm statistics are restored afterwards."""
        import torch
        import torch.nn as nn
        import torch.nn.functional as F

        model = self.model
        buffers = {k: v.clone() for k, v in model.named_buffers()}
        # Batch norm needs more than one value per channel in training (1x1 pooled branches).
        n = 2 if any(isinstance(m, nn.BatchNorm2d) for m in model.modules()) else 1
        x = torch.randn(n, 3, self.height, self.width)
        target = torch.randint(0, self.num_classes, (n, self.height, self.width))
        target[:, :3] = 255  # nodata rows are ignored by the loss
        try:
            F.cross_entropy(model.train()(x), target, ignore_index=255).backward()
            trainable = [(k, p) for k, p in model.named_parameters() if p.requires_grad]
            missing = [k for k, p in trainable if p.grad is None]
            if missing:
                self._fail(f"parameters without gradient: {missing[:5]}")
            if not all(torch.isfinite(p.grad).all() for _, p in trainable):
                self._fail("non-finite gradients")
            if not _first_conv(model).weight.grad.abs().sum() > 0:
                self._fail("the loss does not reach the first convolution")
        finally:
            model.zero_grad(set_to_none=True)
            model.eval().load_state_dict(buffers, strict=False)

    def in_channels_and_classes(self, in_channels: int, num_classes: int, height: int = 21,
                                width: int = 27) -> None:
        """Built for ``in_channels`` bands and ``num_classes`` classes, it takes and gives those."""
        import torch

        model = self.build(num_classes=num_classes, in_channels=in_channels).eval()
        if _first_conv(model).in_channels != in_channels:
            self._fail(f"in_channels={in_channels}: the first convolution takes "
                       f"{_first_conv(model).in_channels} channels")
        with torch.no_grad():
            y = model(torch.randn(1, in_channels, height, width))
        if y.shape != (1, num_classes, height, width):
            self._fail(f"in_channels={in_channels}, num_classes={num_classes}: output {tuple(y.shape)}")

    def deterministic_in_eval(self) -> None:
        """The same input gives the same output in eval mode."""
        import torch

        with torch.no_grad():
            if not torch.equal(self.model.eval()(self.x), self.y):
                self._fail("two forward passes in eval mode differ")

    def channels_last_same_output(self) -> None:
        """The channels-last memory format gives the same logits (within float tolerance)."""
        import torch

        model, ref = self.model, self.y
        try:
            with torch.no_grad():
                model.to(memory_format=torch.channels_last)
                y = model(self.x.contiguous(memory_format=torch.channels_last))
        finally:
            model.to(memory_format=torch.contiguous_format)
        if not torch.allclose(y, ref, rtol=1e-4, atol=1e-5 * float(ref.abs().max())):
            self._fail("channels_last changes the output")

    def bundle_round_trip(self, folder: str | os.PathLike) -> Path:
        """Saved as a bundle in ``folder`` (card kwargs = this check's) and loaded back through the
        registry, it gives the same card and logits (to float rounding). Returns the bundle's path."""
        import torch

        from .models.bundle import load_bundle, save_bundle

        card = tiny_card(self.name, kwargs=self.kwargs, classes=numbered_classes(self.num_classes))
        path = save_bundle(self.model, card, Path(folder) / f"{self.name}.safetensors")
        model, loaded = load_bundle(path)
        if loaded.to_dict() != card.to_dict():
            self._fail("the card read back differs from the card written")
        with torch.no_grad():
            y = model(self.x)
        # Same weights; the loaded tensors' memory layout may change the summation order.
        if not torch.allclose(y, self.y, rtol=1e-5, atol=1e-6 * float(self.y.abs().max())):
            self._fail("the model loaded from its bundle gives other logits")
        return path

    def onnx_export_matches_torch(self) -> None:
        """Exports to ONNX (opset 17, dynamic batch) and onnxruntime gives torch's logits; needs
        onnxruntime."""
        import io
        import warnings

        import onnxruntime as ort
        import torch

        model, x = self.model, self.x
        buffer = io.BytesIO()
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # tracer warnings about python ints (fixed tile size)
            torch.onnx.export(model, (x,), buffer, dynamo=False, opset_version=17,
                              input_names=["input"], output_names=["output"],
                              dynamic_axes={"input": {0: "batch"}, "output": {0: "batch"}})
        session = ort.InferenceSession(buffer.getvalue(), providers=["CPUExecutionProvider"])
        x2 = torch.cat([x, torch.randn_like(x)])
        (got,) = session.run(None, {"input": x2.numpy()})
        with torch.no_grad():
            expected = model(x2)
        if not torch.allclose(torch.from_numpy(got), expected, rtol=1e-4,
                              atol=1e-5 * float(expected.abs().max())):
            self._fail("onnxruntime's logits differ from torch's")


def check_architecture(name: str, *, onnx: bool | None = None, **kwargs) -> None:
    """Check a registered architecture the way segdeep checks its own; AssertionError otherwise.

    Registry entry, forward on an odd input size (the output has the input's size whatever the
    output stride), backward, other band and class counts (:attr:`ArchitectureCheck.IN_CHANNELS_AND_CLASSES`),
    determinism, channels-last, a bundle round trip, and ONNX export (``onnx=None``: when
    onnxruntime is installed). ``kwargs`` go to the builder: make the network small with them.
    """
    check = ArchitectureCheck(name, **kwargs)
    check.registry_entry()
    check.forward_odd_size()
    check.backward()
    for in_channels, num_classes in check.IN_CHANNELS_AND_CLASSES:
        check.in_channels_and_classes(in_channels, num_classes)
    check.deterministic_in_eval()
    check.channels_last_same_output()
    with tempfile.TemporaryDirectory() as folder:
        check.bundle_round_trip(folder)
    if onnx or (onnx is None and importlib.util.find_spec("onnxruntime") is not None):
        check.onnx_export_matches_torch()
