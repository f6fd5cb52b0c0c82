"""ONNX export for QGIS Deepness: onnxruntime gives torch's probabilities; Deepness's metadata."""

from __future__ import annotations

import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from segdeep.classes import DUBAI_CLASSES
from segdeep.cli import main
from segdeep.errors import SegdeepError
from segdeep.models.bundle import ModelCard, load_bundle
from segdeep.models.onnx import export_onnx
from segdeep.testing import tiny_bundle

CASES = {
    "unet": {"base_channels": 8},
    "deeplab_v3plus": {"backbone": "mobilenet_v3_large"},  # ASPP image pooling, hardswish, decoder
}


def _bundle(tmp_path, arch):
    path = tiny_bundle(tmp_path / f"{arch}.safetensors", arch, name=f"test-{arch}", kwargs=CASES[arch],
                       bands=[1, 2, 3, 4], mean=[0.4, 0.4, 0.4, 0.3], std=[0.2, 0.2, 0.2, 0.25],
                       scale=1 / 255, tile_size=64, gsd=0.25)
    model, _ = load_bundle(path)  # the network export_onnx reads
    return model, path


@pytest.mark.parametrize("arch", sorted(CASES))
def test_onnxruntime_matches_torch(tmp_path, arch):
    model, bundle = _bundle(tmp_path, arch)
    out = export_onnx(bundle, tmp_path / "model.onnx")
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([bundle.name, "model.onnx"])
    assert onnx.load(str(out)).opset_import[0].version >= 17

    x = torch.randn(2, 4, 64, 64)  # batch 2: the batch dimension is dynamic
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    (got,) = session.run(None, {"input": x.numpy()})
    with torch.no_grad():
        expected = torch.softmax(model(x), dim=1).numpy()
    assert got.shape == (2, 6, 64, 64)
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(got.sum(axis=1), 1.0, atol=1e-5)


def test_deepness_metadata_and_cli(tmp_path, capsys):
    _, bundle = _bundle(tmp_path, "unet")
    out = tmp_path / "qgis" / "dubai.onnx"
    assert main(["export-onnx", str(bundle), "--out", str(out), "--tile-size", "32", "--logits", "--opset", "15"]) == 0
    assert "dubai.onnx" in capsys.readouterr().out
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    meta = {k: json.loads(v) for k, v in session.get_modelmeta().custom_metadata_map.items()}
    assert meta["model_type"] == "Segmentor"
    assert meta["class_names"] == {str(c.index): c.name for c in DUBAI_CLASSES}
    assert meta["resolution"] == pytest.approx(25.0)  # 0.25 m/px in cm/px
    assert meta["tile_size"] == 32
    # Deepness's defaults would threshold at 0.5 and drop small segments: both off; overlap as segdeep's
    assert meta["seg_thresh"] == 0 and meta["seg_small_segment"] == 0
    assert meta["tiles_overlap"] == 25  # 8 px of a 32 px tile, in percent
    assert onnx.load(str(out)).opset_import[0].version == 15
    assert meta["segdeep_output"] == "logits"
    # Deepness feeds pixel / 255 then standardises: same input as the card's (pixel/255 - mean)/std.
    assert meta["standardization_mean"] == pytest.approx([0.4, 0.4, 0.4, 0.3])
    assert meta["standardization_std"] == pytest.approx([0.2, 0.2, 0.2, 0.25])
    assert meta["segdeep_card"]["architecture"] == "unet"
    assert session.get_inputs()[0].shape[1:] == [4, 32, 32]
    (logits,) = session.run(None, {"input": np.zeros((1, 4, 32, 32), np.float32)})
    assert not np.allclose(logits.sum(axis=1), 1.0)  # --logits: no softmax


def test_deepness_standardization_follows_scale():
    card = ModelCard(architecture="unet", classes=list(DUBAI_CLASSES), bands=[1], mean=[100.0], std=[50.0],
                     scale=1.0)
    from segdeep.models.onnx import deepness_metadata

    meta = deepness_metadata(card, 128)
    pixel = 180.0
    ours = (pixel * card.scale - card.mean[0]) / card.std[0]
    m, s = json.loads(meta["standardization_mean"])[0], json.loads(meta["standardization_std"])[0]
    assert (pixel / 255 - m) / s == pytest.approx(ours)
    assert "resolution" not in meta  # no gsd, no resolution
    assert json.loads(deepness_metadata(card, 128, gsd=0.5, overlap=32)["resolution"]) == pytest.approx(50.0)
    assert json.loads(deepness_metadata(card, 128, overlap=32)["tiles_overlap"]) == 25


def test_opset_and_gsd_limits(tmp_path):
    _, bundle = _bundle(tmp_path, "unet")
    for args, message in ((["--opset", "14"], "--opset 14: use 15 or later"), (["--gsd", "0"], "--gsd 0.0")):
        with pytest.raises(SegdeepError, match=message):
            export_onnx(bundle, tmp_path / "x.onnx", opset=int(args[1]) if args[0] == "--opset" else 17,
                        gsd=float(args[1]) if args[0] == "--gsd" else None)
    assert not (tmp_path / "x.onnx").exists()


def test_bad_bundle_is_a_one_line_error(tmp_path, capsys):
    bad = tmp_path / "bad.safetensors"
    bad.write_text("nope")
    assert main(["export-onnx", str(bad), "--out", str(tmp_path / "x.onnx")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("segdeep export-onnx: error:") and "bad.safetensors" in err and "\n" not in err
    assert not (tmp_path / "x.onnx").exists()
    with pytest.raises(SegdeepError, match="opset"):
        export_onnx(bad, tmp_path / "x.onnx", opset=13)
