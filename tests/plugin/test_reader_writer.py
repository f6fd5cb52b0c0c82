"""Reader, writers and sample data of the plugin, through napari's own plugin machinery."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import rasterio

from napari_segdeep._reader import RasterLevel, napari_get_reader, read_raster


def test_reader_keeps_georeference(scene, make_napari_viewer):
    image, _ = scene
    viewer = make_napari_viewer()
    layers = viewer.open(str(image), plugin="napari-segdeep")
    layer = layers[0]
    assert layer.rgb and layer.data.shape == (96, 96, 3)
    meta = layer.metadata
    with rasterio.open(image) as ds:
        assert meta["crs"] == ds.crs.to_wkt()
        assert meta["transform"] == list(ds.transform)[:6]
        assert np.array_equal(np.moveaxis(layer.data, -1, 0), ds.read())
    assert meta["band_names"] == ["red", "green", "blue"]
    assert meta["nodata"] is None and meta["path"] == str(image)


def test_reader_declines_other_files(tmp_path):
    text = tmp_path / "notes.txt"
    text.write_text("not a raster")
    assert napari_get_reader(str(text)) is None
    fake = tmp_path / "fake.tif"
    fake.write_text("not a tiff either")
    assert napari_get_reader(str(fake)) is None
    assert napari_get_reader(str(tmp_path / "missing.tif")) is None


def test_large_raster_opens_lazily_as_multiscale(make_geotiff, monkeypatch, make_napari_viewer):
    """Above the threshold the reader returns lazy levels; reading a window reads just that window."""
    import napari_segdeep._reader as reader

    data = np.arange(3 * 300 * 500, dtype=np.uint16).reshape(3, 300, 500) % 1000
    path = make_geotiff("big.tif", data, nodata=0)
    monkeypatch.setattr(reader, "MULTISCALE_PIXELS", 100 * 100)
    monkeypatch.setattr(reader, "SMALLEST_LEVEL", 128)
    (levels, kwargs, kind), = read_raster(str(path))
    assert kind == "image" and kwargs["multiscale"] and not kwargs["rgb"]
    assert [lv.shape for lv in levels] == [(3, 300, 500), (3, 150, 250), (3, 75, 125)]
    assert isinstance(levels[0], RasterLevel)
    assert np.array_equal(levels[0][:, 10:20, 30:45], data[:, 10:20, 30:45])
    assert np.array_equal(levels[0][1, 5, 7:9], data[1, 5, 7:9])
    assert levels[2][:, :, :].shape == (3, 75, 125)
    lo, hi = kwargs["contrast_limits"]
    assert 0 < lo < hi <= 999
    viewer = make_napari_viewer()
    layer = viewer.open(str(path), plugin="napari-segdeep")[0]
    assert layer.multiscale and layer.data[0].shape == (3, 300, 500) and len(layer.data) == 3
    assert np.array_equal(np.asarray(layer.data[0][:, 100:110, 200:220]), data[:, 100:110, 200:220])


def test_writers_keep_georeference_and_classes(scene, make_napari_viewer, tmp_path):
    import pyogrio
    from segdeep.classes import DUBAI_CLASSES
    from segdeep.io.raster import open_raster, read_classes_tag, read_labels

    from napari_segdeep._layers import georef_metadata, labels_layer_kwargs

    _, labels_path = scene
    viewer = make_napari_viewer()

    labels, _ = read_labels(labels_path)
    info = open_raster(labels_path)
    layer = viewer.add_labels(labels, **labels_layer_kwargs(DUBAI_CLASSES, georef_metadata(info), "truth"))
    out_tif = tmp_path / "out.tif"
    written = layer.save(str(out_tif), plugin="napari-segdeep")
    assert written == [str(out_tif)]
    back, _ = read_labels(out_tif)
    assert np.array_equal(back, labels)
    out_info = open_raster(out_tif)
    assert out_info.crs == info.crs and out_info.transform.almost_equals(info.transform)
    assert [c.name for c in read_classes_tag(out_tif)] == [c.name for c in DUBAI_CLASSES]
    gpkg = tmp_path / "out.gpkg"
    layer.save(str(gpkg), plugin="napari-segdeep")
    frame = pyogrio.read_dataframe(gpkg, layer="out")
    assert set(frame["class_name"]) == {"building", "land", "road"}
    area = frame.groupby("class_name")["area"].sum()
    assert area["building"] == pytest.approx((labels == 0).sum() * 0.25)


def test_sample_scene_generates_when_not_shipped(make_napari_viewer, monkeypatch, tmp_path):
    import napari_segdeep._sample_data as sample

    monkeypatch.setattr(sample, "REPO_SAMPLE", tmp_path / "nothing-here")
    calls = []
    real = sample.make_sample_scene

    def small(folder):
        calls.append(folder)
        return real(folder, size=128)

    monkeypatch.setattr(sample, "make_sample_scene", small)
    viewer = make_napari_viewer()
    layers = viewer.open_sample("napari-segdeep", "scene")
    assert [type(lay).__name__ for lay in layers] == ["Image", "Labels"]
    image, truth = layers
    assert image.rgb and image.data.shape == (128, 128, 3)
    assert truth.metadata["crs"] and truth.colormap.background_value == 255
    assert [c["name"] for c in truth.metadata["classes"]][:3] == ["building", "land", "road"]
    assert len(calls) == 1 and Path(calls[0]).parent == tmp_path / "cache"
    viewer.open_sample("napari-segdeep", "scene")  # second time: cached, not regenerated
    assert len(calls) == 1


def test_manifest_validates():
    npe2 = Path(sys.executable).with_name("npe2")
    out = subprocess.run([str(npe2), "validate", "napari-segdeep"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "valid" in out.stdout


def test_saved_labels_reopen_as_labels_with_palette_and_georeference(scene, make_napari_viewer, tmp_path):
    """Save a Labels layer with the plugin's writer, open the file: an editable Labels layer again."""
    from segdeep.classes import DUBAI_CLASSES
    from segdeep.io.raster import open_raster, read_labels

    from napari_segdeep._layers import georef_metadata, labels_layer_kwargs

    _, labels_path = scene
    viewer = make_napari_viewer()
    labels, _ = read_labels(labels_path)
    labels[:5, :5] = 255  # nodata survives the round trip
    info = open_raster(labels_path)
    layer = viewer.add_labels(labels, **labels_layer_kwargs(DUBAI_CLASSES, georef_metadata(info), "edited"))
    out = tmp_path / "edited.tif"
    layer.save(str(out), plugin="napari-segdeep")
    back = viewer.open(str(out), plugin="napari-segdeep")[0]
    assert type(back).__name__ == "Labels" and back.data.dtype == np.uint8
    assert np.array_equal(back.data, labels)
    assert back.metadata["crs"] == info.crs.to_wkt() and back.metadata["transform"] == list(info.transform)[:6]
    assert [c["name"] for c in back.metadata["classes"]] == [c.name for c in DUBAI_CLASSES]
    assert tuple(np.round(back.colormap.map(2)[:3] * 255)) == DUBAI_CLASSES[2].color
    assert back.colormap.map(255)[3] == 0  # nodata transparent
    back.paint((50, 50), 1)  # editable
    assert back.data[50, 50] == 1


