"""User errors: one line naming the file, exit code 2, no traceback unless --debug."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from segdeep.classes import DUBAI_CLASSES
from segdeep.io.raster import write_labels


def segdeep(*args):
    return subprocess.run([sys.executable, "-m", "segdeep.cli", *map(str, args)],
                          capture_output=True, text=True, timeout=120)


@pytest.fixture
def labels(tmp_path):
    return write_labels(tmp_path / "labels.tif", np.zeros((40, 40), np.uint8), crs=None, transform=None,
                        classes=DUBAI_CLASSES)


def test_help_lists_every_command():
    out = segdeep("--help")
    assert out.returncode == 0
    assert "evaluate" in out.stdout


@pytest.mark.parametrize("case", ["missing", "not_raster", "misaligned", "bad_palette"])
def test_bad_input_is_one_line_exit_2(tmp_path, labels, case):
    if case == "missing":
        args, expect = ["evaluate", tmp_path / "nope.tif", labels], "nope.tif: no such file"
    elif case == "not_raster":
        bad = tmp_path / "readme.tif"
        bad.write_text("hello")
        args, expect = ["evaluate", bad, labels], "readme.tif: not a raster"
    elif case == "misaligned":
        other = write_labels(tmp_path / "small.tif", np.zeros((30, 40), np.uint8), crs=None, transform=None,
                             classes=DUBAI_CLASSES)
        args, expect = ["evaluate", labels, other], "size 40 x 30 px differs"
    else:
        pal = tmp_path / "palette.json"
        pal.write_text('[{"name": "a", "color": "blue"}]')
        args, expect = ["evaluate", labels, labels, "--classes", pal], "palette.json: colour 'blue' is not valid"
    out = segdeep(*args, "--out", tmp_path / "report")
    assert out.returncode == 2, out.stderr
    lines = [line for line in out.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and expect in lines[0], out.stderr
    assert "Traceback" not in out.stderr
    assert not (tmp_path / "report" / "report.json").exists()
    debug = segdeep("--debug", *args, "--out", tmp_path / "report")
    assert debug.returncode == 2 and "Traceback" in debug.stderr
