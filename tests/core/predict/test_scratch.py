"""Scratch disk of a run: blocks that are all nodata write no resume part, and a run checks the
room its resume parts may need before any compute (one line naming the folder)."""

from __future__ import annotations

import numpy as np
import pytest
import rasterio
from segdeep.classes import DUBAI_CLASSES
from segdeep.errors import SegdeepError
from segdeep.predict.events import BlockDone
from segdeep.predict.journal import PARTS_NAME, check_free_space, scratch_bytes
from segdeep.predict.run import iter_predict, predict_raster
from segdeep.testing import scene_arrays, tiny_bundle, write_geotiff

SETTINGS = dict(block_size=48, overlap=16, preview=False, workers=1, probabilities=True)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("scratch")
    image, _ = scene_arrays(96, seed=3)
    image[:, :, :48] = 0  # the left column of blocks is all nodata
    bundle = tiny_bundle(root / "tiny.safetensors", "unet", classes=DUBAI_CLASSES, tile_size=32)
    return write_geotiff(root / "half.tif", image, nodata=0), bundle


def _parts(out) -> list[str]:
    return sorted(p.name.split("_")[0] for p in (out / PARTS_NAME).glob("*.npy"))


def test_empty_blocks_write_no_part_and_resume_gives_the_same_outputs(data, tmp_path):
    image, bundle = data
    clean = predict_raster(image, bundle, tmp_path / "clean", **SETTINGS)
    out = tmp_path / "out"
    gen = iter_predict(image, bundle, out, **SETTINGS)
    for event in gen:
        if isinstance(event, BlockDone) and event.done == 4:
            break
    gen.close()  # interrupted after the last block: every block is in the journal
    # blocks 0 and 2 (the left column) are all nodata: only blocks 1 and 3 left files
    assert _parts(out) == ["labels", "labels", "probabilities", "probabilities"]
    resumed = predict_raster(image, bundle, out, resume=True, **SETTINGS)
    assert resumed.blocks_resumed == 4
    for name in ("labels", "probabilities"):
        with rasterio.open(getattr(clean, name)) as a, rasterio.open(getattr(resumed, name)) as b:
            assert np.array_equal(a.read(), b.read()), name
    with rasterio.open(resumed.labels) as ds:
        assert (ds.read(1)[:, :48] == 255).all()


def test_free_space_is_checked_up_front_naming_the_folder(tmp_path):
    assert scratch_bytes(1000, 6, probabilities=False) == 1000
    assert scratch_bytes(1000, 6, probabilities=True) == 7000
    check_free_space(tmp_path, 1)
    with pytest.raises(SegdeepError, match=rf"^{tmp_path}: the run's scratch .* may need up to .* GB free"):
        check_free_space(tmp_path, 1 << 62)
