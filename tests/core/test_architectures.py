"""One generic test class run over every registered architecture (``list_models()``).

A new architecture needs no edit here: it is picked up from the registry. ``LIGHT`` only lists
keyword arguments that make a heavy architecture cheap enough for a 2-core CPU (fewer fc6 channels,
a ResNet-18 backbone, a narrow U-Net); the layers and their wiring are the same. The papers'
configurations are checked separately (parameter counts against the published figures).
"""

from __future__ import annotations

import io
import os
import pickle
import warnings

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from segdeep.errors import SegdeepError
from segdeep.models import create_model, list_models, model_entry
from segdeep.models.vgg import vgg16_features

ARCHITECTURES = list_models()

#: Keyword arguments that keep heavy architectures small in tests (same structure, fewer channels).
LIGHT: dict[str, dict] = {
    "fcn32s": {"fc_channels": 64},
    "fcn16s": {"fc_channels": 64},
    "fcn8s": {"fc_channels": 64},
    "dilated": {"fc_channels": 64},
    "deeplab_v1": {"fc_channels": 64},
    "pspnet": {"backbone": "resnet18", "head_channels": 64},
    "unet": {"base_channels": 8},
    "deeplab_v2": {"backbone": "resnet18"},
    "deeplab_v3": {"backbone": "resnet18"},
    "deeplab_v3plus": {"backbone": "resnet18"},
}

