"""RefineNet, Light-Weight RefineNet and GCN beyond the generic checks of test_architectures:
parameter counts equal to the reference implementations', a training step lowers the loss, the
decoders' upsampling keeps the ResNet's pixel geometry, and their options are checked."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from segdeep.errors import SegdeepError
from segdeep.models import create_model
from segdeep.models._align import upsample_logits
from segdeep.models.architectures.gcn import GlobalConvolution, Upsample2x
from segdeep.models.backbones import build_backbone
from segdeep.testing import LIGHT_KWARGS

#: Parameter counts for 21 classes of the reference implementations, counted by building their
#: code (not in this repository) on the meta device:
#: DrSleep/refinenet-pytorch ``rf101`` (port of the authors' released RefineNet-101),
#: DrSleep/light-weight-refinenet ``rf_lw50`` / ``rf_lw101``, ZijunDeng/pytorch-semantic-segmentation
#: ``models/gcn.py`` ``GCN`` (ResNet-152, k = 7, bilinear upsampling).
REFERENCE_PARAMETERS = [
    ("refinenet", {"backbone": "resnet101"}, 118_052_437),
    ("refinenet_lw", {"backbone": "resnet50"}, 27_357_525),
    ("refinenet_lw", {"backbone": "resnet101"}, 46_349_653),
    ("gcn", {"backbone": "resnet152", "k": 7, "upsample": "bilinear"}, 59_369_620),
]


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


@pytest.mark.parametrize(("name", "kwargs", "expected"), REFERENCE_PARAMETERS)
def test_parameter_count_equals_reference_implementation(name, kwargs, expected):
    with torch.device("meta"):
        model = create_model(name, num_classes=21, **kwargs)
    assert sum(p.numel() for p in model.parameters()) == expected


def test_gcn_k15_deconvolution_adds_what_the_paper_says():
    """k = 15 instead of 7: 2 x 2 x (C x 21 x 8 + 21 x 21 x 8) more weights per stage; the five
    learned 3x3 deconvolutions (21 x 21 x 9 + 21 each) add the rest."""
    def count(**kwargs):
        with torch.device("meta"):
            model = create_model("gcn", num_classes=21, backbone="resnet152", **kwargs)
        return sum(p.numel() for p in model.parameters())

    base = count(k=7, upsample="bilinear")
    stages = (2048, 1024, 512, 256)
    assert count(k=15, upsample="bilinear") - base == sum(2 * (c * 21 * 8 + 21 * 21 * 8) for c in stages)
    assert count(k=7, upsample="deconv") - base == 5 * (21 * 21 * 9 + 21)


@pytest.mark.parametrize("name", ["refinenet", "refinenet_lw", "gcn"])
def test_a_training_step_lowers_the_loss(name):
    """One SGD step on a batch lowers the loss on that batch (the light variant; dropout off so
    that the loss is a function of the weights only; batch norm uses the batch's statistics)."""
    torch.manual_seed(0)
    kwargs = dict(LIGHT_KWARGS[name])
    if name.startswith("refinenet"):
        kwargs["dropout"] = 0.0
    model = create_model(name, num_classes=4, **kwargs).train()
    x = torch.randn(2, 3, 29, 43)
    target = torch.randint(0, 4, (2, 29, 43))
    optimiser = torch.optim.SGD(model.parameters(), lr=0.01)
    loss = F.cross_entropy(model(x), target)
    loss.backward()
    optimiser.step()
    with torch.no_grad():
        after = F.cross_entropy(model(x), target)
    assert after < loss.item() - 1e-4, (loss.item(), after.item())


@pytest.mark.parametrize(("h", "w", "size"), [(4, 6, (8, 12)), (4, 6, (7, 11)), (1, 1, (2, 1)), (3, 5, (5, 9))])
def test_gcn_deconvolution_starts_as_the_geometric_bilinear_upsampling(h, w, size):
    x = torch.randn(2, 5, h, w)
    with torch.no_grad():
        learned = Upsample2x(5, learned=True)(x, size)
    assert torch.allclose(learned, upsample_logits(x, size, 2), atol=1e-6)
    assert torch.equal(Upsample2x(5, learned=False)(x, size), upsample_logits(x, size, 2))


def test_global_convolution_sees_k_pixels_each_way():
    """An impulse reaches exactly a k x k square (the two separable branches)."""
    torch.manual_seed(0)
    block = GlobalConvolution(1, 1, k=5)
    x = torch.zeros(1, 1, 15, 15)
    x[..., 7, 7] = 1.0
    with torch.no_grad():
        y = block(x) - block(torch.zeros_like(x))
    reached = (y.abs() > 0)[0, 0].nonzero()
    assert reached.min(0).values.tolist() == [5, 5] and reached.max(0).values.tolist() == [9, 9]


def test_refinenet_light_variant_has_no_3x3_in_its_decoder():
    model = create_model("refinenet_lw", num_classes=3, **LIGHT_KWARGS["refinenet_lw"])
    kernels = {m.kernel_size for m in model.blocks.modules() if isinstance(m, torch.nn.Conv2d)}
    assert kernels == {(1, 1)}


@pytest.mark.parametrize(("name", "kwargs", "match"), [
    ("refinenet", {"backbone": "mobilenet_v3_large"}, "resnet101"),
    ("gcn", {"backbone": "xception65"}, "resnet50"),
    ("gcn", {"k": 14}, "odd"),
    ("gcn", {"upsample": "nearest"}, "deconv"),
])
def test_options_that_do_not_fit_are_user_errors(name, kwargs, match):
    with pytest.raises(SegdeepError, match=match):
        create_model(name, num_classes=3, **kwargs)


def test_stride8_features_are_resnet_only():
    with pytest.raises(SegdeepError, match="stride-8"):
        build_backbone("mobilenet_v3_large", returns=("mid",))
    module, channels = build_backbone("resnet18", output_stride=32, returns=("mid", "low_level"))
    out = module(torch.randn(1, 3, 33, 33))
    assert channels == {"mid": 128, "low_level": 64}
    assert out["mid"].shape[-2:] == (5, 5) and out["low_level"].shape[-2:] == (9, 9)
