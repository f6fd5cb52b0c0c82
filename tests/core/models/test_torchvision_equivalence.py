"""segdeep's ResNet/MobileNet FCN and DeepLab v3 take torchvision's weights unchanged.

For each torchvision segmentation model (randomly initialised: weights=None, weights_backbone=None, so
nothing downloads), ``create_model(...).load_state_dict(tv.state_dict())`` must work strictly and the
two models must give the same logits in eval mode (and the same auxiliary logits with aux_loss).
Batch-norm running statistics are randomised first, so that eval-mode normalisation is exercised.
"""

from __future__ import annotations

from functools import lru_cache

import pytest
import torch
from segdeep.models import create_model
from torchvision.models import segmentation as tvseg

CASES = {
    "deeplabv3_resnet50": ("deeplab_v3", {"backbone": "resnet50"}),
    "deeplabv3_resnet101": ("deeplab_v3", {"backbone": "resnet101"}),
    "deeplabv3_mobilenet_v3_large": ("deeplab_v3", {"backbone": "mobilenet_v3_large"}),
    "fcn_resnet50": ("fcn_resnet50", {}),
    "fcn_resnet101": ("fcn_resnet101", {}),
}
NUM_CLASSES = 7


def _randomise_batch_norm(model: torch.nn.Module) -> None:
    g = torch.Generator().manual_seed(0)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.1)
            m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)


@lru_cache(maxsize=1)
def _torchvision_model(tv_name: str) -> torch.nn.Module:
    """torchvision's model with aux_loss=True (built once per name: ResNet-101 is slow to initialise)."""
    torch.manual_seed(0)
    tv = getattr(tvseg, tv_name)(weights=None, weights_backbone=None, num_classes=NUM_CLASSES,
                                 aux_loss=True).eval()
    _randomise_batch_norm(tv)
    return tv


