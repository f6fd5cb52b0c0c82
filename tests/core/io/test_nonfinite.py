"""NaN and infinity are nodata whatever the raster's nodata tag says (issue 16, item 2)."""

from __future__ import annotations

import numpy as np
import rasterio
from rasterio.windows import Window
from segdeep.classes import DUBAI_CLASSES
from segdeep.io.raster import read_window
from segdeep.predict.run import predict_raster
from segdeep.testing import scene_arrays, tiny_bundle, write_geotiff


def nan_scene(path, nodata=None):
    image, _ = scene_arrays(96)
    data = image.astype("float32")
    data[:, 10:30, 10:30] = np.nan
    data[0, 50:55, 50:55] = np.inf  # one band is enough
    return write_geotiff(path, data, nodata=nodata)


def test_read_window_marks_nan_and_inf_invalid_and_reads_them_as_zero(tmp_path):
    for nodata in (None, -9999.0):
        path = nan_scene(tmp_path / f"s{nodata}.tif", nodata=nodata)
        data, valid = read_window(path, Window(-5, -5, 106, 106))
        assert np.isfinite(data).all()
        assert not valid[15:35, 15:35].any() and not valid[55:60, 55:60].any()
        assert valid[5:15, 5:100].all()


def test_predict_labels_nan_pixels_nodata_and_no_others(tmp_path):
    path = nan_scene(tmp_path / "nan.tif")
    bundle = tiny_bundle(tmp_path / "tiny.safetensors", "unet", classes=DUBAI_CLASSES)
    result = predict_raster(path, bundle, tmp_path / "out", preview=False, workers=1)
    with rasterio.open(result.labels) as ds:
        labels = ds.read(1)
    bad = np.zeros(labels.shape, bool)
    bad[10:30, 10:30] = bad[50:55, 50:55] = True
    assert (labels[bad] == 255).all() and (labels[~bad] < 6).all()
