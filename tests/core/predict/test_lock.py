"""Two runs into one output folder never mix: the folder is locked, and resume takes only the parts of
the journal's own run whose bytes are intact."""

from __future__ import annotations

import numpy as np
import pytest
import rasterio
from segdeep.classes import DUBAI_CLASSES
from segdeep.errors import SegdeepError
from segdeep.io.paths import LOCK_NAME, FolderLock
from segdeep.predict.events import BlockDone
from segdeep.predict.run import iter_predict, predict_raster
from segdeep.testing import scene_arrays, tiny_bundle, write_geotiff

SETTINGS = dict(block_size=48, overlap=16, preview=False, workers=1)


@pytest.fixture(scope="module")
def scenes(tmp_path_factory):
    root = tmp_path_factory.mktemp("lock")
    a, _ = scene_arrays(96, seed=1)
    b, _ = scene_arrays(96, seed=2)
    bundle = tiny_bundle(root / "tiny.safetensors", "unet", classes=DUBAI_CLASSES, tile_size=32)
    return write_geotiff(root / "a.tif", a), write_geotiff(root / "b.tif", b), bundle


def labels(path) -> np.ndarray:
    with rasterio.open(path) as ds:
        return ds.read(1)


def until_block(gen, n: int = 1) -> None:
    done = 0
    for event in gen:
        if isinstance(event, BlockDone):
            done += 1
            if done == n:
                return
    raise AssertionError("run ended before the block")


def test_second_run_into_a_busy_folder_is_refused_and_the_first_is_unmixed(scenes, tmp_path):
    a, b, bundle = scenes
    clean = labels(predict_raster(a, bundle, tmp_path / "clean", **SETTINGS).labels)
    out = tmp_path / "shared"
    first = iter_predict(a, bundle, out, **SETTINGS)
    until_block(first)
    with pytest.raises(SegdeepError, match=rf"{out} is in use by process \d+"):
        predict_raster(b, bundle, out, **SETTINGS)
    with pytest.raises(SegdeepError, match="is in use"):
        predict_raster(b, bundle, out, resume=True, **SETTINGS)
    first.close()  # interrupted: the lock is released, the journal stays
    assert not (out / LOCK_NAME).exists()
    resumed = predict_raster(a, bundle, out, resume=True, **SETTINGS)
    assert resumed.blocks_resumed >= 1
    assert np.array_equal(labels(resumed.labels), clean)


def test_resume_skips_parts_of_another_run_or_damaged_ones(scenes, tmp_path):
    a, b, bundle = scenes
    clean = labels(predict_raster(a, bundle, tmp_path / "clean", **SETTINGS).labels)
    out, other = tmp_path / "out", tmp_path / "other"
    for image, folder in ((a, out), (b, other)):
        gen = iter_predict(image, bundle, folder, **SETTINGS)
        until_block(gen, 2)
        gen.close()
    ours = sorted((out / ".segdeep-parts").glob("labels_*.npy"))
    theirs = sorted((other / ".segdeep-parts").glob("labels_*.npy"))
    assert len(ours) == 2 and len(theirs) == 2
    ours[0].write_bytes(theirs[0].read_bytes())  # another scene's block under our part's name
    ours[1].write_bytes(ours[1].read_bytes()[:-7])  # cut short
    resumed = predict_raster(a, bundle, out, resume=True, **SETTINGS)
    assert resumed.blocks_resumed == 0  # both parts recomputed
    assert np.array_equal(labels(resumed.labels), clean)


def test_folder_lock_names_the_holder_and_is_released(tmp_path):
    lock = FolderLock(tmp_path / "new")
    with pytest.raises(SegdeepError, match=r"is in use by process \d+"):
        FolderLock(tmp_path / "new")
    lock.release()
    with FolderLock(tmp_path / "new"):
        pass
    assert not (tmp_path / "new").exists()  # made by the lock and left empty: removed