@pytest.mark.parametrize("aux_loss", [False, True], ids=["no_aux", "aux"])
@pytest.mark.parametrize("tv_name", sorted(CASES))
def test_torchvision_state_dict_loads_unchanged_and_matches(tv_name, aux_loss):
    tv = _torchvision_model(tv_name)
    arch, kwargs = CASES[tv_name]
    ours = create_model(arch, num_classes=NUM_CLASSES, aux_loss=aux_loss, **kwargs).eval()

    state = tv.state_dict()
    if not aux_loss:  # torchvision's aux_loss=False model is the same without aux_classifier.*
        state = {k: v for k, v in state.items() if not k.startswith("aux_classifier.")}
    assert list(ours.state_dict()) == list(state)  # same names, same order
    ours.load_state_dict(state, strict=True)

    x = torch.randn(1, 3, 64, 48)
    with torch.no_grad():
        expected = tv(x)
        logits = ours(x)
        out, aux = ours.forward_with_aux(x)
    assert type(logits) is torch.Tensor and logits.shape == (1, NUM_CLASSES, 64, 48)
    torch.testing.assert_close(logits, expected["out"], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(out, expected["out"], rtol=1e-5, atol=1e-5)
    if aux_loss:
        torch.testing.assert_close(aux, expected["aux"], rtol=1e-5, atol=1e-5)
    else:
        assert aux is None


def test_paper_setting_differs_from_torchvision_only_in_dilations():
    """Output stride 16 with multi-grid (1, 2, 4) keeps the parameters (same state dict) but changes
    the receptive field, so the outputs differ: the option is not a no-op."""
    torch.manual_seed(0)
    tv = create_model("deeplab_v3", num_classes=3, backbone="resnet50").eval()
    paper = create_model("deeplab_v3", num_classes=3, backbone="resnet50", output_stride=16,
                         multi_grid=(1, 2, 4)).eval()
    paper.load_state_dict(tv.state_dict(), strict=True)
    dilations = [b.conv2.dilation[0] for b in paper.backbone.layer4]
    assert dilations == [2, 4, 8]
    assert paper.classifier[0].convs[1][0].dilation == (6, 6)  # rates (6, 12, 18) at stride 16
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert not torch.allclose(tv(x), paper(x))


def test_backbone_weights_from_a_local_file_with_four_bands(tmp_path):
    """An ImageNet-style torchvision ResNet state dict (.pth or .safetensors) fills the backbone;
    the first convolution is adapted to 4 bands afterwards; the classifier (fc.*) is ignored."""
    from safetensors.torch import save_file
    from torchvision.models import resnet18

    torch.manual_seed(3)
    ref = resnet18(weights=None)
    state = ref.state_dict()
    torch.save(state, tmp_path / "r18.pth")
    save_file({k: v.contiguous() for k, v in state.items()}, str(tmp_path / "r18.safetensors"))
    for name in ("r18.pth", "r18.safetensors"):
        model = create_model("deeplab_v3plus", num_classes=3, in_channels=4, backbone="resnet18",
                             pretrained=str(tmp_path / name))
        body = model.backbone
        assert torch.equal(body.layer3[1].conv2.weight, ref.layer3[1].conv2.weight)
        assert torch.equal(body.bn1.running_var, ref.bn1.running_var)
        assert body.conv1.in_channels == 4
        torch.testing.assert_close(body.conv1.weight[:, 3], ref.conv1.weight[:, 0] * 3 / 4)


def test_backbone_weight_errors(tmp_path):
    from segdeep.errors import SegdeepError

    with pytest.raises(SegdeepError, match="absent.pth: pretrained weights file not found"):
        create_model("deeplab_v3", num_classes=3, backbone="resnet18", pretrained=str(tmp_path / "absent.pth"))
    torch.save({"conv1.weight": torch.zeros(64, 3, 7, 7)}, tmp_path / "partial.pth")
    with pytest.raises(SegdeepError, match="partial.pth: does not match the backbone"):
        create_model("deeplab_v3", num_classes=3, backbone="resnet18", pretrained=str(tmp_path / "partial.pth"))


def test_nothing_downloads_unless_allowed(tmp_path, monkeypatch):
    """pretrained=True uses only the local cache; an empty cache is an error that says how to proceed,
    and no download is attempted (torchvision's and timm's download paths are booby-trapped)."""
    from segdeep.errors import SegdeepError
    from segdeep.models import backbones
    from torchvision.models import ResNet18_Weights

    def no_network(*args, **kwargs):
        raise AssertionError("a download was attempted")

    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", no_network)
    monkeypatch.setattr(type(ResNet18_Weights.DEFAULT), "get_state_dict", no_network)
    with pytest.raises(SegdeepError, match="not in the local cache .*allow_download=True"):
        create_model("deeplab_v3", num_classes=3, backbone="resnet18", pretrained=True)
    monkeypatch.setattr(backbones, "_timm_cached_file", lambda name: None)
    with pytest.raises(SegdeepError, match="not in the local timm cache"):
        create_model("deeplab_v3plus", num_classes=3, backbone="xception41", pretrained=True)
    # A file in the cache is used as is, without network.
    (tmp_path / "checkpoints").mkdir()
    torch.manual_seed(4)
    from torchvision.models import resnet18

    ref = resnet18(weights=None)
    cached = tmp_path / "checkpoints" / ResNet18_Weights.DEFAULT.url.rsplit("/", 1)[1]
    torch.save(ref.state_dict(), cached)
    model = create_model("deeplab_v3", num_classes=3, backbone="resnet18", pretrained=True)
    assert torch.equal(model.backbone.layer4[0].conv1.weight, ref.layer4[0].conv1.weight)


def test_xception_weights_from_a_local_file(tmp_path):
    import timm
    from safetensors.torch import save_file

    torch.manual_seed(5)
    ref = timm.create_model("xception41", pretrained=False)
    save_file({k: v.contiguous() for k, v in ref.state_dict().items()}, str(tmp_path / "x41.safetensors"))
    model = create_model("deeplab_v3plus", num_classes=3, backbone="xception41",
                         pretrained=str(tmp_path / "x41.safetensors"))
    got = dict(model.backbone.body.named_parameters())
    assert torch.equal(got["blocks_3.stack.conv1.conv_dw.weight"], ref.blocks[3].stack.conv1.conv_dw.weight)


@pytest.mark.parametrize("name", ["resnet18", "mobilenet_v3_large", "xception41"])
def test_backbone_output_stride_by_dilation(name):
    """'out' has 1/output_stride of the input size, 'low_level' 1/4, whatever the stride asked for."""
    from segdeep.models.backbones import build_backbone

    x = torch.randn(1, 3, 64, 64)
    for stride in (32, 16, 8):
        body, channels = build_backbone(name, output_stride=stride, returns=("low_level", "out"))
        with torch.no_grad():
            maps = body.eval()(x)
        assert maps["out"].shape[-2:] == (64 // stride, 64 // stride), (name, stride)
        assert maps["low_level"].shape[-2:] == (16, 16)
        assert {k: v.shape[1] for k, v in maps.items()} == channels
