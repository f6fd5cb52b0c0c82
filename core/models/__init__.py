"""Models: the architectures (one file per family in ``architectures/``), their backbones, the registry
that finds them by name, and model bundles. A bundle is one ``.safetensors`` file: the weights plus a
model card (classes, bands, normalisation, tile size) that :func:`read_card` reads without torch.
:func:`create_model` builds a registered architecture, :func:`load_bundle` a trained network, and
:func:`export_onnx` writes a bundle as ONNX. An ``.onnx`` file (segdeep's export, or a model with
Deepness-style metadata) is a model too: :func:`load_bundle` and :func:`read_card` take it
(:func:`load_onnx_model`, :func:`read_onnx_info`; onnxruntime is the ``[onnx]`` extra).

Names are imported on first use, so that ``segdeep.models.card`` (and :func:`load_classes`) stay
torch-free.
"""

from __future__ import annotations

from ..lazy import lazy_exports

# Public name -> module of this package that defines it (imported on first use: most need torch).
_LAZY = {
    "ModelCard": "card",
    "CARD_KEY": "card",
    "FORMAT_VERSION": "card",
    "read_card": "card",
    "load_classes": "card",
    "ModelEntry": "registry",
    "create_model": "registry",
    "list_models": "registry",
    "model_entry": "registry",
    "register_model": "registry",
    "save_bundle": "bundle",
    "load_bundle": "bundle",
    "import_torchvision_checkpoint": "bundle",
    "BACKBONES": "backbones",
    "build_backbone": "backbones",
    "encoder_features": "backbones",
    "export_onnx": "onnx",
    "deepness_metadata": "onnx",
    "read_onnx_info": "card",
    "OnnxInfo": "card",
    "load_onnx_model": "onnx_model",
    "OnnxModule": "onnx_model",
}

__all__ = sorted(_LAZY)


__getattr__, __dir__ = lazy_exports(__name__, _LAZY)
