"""Test-time fusion over scales and flips (segdeep.predict.fusion): what it computes, and that the
pipeline's invariants hold with it (labels identical for every block size, after a resume, on a
cluster; the plain setting is bit-identical to no setting)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import rasterio
import torch
import torch.nn.functional as F
from segdeep.classes import DUBAI_CLASSES
from segdeep.errors import SegdeepError
from segdeep.predict import PredictConfig, TestTimeFusion, fused_probabilities, parse_scales
from segdeep.predict.events import BlockDone
from segdeep.predict.run import iter_predict, predict_array, predict_raster
from segdeep.testing import scene_arrays, tiny_bundle, write_geotiff

SETTINGS = dict(overlap=16, preview=False)  # tiles of 64 px (the card's)
FUSED = dict(scales=(0.5, 1.0, 1.5), flip=True)


@pytest.fixture(scope="module")
def scene(tmp_path_factory):
    """A 160 x 144 px RGB scene and a tiny U-Net bundle (tile 64 px)."""
    root = tmp_path_factory.mktemp("fusion")
    image, _ = scene_arrays(size=160)
    write_geotiff(root / "scene.tif", image[:, :144])
    tiny_bundle(root / "model.safetensors", "unet", kwargs={"base_channels": 4, "depth": 3},
                classes=DUBAI_CLASSES, tile_size=64)
    return root


def _labels(path) -> np.ndarray:
    with rasterio.open(path) as ds:
        return ds.read(1)


@pytest.mark.parametrize(("given", "expected"), [
    (None, (1.0,)), ("", (1.0,)), ("1", (1.0,)), (1, (1.0,)), ("1.5, 0.5,1", (0.5, 1.0, 1.5)),
    ((0.75, 1.25, 0.75), (0.75, 1.25)), ("0.5,0.75,1,1.25,1.5", (0.5, 0.75, 1.0, 1.25, 1.5)),
])
def test_parse_scales(given, expected):
    assert parse_scales(given) == expected


@pytest.mark.parametrize(("given", "match"), [("0.5,x", "'x' is not a number"), ("0", "out of range"),
                                                ((1, 8), "between 0.125 and 4")])
def test_bad_scales_are_user_errors(given, match):
    with pytest.raises(SegdeepError, match=match):
        parse_scales(given)
    with pytest.raises(SegdeepError, match=match):
        PredictConfig(image="a.tif", out_dir="o", scales=given)


def test_identity_and_pass_count():
    assert TestTimeFusion().identity and TestTimeFusion((1,), False).passes == 1
    fusion = TestTimeFusion("0.5,1,1.5", flip=True)
    assert not fusion.identity and fusion.passes == 6
    assert fusion.to_dict() == {"scales": [0.5, 1.0, 1.5], "flip": True}


def _softmax_net(seed: int = 0):
    torch.manual_seed(seed)
    conv = torch.nn.Conv2d(3, 4, 3, padding=1)
    return lambda x: torch.softmax(conv(x), dim=1)


def test_flip_is_the_mean_of_the_prediction_and_the_mirrored_prediction_of_the_mirror():
    net = _softmax_net()
    x = torch.randn(2, 3, 17, 23)
    with torch.no_grad():
        got = fused_probabilities(net, x, TestTimeFusion(flip=True))
        expected = (net(x) + net(x.flip(-1)).flip(-1)) / 2
        assert not torch.allclose(net(x), expected, atol=1e-3)  # the net is not mirror-symmetric
    assert torch.allclose(got, expected, atol=1e-6)


def test_scales_average_the_resized_back_probabilities():
    net = _softmax_net()
    x = torch.randn(1, 3, 20, 20)
    seen = []

    def recording(v):
        seen.append(tuple(v.shape[-2:]))
        return net(v)

    with torch.no_grad():
        got = fused_probabilities(recording, x, TestTimeFusion((0.5, 1.0, 1.25)))
        small = F.interpolate(x, size=(10, 10), mode="bilinear", align_corners=False, antialias=True)
        large = F.interpolate(x, size=(25, 25), mode="bilinear", align_corners=False)
        back = [F.interpolate(net(v), size=(20, 20), mode="bilinear", align_corners=False) for v in (small, large)]
        expected = (back[0] + net(x) + back[1]) / 3
    assert seen == [(10, 10), (20, 20), (25, 25)]
    assert got.shape == (1, 4, 20, 20) and torch.allclose(got, expected, atol=1e-6)
    assert torch.allclose(got.sum(dim=1), torch.ones(1, 20, 20), atol=1e-5)  # still probabilities


def test_plain_setting_is_bit_identical_and_fusion_changes_the_result(scene):
    image, _ = scene_arrays(size=160)
    from segdeep.models.bundle import load_bundle

    model, card = load_bundle(scene / "model.safetensors")
    plain, p_plain = predict_array(model, card, image, overlap=16, probabilities=True)
    same, p_same = predict_array(model, card, image, overlap=16, probabilities=True, scales="1", flip=False)
    fused, p_fused = predict_array(model, card, image, overlap=16, probabilities=True, **FUSED)
    assert np.array_equal(plain, same) and np.array_equal(p_plain, p_same)
    assert not np.array_equal(p_plain, p_fused)
    assert 0 < (plain != fused).mean() < 0.5  # a different, not an unrelated, segmentation


def test_fused_labels_identical_for_every_block_size_and_recorded(scene, tmp_path):
    results = {}
    for block in (48, 100, 10_000):
        result = predict_raster(scene / "scene.tif", scene / "model.safetensors", tmp_path / f"b{block}",
                                block_size=block, **SETTINGS, **FUSED)
        results[block] = _labels(result.labels)
    whole = results.pop(10_000)
    for block, labels in results.items():
        assert np.array_equal(labels, whole), f"block size {block} differs"
    parameters = json.loads((tmp_path / "b48" / "run.json").read_text())["parameters"]
    assert parameters["scales"] == [0.5, 1.0, 1.5] and parameters["flip"] is True


def test_resume_with_fusion_gives_the_same_labels_and_a_change_is_refused(scene, tmp_path):
    out = tmp_path / "o"
    kwargs = dict(block_size=48, **SETTINGS)
    gen = iter_predict(scene / "scene.tif", scene / "model.safetensors", out, **kwargs, **FUSED)
    for event in gen:
        if isinstance(event, BlockDone):
            break
    gen.close()
    for changed in (dict(scales=(0.5, 1.0), flip=True), dict(scales=(0.5, 1.0, 1.5), flip=False), {}):
        with pytest.raises(SegdeepError, match=r"different settings \(test_time\)"):
            predict_raster(scene / "scene.tif", scene / "model.safetensors", out, resume=True, **kwargs, **changed)
    resumed = predict_raster(scene / "scene.tif", scene / "model.safetensors", out, resume=True, **kwargs, **FUSED)
    reference = predict_raster(scene / "scene.tif", scene / "model.safetensors", tmp_path / "ref", **kwargs, **FUSED)
    assert resumed.blocks_resumed >= 1
    assert np.array_equal(_labels(resumed.labels), _labels(reference.labels))


def test_cluster_run_with_fusion_equals_in_process(scene, tmp_path):
    pytest.importorskip("distributed", reason="dask.distributed is not installed")
    from segdeep.distributed import connect, predict_distributed

    kwargs = dict(block_size=64, **SETTINGS, **FUSED)
    ref = predict_raster(scene / "scene.tif", scene / "model.safetensors", tmp_path / "ref", **kwargs)
    with connect("local:2") as client:
        got = predict_distributed(scene / "scene.tif", scene / "model.safetensors", tmp_path / "dist",
                                  scheduler=client, **kwargs)
    assert np.array_equal(_labels(ref.labels), _labels(got.labels))


def test_cli_predict_scales_and_flip(scene, tmp_path):
    from segdeep.cli import main

    code = main(["predict", str(scene / "scene.tif"), "--model", str(scene / "model.safetensors"), "--out",
                 str(tmp_path / "cli"), "--overlap", "16", "--scales", "0.5,1,1.5", "--flip", "--quiet"])
    assert code == 0
    ref = predict_raster(scene / "scene.tif", scene / "model.safetensors", tmp_path / "api", **SETTINGS, **FUSED)
    assert np.array_equal(_labels(tmp_path / "cli" / "labels.tif"), _labels(ref.labels))
    assert main(["predict", str(scene / "scene.tif"), "--model", str(scene / "model.safetensors"), "--out",
                 str(tmp_path / "bad"), "--scales", "0.5,x", "--quiet"]) == 2
