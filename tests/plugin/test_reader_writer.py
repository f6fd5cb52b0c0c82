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
