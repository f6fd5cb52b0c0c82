"""The survey's worked examples, checked on the layers the architectures really use.

* SegNet's 4x4 max-pool / max-unpool example (values return to the argmax positions, zeros elsewhere);
* the receptive field of stacked 3x3 convolutions, plain (7x7) versus dilated 1, 2, 4 (15x15),
  measured from gradients through the dilated context module's own layers;
* FCN's transposed convolutions, initialised bilinear, really upsample bilinearly.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from segdeep.models.architectures.dilated import ContextModule
from segdeep.models.architectures.fcn import FCN
from segdeep.models.architectures.segnet import SegNet
from segdeep.models.vgg import pool_indices


@pytest.fixture(scope="module")
def segnet_model():
    torch.manual_seed(0)
    return SegNet(num_classes=2)


def test_segnet_pool_unpool_survey_example(segnet_model):
    x = torch.tensor([[1, 1, 2, 4], [5, 6, 7, 8], [3, 2, 1, 0], [1, 2, 3, 4]],
                     dtype=torch.float32)[None, None]
    pool = segnet_model.features[pool_indices(segnet_model.features)[0]]  # the encoder's pool1
    pooled, indices = pool(x)
    assert pooled[0, 0].tolist() == [[6, 8], [3, 4]]
    # The survey: 6 came from (row 1, col 1), 8 from (1, 3); indices are flat positions in the 4x4.
    assert indices[0, 0].tolist() == [[1 * 4 + 1, 1 * 4 + 3], [2 * 4 + 0, 3 * 4 + 3]]
    unpooled = segnet_model.unpool(pooled, indices, output_size=x.shape[-2:])
    assert unpooled[0, 0].tolist() == [[0, 0, 0, 0], [0, 6, 0, 8], [3, 0, 0, 0], [0, 0, 0, 4]]


def test_segnet_unpool_is_max_unpooling(segnet_model):
    """SegNet's unpooling (a scatter, so that it exports to ONNX) equals ``F.max_unpool2d``."""
    pool = segnet_model.features[pool_indices(segnet_model.features)[0]]
    x = torch.randn(2, 5, 16, 22)
    pooled, indices = pool(x)
    expected = F.max_unpool2d(pooled, indices, 2, output_size=(16, 22))
    assert torch.equal(segnet_model.unpool(pooled, indices, (16, 22)), expected)


