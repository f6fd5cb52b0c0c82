"""Loading the model code after napari has an OpenGL context must not crash the process."""

from __future__ import annotations

import os
import subprocess
import sys

CODE = """
import napari
viewer = napari.Viewer(show=False)  # creates the OpenGL canvas (Mesa here)
from napari_segdeep._workers import load_engine
load_engine()  # triton isolated, then torchvision and every architecture
from segdeep.models.registry import create_model
print(create_model("unet", num_classes=2, base_channels=4, depth=2).__class__.__name__)
viewer.close()
"""


def test_models_load_after_the_viewer_exists():
    """Without the RTLD_DEEPBIND isolation this segfaulted (triton's LLVM next to Mesa's)."""
    out = subprocess.run([sys.executable, "-c", CODE], capture_output=True, text=True, timeout=300,
                         env=dict(os.environ))
    assert out.returncode == 0, f"exit {out.returncode}: {out.stderr[-2000:]}"
    assert out.stdout.strip().endswith("UNet")
