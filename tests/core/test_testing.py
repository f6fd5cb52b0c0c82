"""segdeep.testing: the factories are what they say, stay light, and check_architecture catches a
network that ignores its arguments."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch
import torch.nn as nn
from rasterio.enums import ColorInterp
from segdeep.models import registry
from segdeep.models.bundle import load_bundle, read_card
from segdeep.testing import (
    ArchitectureCheck,
    blob_arrays,
    check_architecture,
    numbered_classes,
    scene_arrays,
    tiny_bundle,
    write_geotiff,
)

CORE = Path(__file__).resolve().parents[2] / "core"


def test_import_is_light_and_nothing_in_core_imports_it():
    code = "import sys, segdeep.testing\nprint('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
    importers = []
    for path in CORE.rglob("*.py"):
        package = ["segdeep", *path.parent.relative_to(CORE).parts]
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                modules = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = ".".join(package[:len(package) - node.level + 1] if node.level else [])
                module = ".".join(p for p in (base, node.module or "") if p)
                modules = [module, *(f"{module}.{a.name}" for a in node.names)]
            else:
                continue
            if "segdeep.testing" in modules:
                importers.append(str(path.relative_to(CORE)))
    assert not importers


def test_write_geotiff_is_georeferenced(tmp_path):
    path = write_geotiff(tmp_path / "a.tif", np.arange(12, dtype=np.uint16).reshape(3, 4), nodata=0,
                         colorinterp=[ColorInterp.gray], descriptions=["pan"])
    with rasterio.open(path) as ds:
        assert ds.crs.to_epsg() == 32640 and ds.res == (0.5, 0.5) and ds.bounds.left == 300000.0
        assert ds.count == 1 and ds.dtypes[0] == "uint16" and ds.nodata == 0
        assert ds.colorinterp == (ColorInterp.gray,) and ds.descriptions == ("pan",)
        assert ds.read(1).tolist() == np.arange(12).reshape(3, 4).tolist()
    with pytest.raises(ValueError, match="bands x height x width"):
        write_geotiff(tmp_path / "b.tif", np.zeros(3, np.uint8))


def test_scene_arrays():
    image, labels = scene_arrays(64, seed=1)
    assert image.shape == (3, 64, 64) and image.dtype == np.uint8 and labels.shape == (64, 64)
    assert set(np.unique(labels)) == {0, 1, 2}
    image, labels = blob_arrays([(255, 0, 0), (0, 0, 255)], size=32, seed=2)
    assert image.shape == (3, 32, 32) and set(np.unique(labels)) <= {0, 1}
    red = labels == 0
    assert image[0][red].mean() > image[0][~red].mean()
    assert [c.index for c in numbered_classes(3)] == [0, 1, 2]


def test_tiny_bundle_leaves_the_random_state_alone(tmp_path):
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    a = tiny_bundle(tmp_path / "a.safetensors", bands=[1, 2, 3, 4], gsd=0.25)
    assert torch.equal(torch.rand(3), expected)
    b = tiny_bundle(tmp_path / "b.safetensors", bands=[1, 2, 3, 4], gsd=0.25)
    card = read_card(a)
    assert card.architecture == "unet" and card.name == "tiny unet" and card.in_channels == 4
    assert card.kwargs == {"base_channels": 4, "depth": 3} and card.tile_size == 64 and card.gsd == 0.25
    (ma, _), (mb, _) = load_bundle(a), load_bundle(b)
    assert all(torch.equal(x, y) for x, y in zip(ma.state_dict().values(), mb.state_dict().values(),
                                                 strict=True))


class _IgnoresItsArguments(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 2, 3, padding=1)

    def forward(self, x):
        return self.conv(x)


@pytest.fixture
def registered():
    """Register throwaway architectures for one test, and remove them after."""
    names = []

    def register(name, builder, **entry):
        registry.register_model(name, output_stride=1, **entry)(builder)
        names.append(name)

    yield register
    for name in names:
        registry._REGISTRY.pop(name, None)


def test_check_architecture_passes_a_good_network(registered):
    def good(num_classes=6, in_channels=3, width=4):
        """A two-layer network that takes any input size."""
        return nn.Sequential(nn.Conv2d(in_channels, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU(),
                             nn.Conv2d(width, num_classes, 1))

    registered("test_good_net", good)
    check_architecture("test_good_net", width=4)


def test_check_architecture_catches_ignored_arguments(registered):
    registered("test_bad_net", lambda num_classes=6, in_channels=3: _IgnoresItsArguments(),
               description="ignores num_classes and in_channels")
    with pytest.raises(AssertionError, match="'test_bad_net'.*expected \\(1, 5, 29, 43\\)"):
        check_architecture("test_bad_net")
    check = ArchitectureCheck("test_bad_net", num_classes=2)
    check.forward_odd_size()  # 2 classes is what it gives
    with pytest.raises(AssertionError, match="in_channels=4"):
        check.in_channels_and_classes(4, 2)