def test_segnet_decoder_upsamples_only_by_unpooling(segnet_model):
    """Every decoder stage starts from a max-unpooled map: at most one non-zero value per 2x2
    window and channel (the encoder's argmax); no transposed convolution anywhere."""
    model = segnet_model.eval()
    assert not any(isinstance(m, torch.nn.ConvTranspose2d) for m in model.modules())
    unpooled = []
    handle = model.unpool.register_forward_hook(lambda m, args, out: unpooled.append(out))
    try:
        with torch.no_grad():
            model(torch.randn(1, 3, 40, 70))
    finally:
        handle.remove()
    assert [u.shape[-1] for u in unpooled] == [6, 12, 24, 48, 96]  # padded to 64 x 96
    for u in unpooled:
        n, c, h, w = u.shape
        blocks = (u != 0).reshape(n, c, h // 2, 2, w // 2, 2).sum(dim=(3, 5))
        assert int(blocks.max()) == 1


def _receptive_field(module: torch.nn.Module, size: int = 41) -> tuple[int, int]:
    """Height and width of the input region whose gradient w.r.t. the centre output is non-zero."""
    with torch.no_grad():  # all-positive weights: no cancellation, every ReLU passes
        for p in module.parameters():
            p.fill_(1.0 if p.dim() > 1 else 0.0)
    x = torch.ones(1, 1, size, size, requires_grad=True)
    out = module(x)
    out[0, 0, size // 2, size // 2].backward()
    rows, cols = torch.nonzero(x.grad[0, 0], as_tuple=True)
    return int(rows.max() - rows.min() + 1), int(cols.max() - cols.min() + 1)


def test_receptive_field_dilated_1_2_4_is_15x15():
    assert _receptive_field(ContextModule(1, (1, 2, 4), final_1x1=False)) == (15, 15)


def test_receptive_field_plain_three_3x3_is_7x7():
    assert _receptive_field(ContextModule(1, (1, 1, 1), final_1x1=False)) == (7, 7)


def test_receptive_field_full_context_module_is_67x67():
    """Yu & Koltun, Table 1: the basic module (1, 1, 2, 4, 8, 16, 1 and a 1x1) sees 67x67."""
    assert _receptive_field(ContextModule(1), size=81) == (67, 67)


def test_context_module_identity_initialisation():
    """Before training the module passes (non-negative) class scores through unchanged."""
    module = ContextModule(5)
    x = torch.rand(2, 5, 40, 36)
    with torch.no_grad():
        assert torch.equal(module(x), x)


@pytest.fixture(scope="module")
def fcn16s_small():
    return FCN(num_classes=3, stride=16, fc_channels=8)


@pytest.mark.parametrize("layer", ["upscore2", "upscore16"])
def test_fcn_transposed_conv_is_bilinear_at_init(fcn16s_small, layer):
    up = getattr(fcn16s_small, layer)
    factor = up.stride[0]
    n = 12
    yy, xx = torch.meshgrid(torch.linspace(0, 1, n), torch.linspace(0, 1, n), indexing="ij")
    smooth = torch.stack([torch.sin(2 * yy + xx), yy * xx, 1 + 0.3 * torch.cos(3 * xx)])[None]
    with torch.no_grad():
        out = up(smooth)
    assert out.shape[-1] == (n + 1) * factor
    # A 2f kernel with stride f puts input pixel i at output i*f + f - 1/2; F.interpolate
    # (align_corners=False) puts it at i*f + f/2 - 1/2: the same grid shifted by f/2.
    out = out[..., factor // 2:factor // 2 + n * factor, factor // 2:factor // 2 + n * factor]
    ref = F.interpolate(smooth, scale_factor=factor, mode="bilinear", align_corners=False)
    interior = (..., slice(factor, -factor), slice(factor, -factor))
    assert torch.allclose(out[interior], ref[interior], atol=1e-5)
    # Channels do not mix: class c is upsampled from class c only.
    mixing = up.weight.sum(dim=(-2, -1))
    assert torch.equal(mixing, torch.diag(mixing.diagonal()))


def test_fcn_final_upsampling_fixed_intermediate_learned(fcn16s_small):
    """Long et al.: the final deconvolution is fixed to bilinear, the 2x one is learned."""
    assert not fcn16s_small.upscore16.weight.requires_grad
    assert fcn16s_small.upscore2.weight.requires_grad


def _input_coordinate(layers) -> tuple[float, float]:
    """(scale, shift) such that pixel x of the layers' output is centred on input pixel
    scale * x + shift (each conv / pool maps x_out to stride * x_out + (k - 1) * d / 2 - pad)."""
    scale, shift = 1.0, 0.0
    for m in layers:
        if isinstance(m, (torch.nn.Conv2d, torch.nn.MaxPool2d)):
            k, s, p, d = (v if isinstance(v, int) else v[0]
                          for v in (m.kernel_size, m.stride, m.padding, m.dilation))
            shift += scale * ((k - 1) * d / 2 - p)
            scale *= s
    return scale, shift


def _upsampled(coord: tuple[float, float], up: torch.nn.ConvTranspose2d, crop: int):
    """Compose with a transposed conv (input i lands on s * i + (k - 1) / 2) and a crop."""
    scale, shift = coord
    s, k = up.stride[0], up.kernel_size[0]
    return scale / s, shift + scale * (crop - (k - 1) / 2) / s


@pytest.mark.parametrize("stride", [32, 16, 8])
def test_fcn_crops_centre_every_output_pixel_on_its_input_pixel(stride):
    """Long et al.'s crop offsets (19; 5, 27; 5, 9, 31) are exact: output pixel y is centred on
    input pixel y, and each skip's score map is aligned with the upsampled coarser scores."""
    model = FCN(num_classes=2, stride=stride, fc_channels=8)
    pools = pool_indices(model.features)
    pool3 = _input_coordinate(model.features[:pools[2] + 1])
    pool4 = _input_coordinate(model.features[:pools[3] + 1])
    score = _input_coordinate([*model.features, *model.fc, model.score_fr])
    if stride == 32:
        assert _upsampled(score, model.upscore, 19) == (1.0, 0.0)
        return
    fuse4 = _upsampled(score, model.upscore2, 0)
    assert fuse4 == (pool4[0], pool4[1] + 5 * pool4[0])  # score_pool4 cropped at 5
    if stride == 16:
        assert _upsampled(fuse4, model.upscore16, 27) == (1.0, 0.0)
        return
    fuse3 = _upsampled(fuse4, model.upscore_pool4, 0)
    assert fuse3 == (pool3[0], pool3[1] + 9 * pool3[0])  # score_pool3 cropped at 9
    assert _upsampled(fuse3, model.upscore8, 31) == (1.0, 0.0)


@pytest.mark.parametrize("name", ["deeplab_v1", "pspnet", "dilated"])
def test_stride8_logits_are_centred_on_their_input_pixels(name):
    """DeepLab's atrous VGG and the dilated ResNet put logit j on input pixel 8j (3x3 pad-1 pools
    and strided convs), Yu & Koltun's 2x2 pools on 8j + 3.5; the upsampling follows suit."""
    from segdeep.models import create_model

    kwargs = {"pspnet": {"backbone": "resnet18"}}.get(name, {"fc_channels": 8})
    model = create_model(name, num_classes=2, **kwargs)
    layers = [m for n, m in model.named_modules() if "downsample" not in n and "ppm" not in n]
    expected = (8.0, 3.5) if name == "dilated" else (8.0, 0.0)
    assert _input_coordinate(layers) == expected


def test_upsample_logits_puts_logit_j_on_pixel_stride_times_j():
    from segdeep.models._align import upsample_logits

    ramp = (8.0 * torch.arange(5.0))[None, None, :, None].expand(1, 1, 5, 3)  # logit j = 8j
    out = upsample_logits(ramp, (37, 20), 8)
    assert out.shape == (1, 1, 37, 20)
    assert torch.allclose(out[0, 0, :33, 0], torch.arange(33.0))  # exact up to the last logit
    assert torch.equal(out[0, 0, 33:, 0], torch.full((4,), 32.0))  # edge: last logit replicated
