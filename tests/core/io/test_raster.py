"""Raster I/O: metadata, boundless windows with validity, label GeoTIFF round trips, COG."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import rasterio
from rasterio.transform import from_origin
from rasterio.windows import Window
from segdeep.classes import DUBAI_CLASSES, colormap
from segdeep.errors import SegdeepError
from segdeep.io import raster


def test_open_raster_reports_georeference(make_geotiff):
    arr = np.arange(3 * 40 * 50, dtype=np.uint16).reshape(3, 40, 50)
    path = make_geotiff("img.tif", arr, nodata=0)
    info = raster.open_raster(path)
    assert (info.width, info.height, info.count, info.dtype) == (50, 40, 3, "uint16")
    assert info.crs.to_epsg() == 32640 and info.georeferenced
    assert info.res == (0.5, 0.5)
    assert info.bounds == (300000.0, 2780000.0 - 20.0, 300025.0, 2780000.0)
    assert info.nodata == 0


def test_boundless_window_pads_and_masks(make_geotiff):
    arr = np.full((2, 10, 12), 7, dtype=np.uint8)
    arr[:, 0, 0] = 0  # nodata in all bands -> invalid
    arr[0, 1, 1] = 0  # nodata in one band only -> still valid
    path = make_geotiff("img.tif", arr, nodata=0)
    data, valid = raster.read_window(path, Window(-2, -3, 8, 8))
    assert data.shape == (2, 8, 8) and valid.shape == (8, 8)
    assert not valid[:3].any() and not valid[:, :2].any()  # outside the raster
    assert data[:, :3].sum() == 0
    assert not valid[3, 2]  # pixel (0, 0)
    assert valid[4, 3]  # pixel (1, 1)
    assert valid[3:, 2:].sum() == 5 * 6 - 1
    np.testing.assert_array_equal(data[:, 4:, 3:], arr[:, 1:5, 1:6])


def test_band_selection(make_geotiff):
    arr = np.stack([np.full((4, 4), v, np.uint8) for v in (1, 2, 3, 4)])
    path = make_geotiff("img.tif", arr)
    data, _ = raster.read_window(path, Window(0, 0, 4, 4), bands=[4, 2])
    assert data[:, 0, 0].tolist() == [4, 2]
    with pytest.raises(SegdeepError, match="bands 1-4"):
        raster.check_bands(raster.open_raster(path), [5])


def test_plain_png_works_in_pixel_coordinates(tmp_path):
    from PIL import Image

    path = tmp_path / "photo.png"
    Image.fromarray(np.zeros((20, 30, 3), np.uint8)).save(path)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        info = raster.open_raster(path)
    assert any(issubclass(w.category, raster.NotGeoreferenced) for w in caught)
    assert not info.georeferenced and info.crs is None
    assert info.transform == rasterio.Affine.identity()
    assert (info.width, info.height, info.count) == (30, 20, 3)


def test_label_geotiff_round_trip_keeps_georeference_and_colours(tmp_path):
    labels = np.random.default_rng(0).integers(0, 6, (300, 520)).astype(np.uint8)
    labels[:5] = 255
    transform = from_origin(500000.0, 2790000.0, 0.5, 0.5)
    out = raster.write_labels(tmp_path / "labels.tif", labels, crs="EPSG:32640", transform=transform,
                              classes=DUBAI_CLASSES)
    with rasterio.open(out) as ds:
        assert ds.crs.to_epsg() == 32640 and ds.transform == transform
        assert ds.nodata == 255 and ds.dtypes == ("uint8",)
        assert ds.profile["tiled"] and ds.compression is not None
        assert ds.colormap(1)[0][:3] == DUBAI_CLASSES[0].color
        assert ds.colormap(1)[4] == colormap(DUBAI_CLASSES)[4]
        assert ds.overviews(1), "a COG carries overviews"
        assert ds.tags(1)["CLASS_2"] == "road"
        np.testing.assert_array_equal(ds.read(1), labels)
    assert [c.name for c in raster.read_classes_tag(out)] == [c.name for c in DUBAI_CLASSES]
    read, valid = raster.read_labels(out)
    np.testing.assert_array_equal(read, labels)
    assert not valid[:5].any() and valid[5:].all()
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "labels.qml", "labels.tif", "labels.tif.aux.xml"], "class names beside it, no temporary file left behind"


def test_label_writer_leaves_nothing_on_failure(tmp_path):
    target = tmp_path / "labels.tif"
    with pytest.raises(RuntimeError):
        with raster.LabelWriter(target, 64, 64, crs="EPSG:32640", transform=from_origin(0, 64, 1, 1),
                                classes=DUBAI_CLASSES) as w:
            w.write(Window(0, 0, 32, 32), np.ones((32, 32), np.uint8))
            raise RuntimeError("interrupted")
    assert list(tmp_path.iterdir()) == []


def test_errors_name_the_file(tmp_path):
    with pytest.raises(SegdeepError, match="no such file"):
        raster.open_raster(tmp_path / "missing.tif")
    bad = tmp_path / "notes.tif"
    bad.write_text("this is not a raster")
    with pytest.raises(SegdeepError, match="notes.tif: not a raster"):
        raster.open_raster(bad)


def test_real_landsat_nodata_border(georef):
    path = georef / "landsat7_rgb_byte.tif"
    info = raster.open_raster(path)
    assert info.crs.to_epsg() == 32618 and info.nodata == 0
    _, valid = raster.read_window(path, Window(0, 0, info.width, info.height))
    assert 0.3 < valid.mean() < 0.95, "the scene footprint is valid, the black border is not"
    assert not valid[0, 0]
