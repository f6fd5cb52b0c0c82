"""DeepLab specifics that the generic architecture test does not see: v2's summed ASPP-L, v3+'s
decoder and its separable convolutions with Xception."""

from __future__ import annotations

import torch
import torch.nn as nn
from segdeep.models import create_model


def test_deeplab_v2_aspp_sums_four_atrous_branches():
    torch.manual_seed(0)
    model = create_model("deeplab_v2", num_classes=4, backbone="resnet18").eval()
    head = model.classifier
    assert [b.dilation[0] for b in head.branches] == [6, 12, 18, 24]
    assert all(b.kernel_size == (3, 3) and b.out_channels == 4 for b in head.branches)
    features = torch.randn(1, 512, 9, 11)
    with torch.no_grad():
        summed = sum(b(features) for b in head.branches)
        torch.testing.assert_close(head(features), summed)


def test_deeplab_v3plus_decoder_and_separable_xception():
    torch.manual_seed(0)
    resnet = create_model("deeplab_v3plus", num_classes=3, backbone="resnet18")
    assert resnet.project[0].out_channels == 48  # low-level features reduced to 48 channels
    assert not any(isinstance(m, nn.Conv2d) and m.groups > 1 for m in resnet.decoder.modules())
    with torch.device("meta"):
        xception = create_model("deeplab_v3plus", num_classes=3, backbone="xception41")
        plain = create_model("deeplab_v3plus", num_classes=3, backbone="xception41", separable=False)
    depthwise = [m for m in [*xception.aspp.modules(), *xception.decoder.modules()]
                 if isinstance(m, nn.Conv2d) and m.groups > 1]
    assert [m.dilation[0] for m in depthwise] == [6, 12, 18, 1, 1]  # 3 ASPP branches, 2 decoder convs
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert count(xception) < count(plain) - 10_000_000  # separable: ~14M fewer parameters
