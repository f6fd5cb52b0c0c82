"""Model bundles: round trips (float32 and float16), card validation errors, torchvision import, and
refusal of a checkpoint that would run code."""

from __future__ import annotations

import json
import os
import pickle

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file
from segdeep.classes import DUBAI_CLASSES, ClassInfo
from segdeep.errors import SegdeepError
from segdeep.models import create_model
from segdeep.models.bundle import (
    CARD_KEY,
    ModelCard,
    import_torchvision_checkpoint,
    load_bundle,
    read_card,
    save_bundle,
)

UNET = {"base_channels": 8}


def _card(**changes) -> ModelCard:
    values = dict(name="dubai-unet-test", architecture="unet", kwargs=dict(UNET), classes=list(DUBAI_CLASSES),
                  bands=[1, 2, 3], tile_size=256, gsd=0.5, training={"data": "Dubai tiles 1-7"},
                  validation={"mean_iou": 0.61})
    values.update(changes)
    return ModelCard(**values)


@pytest.fixture(scope="module")
def unet():
    torch.manual_seed(0)
    model = create_model("unet", num_classes=6, **UNET).eval()
    with torch.no_grad():  # non-trivial batch-norm statistics, so that they must round-trip too
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.1, 0.1)
                m.running_var.uniform_(0.5, 1.5)
    return model


def _rewrite_card(path, card_dict, out):
    save_file(load_file(str(path)), str(out), metadata={CARD_KEY: json.dumps(card_dict)})


def test_round_trip_float32(unet, tmp_path):
    path = save_bundle(unet, _card(), tmp_path / "m.safetensors")
    assert sorted(os.listdir(tmp_path)) == ["m.safetensors"]  # no temporary file left behind
    model, card = load_bundle(path)
    assert card.to_dict() == _card().to_dict()
    assert not model.training
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(model(x), unet(x))


def test_round_trip_float16_is_smaller_and_close(unet, tmp_path):
    full = save_bundle(unet, _card(), tmp_path / "full.safetensors")
    half = save_bundle(unet, _card(), tmp_path / "half.safetensors", half=True)
    assert half.stat().st_size < 0.6 * full.stat().st_size
    model, _ = load_bundle(half)
    assert all(p.dtype == torch.float32 for p in model.parameters())
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        ref, got = unet(x), model(x)
    assert not torch.equal(got, ref)
    torch.testing.assert_close(got, ref, rtol=1e-2, atol=1e-2 * float(ref.abs().max()))


def test_card_dict_round_trip_and_read_card(unet, tmp_path):
    card = _card(classes=[ClassInfo(0, "tree", (0, 128, 0)), ClassInfo(1, "roof", (200, 0, 0))],
                 bands=[4, 3, 2, 1], mean=[0.1, 0.2, 0.3, 0.4], std=[0.5, 0.5, 0.5, 0.5])
    assert ModelCard.from_dict(json.loads(json.dumps(card.to_dict()))) == card
    model = create_model("unet", num_classes=2, in_channels=4, **UNET)
    path = save_bundle(model, card, tmp_path / "ms.safetensors")
    assert read_card(path) == card
    loaded, _ = load_bundle(path)
    assert loaded(torch.randn(1, 4, 32, 32)).shape == (1, 2, 32, 32)


def test_normalize():
    card = _card(bands=[1, 2], mean=[0.5, 0.25], std=[0.5, 0.25], scale=1 / 255)
    pixels = np.array([[[0, 255]], [[255, 0]]], dtype=np.uint8)  # 2 bands x 1 x 2
    x = card.normalize(pixels)
    assert x.dtype == torch.float32 and x.shape == (2, 1, 2)
    assert x.flatten().tolist() == [-1.0, 1.0, 3.0, -1.0]
    with pytest.raises(SegdeepError, match="2 bands"):
        card.normalize(np.zeros((3, 4, 4)))


def test_missing_key(unet, tmp_path):
    path = save_bundle(unet, _card(), tmp_path / "m.safetensors")
    data = _card().to_dict()
    del data["classes"]
    _rewrite_card(path, data, tmp_path / "bad.safetensors")
    with pytest.raises(SegdeepError, match=r"bad\.safetensors.*missing key 'classes'"):
        load_bundle(tmp_path / "bad.safetensors")


def test_unknown_architecture(unet, tmp_path):
    path = save_bundle(unet, _card(), tmp_path / "m.safetensors")
    _rewrite_card(path, {**_card().to_dict(), "architecture": "unet3000"}, tmp_path / "bad.safetensors")
    with pytest.raises(SegdeepError, match="unknown architecture 'unet3000'; known: .*deeplab_v3"):
        load_bundle(tmp_path / "bad.safetensors")


