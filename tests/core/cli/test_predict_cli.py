"""`segdeep predict`: outputs, messages and one-line errors (exit 2) before any compute."""

from __future__ import annotations

import json

import numpy as np
import pytest
import rasterio
from rasterio.transform import from_origin
from segdeep.classes import DUBAI_CLASSES
from segdeep.cli import main
from segdeep.testing import tiny_bundle, write_geotiff


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli")
    bundle = tiny_bundle(root / "tiny.safetensors", "unet", name="tiny unet", classes=DUBAI_CLASSES,
                         kwargs={"base_channels": 4, "depth": 3}, tile_size=64)
    rng = np.random.default_rng(0)
    image = write_geotiff(root / "scene.tif", rng.integers(0, 255, (3, 130, 160), dtype=np.uint8),
                          transform=from_origin(500000, 2780000, 0.5, 0.5))
    return root, bundle, image


def test_predict_writes_outputs_and_says_where(files, tmp_path, capsys):
    _, bundle, image = files
    out = tmp_path / "out"
    code = main(["predict", str(image), "--model", str(bundle), "--out", str(out), "--overlap", "16",
                 "--block-size", "96", "--probabilities", "--vector", "polygons.gpkg", "--quiet"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "device cpu" in captured.err and "thread(s)" in captured.err  # workers x torch threads
    assert str(out / "labels.tif") in captured.out and "preview" in captured.out
    for name in ("labels.tif", "probabilities.tif", "preview.png", "run.json", "polygons.gpkg"):
        assert (out / name).exists(), name
    run = json.loads((out / "run.json").read_text())
    assert run["parameters"]["block_size"] == 96 and run["model_card"]["name"] == "tiny unet"
    assert run["parameters"]["workers"] >= 1 and run["parameters"]["threads_per_worker"] >= 1
    with rasterio.open(out / "labels.tif") as ds:
        assert ds.crs.to_epsg() == 32640 and ds.shape == (130, 160)


def test_window_option_crops_the_output(files, tmp_path, capsys):
    _, bundle, image = files
    out = tmp_path / "w"
    assert main(["predict", str(image), "--model", str(bundle), "--out", str(out), "--overlap", "16",
                 "--window", "10,20,70,50", "--quiet"]) == 0
    with rasterio.open(out / "labels.tif") as ds:
        assert ds.shape == (50, 70)
        assert ds.transform.c == 500000 + 10 * 0.5


@pytest.mark.parametrize("extra,msg", [
    (["--overlap", "64"], "overlap 64 must be smaller than the tile size 64"),
    (["--bands", "1,2"], "takes 3 band"),
    (["--bands", "1,2,5"], "has 3 band"),
    (["--tile-size", "0"], "tile size 0 must be a positive"),
    (["--window", "1,2,3"], "expected 4"),
    (["--batch-size", "zero"], "batch size"),
    (["--workers", "0"], "workers '0' must be a whole number >= 1 or 'auto'"),
    (["--workers", "2", "--scheduler", "local:2"], "--workers 2: applies to runs in this process"),
])
def test_bad_input_exits_2_with_one_line(files, tmp_path, capsys, extra, msg):
    _, bundle, image = files
    out = tmp_path / "bad"
    code = main(["predict", str(image), "--model", str(bundle), "--out", str(out), "--quiet", *extra])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert err.startswith("segdeep predict: error:") and msg in err and "\n" not in err
    assert not (out / "labels.tif").exists()


def test_output_folder_that_is_a_file_exits_2(files, tmp_path, capsys):
    _, bundle, image = files
    blocker = tmp_path / "f"
    blocker.write_text("")
    assert main(["predict", str(image), "--model", str(bundle), "--out", str(blocker), "--quiet"]) == 2
    assert "not a folder" in capsys.readouterr().err


def test_missing_default_model_is_explained(files, tmp_path, capsys, monkeypatch):
    import segdeep.cli.predict as cli

    _, _, image = files
    monkeypatch.setattr(cli, "DEFAULT_MODEL", tmp_path / "nothing.safetensors")
    assert main(["predict", str(image), "--out", str(tmp_path / "o"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "default model" in err and "--model" in err
