"""ONNX models in segdeep's pipeline: our own export agrees with its bundle, and a model with
Deepness-style metadata that segdeep did not write (built here) runs with its names and normalisation."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
import rasterio
import torch
import torch.nn as nn
from segdeep.cli import main
from segdeep.errors import SegdeepError
from segdeep.models.bundle import load_bundle
from segdeep.models.card import read_card, read_onnx_info
from segdeep.models.onnx import export_onnx
from segdeep.predict import predict_raster
from segdeep.testing import scene_arrays, tiny_bundle, write_geotiff


def _labels(path) -> np.ndarray:
    with rasterio.open(path) as ds:
        return ds.read(1)


def test_our_export_runs_in_the_pipeline_like_its_bundle(tmp_path):
    bundle = tiny_bundle(tmp_path / "m.safetensors", "unet", kwargs={"base_channels": 8}, tile_size=64, gsd=0.5)
    onnx_path = export_onnx(bundle, tmp_path / "m.onnx", opset=15)
    image, _ = scene_arrays(size=200, seed=3)
    scene = write_geotiff(tmp_path / "scene.tif", image)
    settings = dict(overlap=16, block_size=96, device="cpu", workers=1)
    ref = predict_raster(scene, bundle, tmp_path / "ref", **settings)
    got = predict_raster(scene, onnx_path, tmp_path / "onnx", **settings)
    a, b = _labels(ref.labels), _labels(got.labels)
    assert (a == b).mean() >= 0.999
    card = read_card(onnx_path)
    assert card.architecture == "unet" and card.gsd == 0.5
    assert "building" in (tmp_path / "onnx" / "labels.qml").read_text()  # the card's class names
    run = json.loads(got.run_json.read_text())
    assert run["model_card"]["architecture"] == "unet"


def test_logits_export_runs_too(tmp_path):
    bundle = tiny_bundle(tmp_path / "m.safetensors", "unet", kwargs={"base_channels": 8}, tile_size=32)
    model, _ = load_bundle(bundle)
    path = export_onnx(bundle, tmp_path / "m.onnx", probabilities=False)
    onnx_model, card = load_bundle(path)
    assert read_onnx_info(path).output == "logits" and card.tile_size == 32
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        np.testing.assert_allclose(torch.softmax(onnx_model(x), 1), torch.softmax(model(x), 1), atol=1e-5)


class _PixelNet(nn.Module):
    """Per-pixel classifier (1x1 convolution) ending in softmax or sigmoid, as exporters write them."""

    def __init__(self, classes: int, sigmoid: bool = False):
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(3, classes, 1)
        self.sigmoid = sigmoid

    def forward(self, x):
        y = self.conv(x)
        return torch.sigmoid(y) if self.sigmoid else torch.softmax(y, dim=1)


def _deepness_model(path, net: nn.Module, meta: dict) -> None:
    torch.onnx.export(net, (torch.zeros(1, 3, 48, 48),), str(path), dynamo=False, opset_version=15,
                      input_names=["x"], output_names=["y"], dynamic_axes={"x": {0: "n"}, "y": {0: "n"}})
    graph = onnx.load(str(path))
    for key, value in meta.items():
        prop = graph.metadata_props.add()
        prop.key, prop.value = key, json.dumps(value)
    onnx.save(graph, str(path))


@pytest.mark.parametrize("sigmoid", [False, True])
def test_a_deepness_style_model_runs_with_its_names_and_standardisation(tmp_path, sigmoid):
    mean, std = [0.5, 0.4, 0.3], [0.2, 0.25, 0.3]
    names = {0: "field"} if sigmoid else {0: "background", 1: "field", 2: "forest", 3: "water"}
    net = _PixelNet(1 if sigmoid else 4, sigmoid).eval()
    path = tmp_path / "zoo.onnx"
    _deepness_model(path, net, {"model_type": "Segmentor", "class_names": names, "resolution": 20,
                                "tile_size": 48, "tiles_overlap": 15, "seg_thresh": 0.5,
                                "standardization_mean": mean, "standardization_std": std})
    card = read_card(path)
    expected_names = ["background", "field"] if sigmoid else list(names.values())
    assert [c.name for c in card.classes] == expected_names
    assert card.gsd == pytest.approx(0.2) and card.tile_size == 48 and card.bands == [1, 2, 3]
    image = np.random.default_rng(1).integers(0, 256, (3, 100, 90)).astype(np.uint8)
    scene = write_geotiff(tmp_path / "scene.tif", image)
    result = predict_raster(scene, path, tmp_path / "out", overlap=8, device="cpu", workers=1)
    # A per-pixel model: the expected class map is the network on each pixel, Deepness's normalisation.
    x = (torch.from_numpy(image).float()[None] / 255 - torch.tensor(mean)[:, None, None]) / torch.tensor(std)[:, None, None]
    with torch.no_grad():
        out = net(x)
    expected = (out[0, 0] > 0.5).numpy().astype(np.uint8) if sigmoid else out[0].argmax(0).numpy()
    assert (_labels(result.labels) == expected).mean() >= 0.999


def test_bad_onnx_files_are_one_line_errors(tmp_path):
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"not a model")
    with pytest.raises(SegdeepError, match="junk.onnx: not an ONNX model"):
        read_card(junk)
    net = _PixelNet(2).eval()
    path = tmp_path / "det.onnx"
    _deepness_model(path, net, {"model_type": "Detector"})
    with pytest.raises(SegdeepError, match="model_type 'Detector'"):
        load_bundle(path)
    _deepness_model(path, net, {"class_names": {0: "a", 1: "b", 2: "c"}})
    with pytest.raises(SegdeepError, match="class_names lists 3 classes but the output has 2"):
        read_card(path)


def test_cli_predict_takes_an_onnx_model(tmp_path, capsys):
    bundle = tiny_bundle(tmp_path / "m.safetensors", "unet", kwargs={"base_channels": 8}, tile_size=32)
    assert main(["export-onnx", str(bundle), "--out", str(tmp_path / "m.onnx")]) == 0
    assert "pass --gsd" in capsys.readouterr().out
    image, _ = scene_arrays(size=64, seed=1)
    scene = write_geotiff(tmp_path / "s.tif", image)
    assert main(["predict", str(scene), "--model", str(tmp_path / "m.onnx"), "--out", str(tmp_path / "o"),
                 "--device", "cpu"]) == 0
    assert (tmp_path / "o" / "labels.tif").exists()