def test_colour_table_rasters_open_as_labels_plain_uint8_as_image(make_geotiff, make_napari_viewer):
    """A GDAL palette raster (no segdeep tag) is labels with its colours; a grey uint8 band is an image."""
    values = np.zeros((40, 40), np.uint8)
    values[10:20] = 1
    values[30:] = 3
    path = make_geotiff("palette.tif", values)
    with rasterio.open(path, "r+") as ds:
        ds.write_colormap(1, {0: (0, 0, 0, 255), 1: (255, 0, 0, 255), 3: (0, 0, 255, 255)})
    grey = make_geotiff("grey.tif", values * 60)
    viewer = make_napari_viewer()
    lab = viewer.open(str(path), plugin="napari-segdeep")[0]
    assert type(lab).__name__ == "Labels" and np.array_equal(lab.data, values)
    assert [c["name"] for c in lab.metadata["classes"]] == ["class 0", "class 1", "class 2", "class 3"]
    assert tuple(np.round(lab.colormap.map(1)[:3] * 255)) == (255, 0, 0)
    assert type(viewer.open(str(grey), plugin="napari-segdeep")[0]).__name__ == "Image"


def test_plain_png_and_jpeg_open_as_images(tmp_path, arrays, make_napari_viewer):
    image, _ = arrays(size=64)
    viewer = make_napari_viewer()
    for name, driver in (("photo.png", "PNG"), ("photo.jpg", "JPEG")):
        with rasterio.open(tmp_path / name, "w", driver=driver, width=64, height=64, count=3, dtype="uint8") as ds:
            ds.write(image)
        assert napari_get_reader(str(tmp_path / name)) is not None
        layer = viewer.open(str(tmp_path / name), plugin="napari-segdeep")[0]
        assert layer.rgb and layer.data.shape == (64, 64, 3)
        assert layer.metadata["georeferenced"] is False
    assert np.array_equal(viewer.layers["photo"].data, np.moveaxis(image, 0, -1))  # the PNG: lossless