def test_class_count_not_matching_the_weights(unet, tmp_path):
    path = save_bundle(unet, _card(), tmp_path / "m.safetensors")
    four = [c.to_dict() for c in DUBAI_CLASSES[:4]]
    _rewrite_card(path, {**_card().to_dict(), "classes": four}, tmp_path / "bad.safetensors")
    with pytest.raises(SegdeepError, match="card lists 4 classes but the weights' layer .* has 6 class outputs"):
        load_bundle(tmp_path / "bad.safetensors")
    with pytest.raises(SegdeepError, match="card lists 4 classes"):  # also caught when saving
        save_bundle(unet, _card(classes=list(DUBAI_CLASSES[:4])), tmp_path / "never.safetensors")
    assert not (tmp_path / "never.safetensors").exists()


def test_band_count_not_matching_the_weights(unet, tmp_path):
    path = save_bundle(unet, _card(), tmp_path / "m.safetensors")
    data = {**_card().to_dict(), "bands": [1, 2, 3, 4], "mean": [0.5] * 4, "std": [0.2] * 4}
    _rewrite_card(path, data, tmp_path / "bad.safetensors")
    with pytest.raises(SegdeepError, match=r"4 input bands \[1, 2, 3, 4\] but the weights' first layer .* takes 3"):
        load_bundle(tmp_path / "bad.safetensors")


def test_not_a_safetensors_file(tmp_path):
    path = tmp_path / "model.safetensors"
    path.write_bytes(b"\x89PNG not a model at all")
    with pytest.raises(SegdeepError, match=r"model\.safetensors: not a safetensors model bundle"):
        load_bundle(path)
    with pytest.raises(SegdeepError, match="no such model bundle"):
        read_card(tmp_path / "absent.safetensors")
    save_file({"w": torch.zeros(2)}, str(tmp_path / "plain.safetensors"))
    with pytest.raises(SegdeepError, match="without a segdeep model card"):
        read_card(tmp_path / "plain.safetensors")


class _Exploit:
    def __reduce__(self):
        return (os.system, (f"touch {os.getcwd()}/EXPLOITED",))


def test_malicious_pickle_is_refused_and_nothing_runs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    evil = tmp_path / "evil.pth"
    with open(evil, "wb") as f:
        pickle.dump({"classifier.4.weight": _Exploit()}, f)
    with pytest.raises(SegdeepError, match=r"evil\.pth: refused.*run code"):
        import_torchvision_checkpoint(evil, "deeplab_v3", _card(architecture="deeplab_v3", kwargs={}))
    assert not (tmp_path / "EXPLOITED").exists()


def test_import_torchvision_checkpoint(tmp_path):
    from torchvision.models.segmentation import deeplabv3_mobilenet_v3_large

    torch.manual_seed(0)
    tv = deeplabv3_mobilenet_v3_large(weights=None, weights_backbone=None, num_classes=6, aux_loss=True).eval()
    pth = tmp_path / "tv.pth"
    torch.save(tv.state_dict(), pth)
    card = _card(architecture="", kwargs={"backbone": "mobilenet_v3_large"})
    model, card = import_torchvision_checkpoint(pth, "deeplab_v3", card, out=tmp_path / "tv.safetensors")
    assert card.architecture == "deeplab_v3" and card.kwargs["aux_loss"] is True
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        expected = tv(x)["out"]
        torch.testing.assert_close(model(x), expected)
        reloaded, _ = load_bundle(tmp_path / "tv.safetensors")
        torch.testing.assert_close(reloaded(x), expected)


def test_models_command_lists_architectures_and_bundles(unet, tmp_path, capsys):
    from segdeep.cli import main

    save_bundle(unet, _card(), tmp_path / "dubai.safetensors")
    (tmp_path / "broken.safetensors").write_bytes(b"junk")
    assert main(["models", "--folder", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    rows = {line.split()[0]: line for line in out.splitlines() if line.strip()}
    assert "8 or 16" in rows["deeplab_v3"] and "Rethinking" in rows["deeplab_v3"]
    # Parameters counted on the meta device: torchvision's deeplabv3_resnet50 with 6 classes.
    assert " 39.6 " in rows["deeplab_v3"]
    bundle = rows[str(tmp_path / "dubai.safetensors")]
    assert "dubai-unet-test" in bundle and "6: building, land" in bundle and "0.610" in bundle
    assert "unreadable" in rows[str(tmp_path / "broken.safetensors")]
    assert main(["models", "--folder", str(tmp_path / "absent")]) == 2
