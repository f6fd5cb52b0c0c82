"""ONNX models in segdeep's pipeline: an onnxruntime session wrapped as a torch module.

:func:`load_onnx_model` returns ``(model, card)`` like :func:`segdeep.models.bundle.load_bundle`, so an
``.onnx`` file runs wherever a bundle does (tiling, blending, CRF, exporters, napari, Dask workers).
The module takes the normalised float32 batch (N x bands x tile x tile) and returns per-class scores
whose softmax is the model's probabilities: logits as they are, probabilities as their logarithm
(softmax(log p) = p), a one-channel sigmoid output p as log(1 - p), log(p).

onnxruntime is an optional extra (``pip install 'napari-segdeep[onnx]'``). The graph is run by
onnxruntime's own kernels: nothing in the file is executed as Python, and no custom-op library is
loaded. Runs on the CPU (onnxruntime's CUDA provider is used when present and a CUDA device is asked for).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

from ..errors import SegdeepError
from .card import ModelCard, read_onnx_info

__all__ = ["OnnxModule", "load_onnx_model"]

#: Smallest probability kept before the logarithm (a probability of 0 would give -inf).
_EPS = 1e-30


class OnnxModule(nn.Module):
    """A torch module running an ONNX graph with onnxruntime (inference only, no gradients)."""

    def __init__(self, path: str | os.PathLike, *, output: str = "logits", binary: bool = False,
                 device: str | torch.device = "cpu", threads: int | None = None) -> None:
        super().__init__()
        try:
            import onnxruntime as ort
        except ImportError:
            raise SegdeepError(f"{path}: running ONNX models needs onnxruntime: "
                               "pip install 'napari-segdeep[onnx]'") from None
        self.path, self.output, self.binary = str(path), output, binary
        options = ort.SessionOptions()
        options.intra_op_num_threads = int(threads or torch.get_num_threads())
        providers = ["CPUExecutionProvider"]
        if torch.device(device).type == "cuda" and "CUDAExecutionProvider" in ort.get_available_providers():
            providers.insert(0, "CUDAExecutionProvider")
        try:
            self.session = ort.InferenceSession(self.path, sess_options=options, providers=providers)
        except Exception as exc:  # noqa: BLE001 - onnxruntime's errors have no common base
            raise SegdeepError(f"{path}: onnxruntime cannot run this model ({str(exc).splitlines()[0][:160]})") from None
        self.input_name = self.session.get_inputs()[0].name

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch = np.ascontiguousarray(x.detach().to("cpu", torch.float32).numpy())
        (out, *_) = self.session.run(None, {self.input_name: batch})
        scores = torch.from_numpy(np.asarray(out, dtype=np.float32))
        if self.output == "probabilities":
            if self.binary:
                scores = torch.cat([1 - scores, scores], dim=1)
            scores = torch.log(scores.clamp_min(_EPS))
        return scores.to(x.device)


def load_onnx_model(path: str | os.PathLike, device: str | torch.device = "cpu") -> tuple[nn.Module, ModelCard]:
    """``(model, card)`` for an ONNX segmentation model: segdeep's own export (its card) or a model
    with Deepness-style metadata (:func:`segdeep.models.card.read_onnx_info`)."""
    path = Path(path)
    info = read_onnx_info(path)
    return OnnxModule(path, output=info.output, binary=info.binary, device=device).eval(), info.card
