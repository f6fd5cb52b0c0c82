"""segdeep.runtime: one policy for device, precision, counts and cores, the same in prediction and
training (before, "auto" precision meant bf16 in one and fp16 in the other, and training accepted
device strings prediction refused)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from segdeep import runtime
from segdeep.classes import DUBAI_CLASSES
from segdeep.errors import SegdeepError
from segdeep.models.bundle import ModelCard
from segdeep.models.registry import create_model
from segdeep.predict.run import predict_array
from segdeep.training.loop import TrainConfig, train_arrays

CPU = torch.device("cpu")


def test_devices():
    assert runtime.resolve_device("auto").type in ("cpu", "cuda")
    assert runtime.resolve_device(" CPU ") == CPU
    for bad in ("tpu", "mps", "cuda:x", "gpu"):
        with pytest.raises(SegdeepError, match="not known; use auto, cpu, cuda or cuda:N"):
            runtime.resolve_device(bad)
    if not torch.cuda.is_available():
        with pytest.raises(SegdeepError, match="no CUDA GPU is available"):
            runtime.resolve_device("cuda:0")


def test_precisions():
    assert runtime.resolve_precision("auto", CPU) == "fp32"
    assert runtime.resolve_precision(None, CPU) == "fp32"
    assert runtime.resolve_precision("BF16", CPU) == "bf16"
    with pytest.raises(SegdeepError, match="fp16 needs a CUDA device"):
        runtime.resolve_precision("fp16", CPU)
    with pytest.raises(SegdeepError, match="precision 'fp64' is not known"):
        runtime.resolve_precision("fp64", CPU)
    assert runtime.autocast_dtype("fp32") is None
    assert runtime.autocast_dtype("bf16") is torch.bfloat16


def test_counts():
    assert runtime.parse_count("auto", "workers") is None
    assert runtime.parse_count(" 3 ", "workers") == 3 and runtime.parse_count(2, "batch size") == 2
    for bad in (0, -1, "2.5", "two", True, None, "03"):
        with pytest.raises(SegdeepError, match="must be a whole number >= 1 or 'auto'"):
            runtime.parse_count(bad, "workers")
    assert runtime.resolve_batch_size("auto", CPU, 512) == 1
    assert runtime.resolve_batch_size("auto", torch.device("cuda"), 256) == 32


def test_threads_for_torch_free_jobs(monkeypatch):
    monkeypatch.setattr(runtime, "available_cores", lambda: 4)
    assert runtime.resolve_threads("auto", 100) == 4
    assert runtime.resolve_threads("auto", 2) == 2  # at most one per job
    assert runtime.resolve_threads(8, 2) == 8
    with pytest.raises(SegdeepError, match="workers 0 must be"):
        runtime.resolve_threads(0, 2)


@pytest.mark.parametrize(("setting", "message"), [
    (dict(device="mps"), "device 'mps' is not known"),
    (dict(precision="fp16"), "fp16 needs a CUDA device"),
    (dict(precision="half"), "precision 'half' is not known"),
])
def test_prediction_and_training_refuse_the_same_settings(setting, message):
    """The same device / precision text gets the same one-line error from both jobs."""
    kwargs = {"base_channels": 8, "depth": 2}
    model = create_model("unet", num_classes=6, **kwargs).eval()
    card = ModelCard(name="tiny", architecture="unet", kwargs=kwargs, classes=list(DUBAI_CLASSES),
                     bands=[1, 2, 3], tile_size=32)
    image = np.zeros((3, 64, 64), dtype=np.uint8)
    with pytest.raises(SegdeepError, match=message):
        predict_array(model, card, image, **setting)
    config = TrainConfig(arch="unet", model_kwargs={"base_channels": 8, "depth": 2}, tile_size=32,
                         epochs=1, steps_per_epoch=1, **setting)
    with pytest.raises(SegdeepError, match=message):
        train_arrays([image], [np.zeros((64, 64), dtype=np.uint8)], config=config)


def _in_fresh_python(code: str, **env) -> str:
    import os
    import subprocess
    import sys

    clean = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    out = subprocess.run([sys.executable, "-c", code], env={**clean, **env}, capture_output=True, text=True,
                         check=True)
    return out.stdout.strip()


def test_passive_wait_policy_is_set_before_torch_loads_and_respects_the_user():
    """Spinning OpenMP threads made the CRF 2.7x slower with another program on a core
    (benchmarks/busy_cpu.py); the policy only works when set before torch is imported."""
    probe = ("import os; from segdeep import runtime; ok = runtime.passive_wait_policy(); import torch; "
             "print(ok, os.environ.get('OMP_WAIT_POLICY'))")
    assert _in_fresh_python(probe) == "True PASSIVE"
    assert _in_fresh_python(probe, OMP_WAIT_POLICY="ACTIVE") == "True ACTIVE"  # the user's choice stands
    late = ("import os, torch; from segdeep import runtime; "
            "print(runtime.passive_wait_policy(), os.environ.get('OMP_WAIT_POLICY'))")
    assert _in_fresh_python(late) == "False None"  # too late for this process: said, not pretended


def test_the_command_sets_the_policy_first():
    out = _in_fresh_python("import os, sys; from segdeep.cli import main; main([]); "
                           "print(os.environ.get('OMP_WAIT_POLICY'), 'torch' in sys.modules)")
    assert out.splitlines()[-1] == "PASSIVE False"
