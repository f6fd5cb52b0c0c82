"""Third-party architectures through the ``segdeep.models`` entry-point group.

A throwaway distribution is made in tmp_path (a module that registers a tiny network, and a
``<name>-0.1.dist-info`` folder with its entry point) beside a broken one (its module fails to
import). A bundle of the tiny network then runs through ``segdeep predict`` in a new process, and
on a Dask worker, and ``segdeep models`` lists it; the broken one costs one line on stderr, naming it.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import rasterio
from segdeep.errors import SegdeepError
from segdeep.models import registry
from segdeep.models.bundle import read_card
from segdeep.testing import check_architecture, scene_arrays, tiny_bundle, write_geotiff

MODULE = '''
"""A third-party architecture: two convolutions."""
import torch.nn as nn
from segdeep.models import register_model


@register_model("tinynet", output_stride=1, description="two convolutions (entry-point test)")
def tinynet(num_classes=6, in_channels=3, width=8):
    return nn.Sequential(nn.Conv2d(in_channels, width, 3, padding=1), nn.BatchNorm2d(width),
                         nn.ReLU(), nn.Conv2d(width, num_classes, 1))
'''


def _distribution(site, name: str, module: str, source: str, entry: str) -> None:
    (site / f"{module}.py").write_text(textwrap.dedent(source))
    info = site / f"{name.replace('-', '_')}-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(f"[segdeep.models]\n{entry} = {module}\n")


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """A folder for PYTHONPATH with a working and a broken third-party distribution."""
    site = tmp_path_factory.mktemp("site")
    _distribution(site, "segdeep-tinynet", "segdeep_tinynet", MODULE, "tinynet")
    _distribution(site, "segdeep-broken", "segdeep_broken", "import segdeep_missing_dependency\n", "brokennet")
    return site


@pytest.fixture
def loaded(site, monkeypatch, caplog):
    """The registry of this process with the entry points of ``site`` loaded (undone after)."""
    registry.list_models()  # segdeep's own (and any installed) before this site is on the path
    monkeypatch.syspath_prepend(str(site))
    before, broken = dict(registry._REGISTRY), list(registry._BROKEN)
    registry._load_entry_points()
    yield caplog
    registry._REGISTRY.clear()
    registry._REGISTRY.update(before)
    registry._BROKEN[:] = broken
    for name in ("segdeep_tinynet", "segdeep_broken"):
        sys.modules.pop(name, None)


def _env(site) -> dict:
    path = os.pathsep.join(p for p in (str(site), os.environ.get("PYTHONPATH", "")) if p)
    return dict(os.environ, PYTHONPATH=path)


def test_entry_point_architecture_is_registered_and_passes_the_checks(loaded):
    assert "tinynet" in registry.list_models()
    assert registry.model_entry("tinynet").description.startswith("two convolutions")
    check_architecture("tinynet", width=4)
    warnings = [r.getMessage() for r in loaded.get_records("setup") if "brokennet" in r.getMessage()]
    assert len(warnings) == 1 and "\n" not in warnings[0]
    assert "segdeep-broken 0.1" in warnings[0] and "segdeep_missing_dependency" in warnings[0]


def test_broken_entry_point_is_named_when_its_architecture_is_asked_for(loaded):
    with pytest.raises(SegdeepError, match="unknown architecture 'brokennet'.*entry point 'brokennet' "
                                           "\\(segdeep_broken\\) of distribution 'segdeep-broken 0.1'"):
        registry.create_model("brokennet")
    assert "unet" in registry.list_models()  # the others are there


@pytest.mark.parametrize("scheduler", [None, pytest.param("local:1", marks=pytest.mark.slow)],
                         ids=["in-process", "dask"])
def test_bundle_of_entry_point_architecture_runs_in_segdeep_predict(loaded, site, tmp_path, scheduler):
    """In a new process, and on a Dask worker (another process again)."""
    if scheduler:
        pytest.importorskip("distributed", reason="dask.distributed is not installed")
    bundle = tiny_bundle(tmp_path / "tinynet.safetensors", "tinynet", kwargs={"width": 4}, tile_size=32)
    assert read_card(bundle).architecture == "tinynet"
    image, _ = scene_arrays(size=80)
    path = write_geotiff(tmp_path / "scene.tif", image[:, :70])
    out = tmp_path / "out"
    run = subprocess.run([sys.executable, "-m", "segdeep.cli", "predict", str(path), "--model", str(bundle),
                          "--out", str(out), "--overlap", "8", "--quiet",
                          *(["--scheduler", scheduler] if scheduler else [])],
                         capture_output=True, text=True, env=_env(site), cwd=tmp_path, timeout=300)
    assert run.returncode == 0, run.stderr
    assert "Traceback" not in run.stderr
    broken = [line for line in run.stderr.splitlines() if "brokennet" in line]
    assert len(broken) == 1 and "segdeep-broken" in broken[0], run.stderr
    with rasterio.open(out / "labels.tif") as ds:
        assert ds.shape == (70, 80) and ds.crs.to_epsg() == 32640
        assert set(np.unique(ds.read(1))) <= set(range(6))


def test_segdeep_models_lists_it(loaded, capsys):
    from segdeep.cli import main

    assert main(["models"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert any(line.startswith("tinynet ") for line in lines) and any(line.startswith("unet ") for line in lines)