HEIGHT, WIDTH = 29, 43  # odd, and not a multiple of any output stride


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    """Small tensors on a shared 2-core machine: one thread avoids OpenMP spinning (5x less CPU)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def build(name: str, **kwargs) -> nn.Module:
    """The light variant of ``name``; zero-initialised layers (FCN's score layers, as in the paper)
    get small random weights so that outputs and gradients are not trivially zero."""
    torch.manual_seed(0)
    model = create_model(name, **{**LIGHT.get(name, {}), **kwargs})
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() > 1 and not p.any():
                p.normal_(0.0, 0.01)
    return model


def first_conv(model: nn.Module) -> nn.Conv2d:
    return next(m for m in model.modules() if isinstance(m, nn.Conv2d))


@pytest.fixture(scope="module", params=ARCHITECTURES, ids=ARCHITECTURES)
def arch(request):
    """(name, light model with 5 classes in eval mode, an input, the model's output for it)."""
    model = build(request.param, num_classes=5).eval()
    x = torch.randn(1, 3, HEIGHT, WIDTH)
    with torch.no_grad():
        y = model(x)
    return request.param, model, x, y


class TestArchitecture:
    def test_registry_entry(self, arch):
        entry = model_entry(arch[0])
        assert entry.paper and entry.output_stride

    def test_forward_odd_size(self, arch):
        _, _, _, y = arch
        assert type(y) is torch.Tensor
        assert y.shape == (1, 5, HEIGHT, WIDTH)
        assert torch.isfinite(y).all()
        assert y.std() > 0

    def test_backward(self, arch):
        _, model, _, _ = arch
        # Training updates batch-norm statistics: keep the fixture's model as it was.
        buffers = {k: v.clone() for k, v in model.named_buffers()}
        # Batch norm needs more than one value per channel in training (1x1 pooled branches).
        n = 2 if any(isinstance(m, nn.BatchNorm2d) for m in model.modules()) else 1
        x = torch.randn(n, 3, HEIGHT, WIDTH)
        target = torch.randint(0, 5, (n, HEIGHT, WIDTH))
        target[:, :3] = 255  # nodata rows are ignored by the loss
        try:
            F.cross_entropy(model.train()(x), target, ignore_index=255).backward()
            trainable = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
            missing = [n for n, p in trainable if p.grad is None]
            assert not missing, f"parameters without gradient: {missing[:5]}"
            assert all(torch.isfinite(p.grad).all() for _, p in trainable)
            assert first_conv(model).weight.grad.abs().sum() > 0  # the loss reaches the input layer
        finally:
            model.zero_grad(set_to_none=True)
            model.eval().load_state_dict(buffers, strict=False)

    # in_channels 3 is the fixture's model; 5 classes there.
    @pytest.mark.parametrize(("in_channels", "num_classes"), [(1, 2), (4, 7), (8, 2)])
    def test_in_channels_and_classes(self, arch, in_channels, num_classes):
        model = build(arch[0], num_classes=num_classes, in_channels=in_channels).eval()
        assert first_conv(model).in_channels == in_channels
        with torch.no_grad():
            y = model(torch.randn(1, in_channels, 21, 27))
        assert y.shape == (1, num_classes, 21, 27)

    def test_deterministic_in_eval(self, arch):
        _, model, x, y = arch
        with torch.no_grad():
            assert torch.equal(model.eval()(x), y)

    def test_channels_last_same_output(self, arch):
        _, model, x, ref = arch
        try:
            with torch.no_grad():
                model.to(memory_format=torch.channels_last)
                y = model(x.contiguous(memory_format=torch.channels_last))
        finally:
            model.to(memory_format=torch.contiguous_format)
        assert torch.allclose(y, ref, rtol=1e-4, atol=1e-5 * float(ref.abs().max()))


    def test_onnx_export_matches_torch(self, arch):
        """Every architecture exports (opset 17, dynamic batch, the tile size fixed) and
        onnxruntime gives torch's logits: the route to QGIS (Deepness)."""
        ort = pytest.importorskip("onnxruntime")
        _, model, x, ref = arch
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
        assert torch.allclose(torch.from_numpy(got), expected, rtol=1e-4,
                              atol=1e-5 * float(expected.abs().max()))


#: Published parameter counts (21 PASCAL VOC classes) and the architectures that should match them.
PAPER_PARAMETERS = {
    "fcn8s": 134e6,       # Long et al. 2015, Table 1: FCN-VGG16, 134M
    "segnet": 29.5e6,     # Badrinarayanan et al. 2017: 29.5M (encoder 14.7M)
    "deeplab_v1": 20.5e6,  # Chen et al. 2015, Table 2: DeepLab-LargeFOV, 20.5M
}


@pytest.mark.parametrize("name", sorted(PAPER_PARAMETERS))
def test_paper_parameter_count(name):
    """Default keyword arguments give the paper's network, with its published parameter count
    (built on the "meta" device: shapes without memory or initialisation)."""
    with torch.device("meta"):
        model = create_model(name, num_classes=21)
    count = sum(p.numel() for p in model.parameters())
    assert abs(count - PAPER_PARAMETERS[name]) / PAPER_PARAMETERS[name] < 0.01, count


@pytest.mark.parametrize("name", ARCHITECTURES)
def test_default_configuration_output_shape(name):
    """The full-size default of every architecture (VGG16 fc6/fc7, ResNet-101 ...) maps an odd
    input size to logits of that size; run on the "meta" device, so shapes only."""
    with torch.device("meta"):
        model = create_model(name, num_classes=21, in_channels=4).eval()
        y = model(torch.empty(2, 4, HEIGHT, WIDTH))
    assert y.shape == (2, 21, HEIGHT, WIDTH)


@pytest.mark.parametrize(("height", "width"), [(8, 12), (7, 5), (13, 29), (1, 1)])
def test_pspnet_bin_pooling_is_adaptive_average_pooling(height, width):
    from segdeep.models.architectures.pspnet import adaptive_avg_pool

    x = torch.randn(2, 3, height, width)
    for bins in (1, 2, 3, 6):
        assert torch.allclose(adaptive_avg_pool(x, bins), F.adaptive_avg_pool2d(x, bins), atol=1e-6)


def test_pspnet_unknown_backbone_is_a_user_error():
    with pytest.raises(SegdeepError, match="resnet50"):
        create_model("pspnet", num_classes=3, backbone="vgg16")


@pytest.fixture(scope="module")
def vgg16_file(tmp_path_factory):
    """A torchvision-layout VGG16 state dict; the classifier is 64 wide instead of 4096 (same
    layout: classifier.0 is C x 512*7*7, classifier.3 is C x C) to keep the file small."""
    torch.manual_seed(1)
    state = {f"features.{k}": v for k, v in vgg16_features().state_dict().items()}
    state["classifier.0.weight"] = torch.randn(64, 512 * 7 * 7)
    state["classifier.0.bias"] = torch.randn(64)
    state["classifier.3.weight"] = torch.randn(64, 64)
    state["classifier.3.bias"] = torch.randn(64)
    path = tmp_path_factory.mktemp("weights") / "vgg16.pth"
    torch.save(state, path)
    return path, state


def test_vgg16_weights_fill_fcn_front_end_and_fc_layers(vgg16_file):
    path, state = vgg16_file
    model = create_model("fcn8s", num_classes=3, fc_channels=64, pretrained=str(path))
    assert torch.equal(model.features[28].weight, state["features.28.weight"])
    assert torch.equal(model.fc.fc6.weight, state["classifier.0.weight"].reshape(64, 512, 7, 7))
    assert torch.equal(model.fc.fc7.weight[:, :, 0, 0], state["classifier.3.weight"])


def test_vgg16_weights_decimated_for_deeplab_largefov(vgg16_file):
    """DeepLab-LargeFOV: fc6 3x3 from VGG's 7x7 (taps 0, 3, 6), every 4th channel; 4 bands."""
    path, state = vgg16_file
    model = create_model("deeplab_v1", num_classes=3, in_channels=4, fc_channels=16,
                         pretrained=str(path))
    w6 = state["classifier.0.weight"].reshape(64, 512, 7, 7)
    assert torch.equal(model.fc.fc6.weight, w6[::4, :, ::3, ::3])
    assert torch.equal(model.fc.fc7.weight[:, :, 0, 0], state["classifier.3.weight"][::4, ::4])
    assert torch.equal(model.features[2].weight, state["features.2.weight"])
    assert torch.allclose(model.features[0].weight[:, 3], state["features.0.weight"][:, 0] * 3 / 4)


def test_vgg16_weights_that_do_not_fit_are_a_user_error(vgg16_file):
    path, _ = vgg16_file
    with pytest.raises(SegdeepError, match="VGG16-BN"):
        create_model("segnet", num_classes=3, pretrained=str(path))  # plain VGG16 file, BN model
    with pytest.raises(SegdeepError, match="cannot initialise"):
        create_model("dilated", num_classes=3, fc_channels=48, pretrained=str(path))


def test_vgg16_cached_weights_are_never_downloaded_silently(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    with pytest.raises(SegdeepError, match="allow_download"):
        create_model("fcn32s", num_classes=3, fc_channels=16, pretrained=True)


class _Exploit:
    def __reduce__(self):
        return (os.system, ("touch EXPLOITED",))


def test_vgg16_weights_refuse_a_pickle_with_code(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "evil.pth"
    path.write_bytes(pickle.dumps({"features.0.weight": _Exploit()}))
    with pytest.raises(SegdeepError, match="evil.pth"):
        create_model("deeplab_v1", num_classes=3, fc_channels=16, pretrained=str(path))
    assert not (tmp_path / "EXPLOITED").exists()
