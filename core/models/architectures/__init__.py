"""Architectures, one module per family: FCN (VGG16 and ResNet), SegNet, the dilated network of Yu
& Koltun, DeepLab v1, v2, v3 and v3+, PSPNet, U-Net, RefineNet (and its light-weight variant) and GCN
(Large Kernel Matters). Each module registers its builders with
:func:`segdeep.models.registry.register_model` when it is imported; :func:`segdeep.models.create_model`
imports them all, so adding an architecture is one new file here.

The network classes and builders below are imported on first use (they need torch and torchvision).
A builder named like its module (``unet``, ``segnet``, ``dilated``, ``deeplab_v1``, ``pspnet``) is
reached through :func:`~segdeep.models.create_model` or its module, as the package attribute of
that name is the module.
"""

from __future__ import annotations

from ...lazy import lazy_exports

# Public name -> module of this package that defines it (imported on first use).
_LAZY = {
    "fcn32s": "fcn", "fcn16s": "fcn", "fcn8s": "fcn", "FCN": "fcn",
    "fcn_resnet50": "fcn_resnet", "fcn_resnet101": "fcn_resnet",
    "SegNet": "segnet",
    "DilatedNet": "dilated", "ContextModule": "dilated",
    "DeepLabV1": "deeplab_v1",
    "deeplab_v2": "deeplab", "deeplab_v3": "deeplab", "deeplab_v3plus": "deeplab",
    "DeepLabV3Plus": "deeplab", "SegmentationModel": "deeplab", "ASPPSum": "deeplab",
    "PSPNet": "pspnet", "PyramidPooling": "pspnet",
    "UNet": "unet",
    "RefineNet": "refinenet", "RefineBlock": "refinenet", "ResidualConvUnit": "refinenet",
    "ChainedResidualPooling": "refinenet", "refinenet_lw": "refinenet",
    "GCN": "gcn", "GlobalConvolution": "gcn", "BoundaryRefinement": "gcn",
}

__all__ = sorted(_LAZY)


__getattr__, __dir__ = lazy_exports(__name__, _LAZY)
