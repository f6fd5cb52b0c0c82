"""One generic test class run over every registered architecture (``list_models()``).

The checks are :class:`segdeep.testing.ArchitectureCheck`'s, the ones
:func:`segdeep.testing.check_architecture` runs on a third-party architecture. A new architecture needs no edit here: it is picked up from the registry. ``LIGHT`` only lists
keyword arguments that make a heavy architecture cheap enough for a 2-core CPU (fewer fc6 channels,
a ResNet-18 backbone, a narrow U-Net); the layers and their wiring are the same. The papers'
configurations are checked separately (parameter counts against the published figures).
"""

from __future__ import annotations

import os
import pickle

import pytest
import torch
import torch.nn.functional as F
from segdeep.errors import SegdeepError
from segdeep.models import create_model, list_models, model_entry
from segdeep.models.vgg import vgg16_features
from segdeep.testing import LIGHT_KWARGS, ArchitectureCheck

ARCHITECTURES = list_models()

#: Keyword arguments that keep heavy architectures small in tests (same structure, fewer channels);
#: the U-Net checked here is the default depth, 8 channels wide.
LIGHT: dict[str, dict] = {**LIGHT_KWARGS, "unet": {"base_channels": 8}}

HEIGHT, WIDTH = 29, 43  # odd, and not a multiple of any output stride


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


@pytest.fixture(scope="module", params=ARCHITECTURES, ids=ARCHITECTURES)
def arch(request) -> ArchitectureCheck:
    """segdeep.testing's checks of the light variant with 5 classes: the model in eval mode, an
    input of HEIGHT x WIDTH and the model's output for it are built once per architecture."""
    return ArchitectureCheck(request.param, num_classes=5, height=HEIGHT, width=WIDTH,
                             **LIGHT.get(request.param, {}))


class TestArchitecture:
    """Each test is one of :func:`segdeep.testing.check_architecture`'s checks."""

    def test_registry_entry(self, arch):
        arch.registry_entry()
        assert model_entry(arch.name).paper  # ours cite their paper

    def test_forward_odd_size(self, arch):
        arch.forward_odd_size()

    def test_backward(self, arch):
        arch.backward()

    # in_channels 3 is the fixture's model; 5 classes there.
    @pytest.mark.parametrize(("in_channels", "num_classes"), ArchitectureCheck.IN_CHANNELS_AND_CLASSES)
    def test_in_channels_and_classes(self, arch, in_channels, num_classes):
        arch.in_channels_and_classes(in_channels, num_classes)

    def test_deterministic_in_eval(self, arch):
        arch.deterministic_in_eval()

    def test_channels_last_same_output(self, arch):
        arch.channels_last_same_output()

    def test_bundle_round_trip(self, arch, tmp_path):
        """Saved as a bundle and rebuilt through the registry: the same logits."""
        arch.bundle_round_trip(tmp_path)

    def test_onnx_export_matches_torch(self, arch):
        """Every architecture exports (opset 17, dynamic batch, the tile size fixed) and
        onnxruntime gives torch's logits: the route to QGIS (Deepness)."""
        pytest.importorskip("onnxruntime")
        arch.onnx_export_matches_torch()


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
