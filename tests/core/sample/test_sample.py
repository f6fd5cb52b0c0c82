"""The sample scene: deterministic, georeferenced, block-independent, plausible class shares."""

from __future__ import annotations

import numpy as np
import pytest
import rasterio
from rasterio.crs import CRS
from rasterio.windows import Window
from segdeep.cli import main
from segdeep.errors import SegdeepError
from segdeep.io.raster import read_classes_tag
from segdeep.sample.scene import make_sample_scene, sample_scene_window


def _read(path):
    with rasterio.open(path) as ds:
        return ds.read(), ds.crs, ds.transform, ds.profile


def test_same_seed_same_pixels_and_georeference(tmp_path):
    img1, lab1 = make_sample_scene(tmp_path / "a", size=320, seed=5, gsd=0.5, block_size=128)
    img2, lab2 = make_sample_scene(tmp_path / "b", size=320, seed=5, gsd=0.5, block_size=128)
    a, crs, transform, profile = _read(img1)
    b = _read(img2)[0]
    assert np.array_equal(a, b)
    assert np.array_equal(_read(lab1)[0], _read(lab2)[0])
    assert a.shape == (3, 320, 320) and a.dtype == np.uint8
    assert crs == CRS.from_epsg(32640)
    assert transform.a == 0.5 and transform.e == -0.5 and transform.b == transform.d == 0
    # Centred on Dubai by default (UTM 40N easting ~326 km, northing ~2788 km).
    assert 320_000 < transform.c < 332_000 and 2_780_000 < transform.f < 2_796_000
    assert profile["tiled"] and profile["compress"] == "jpeg"
    labels, lcrs, ltransform, lprofile = _read(lab1)
    assert lcrs == crs and ltransform == transform and lprofile["nodata"] == 255
    assert [c.name for c in read_classes_tag(lab1)][:5] == ["building", "land", "road", "vegetation", "water"]
    other = sample_scene_window(Window(0, 0, 320, 320), size=320, seed=6)[0]
    assert (other != a).mean() > 0.5  # another seed is another scene


def test_window_equals_the_written_scene_and_crs_origin_are_honoured(tmp_path):
    img, lab = make_sample_scene((tmp_path / "i.tif", tmp_path / "l.tif"), size=200, seed=1, gsd=0.6,
                                 crs="EPSG:32639", origin=(500000, 2800000), block_size=96)
    image, crs, transform, _ = _read(img)
    labels = _read(lab)[0][0]
    assert crs == CRS.from_epsg(32639)
    assert tuple(transform)[:6] == (0.6, 0.0, 500000.0, 0.0, -0.6, 2800000.0)
    rgb, lw = sample_scene_window(Window(37, 90, 120, 80), size=200, seed=1, gsd=0.6)
    assert np.array_equal(lw, labels[90:170, 37:157])
    # The image is JPEG-compressed: close to, not equal to, the rendered window.
    assert np.abs(rgb.astype(int) - image[:, 90:170, 37:157]).mean() < 4


def test_class_shares_look_like_the_dubai_data():
    rgb, labels = sample_scene_window(Window(0, 0, 1024, 1024), size=1024, seed=0)
    share = np.bincount(labels.ravel(), minlength=6) / labels.size
    building, land, road, vegetation, water, unlabeled = share
    assert 0.30 < land < 0.65, share
    assert 0.08 < building < 0.30, share
    assert 0.07 < road < 0.25, share
    assert 0.04 < vegetation < 0.20, share
    assert 0.03 < water < 0.20, share
    assert unlabeled == 0 and labels.max() <= 4
    # Colours in the range of the real images: water darkest, land brightest on average.
    means = [rgb[:, labels == c].mean() for c in range(5)]
    assert means[4] < means[3] < means[2] < means[1]


@pytest.mark.parametrize("kwargs, words", [
    (dict(size=8), "size 8"),
    (dict(gsd=0.0), "gsd 0.0"),
    (dict(crs="EPSG:4326"), "not a projected CRS"),
    (dict(crs="nonsense"), "nonsense"),
])
def test_bad_arguments_are_one_line_errors(tmp_path, kwargs, words):
    with pytest.raises(SegdeepError, match=words):
        make_sample_scene(tmp_path, **kwargs)
    assert not any(tmp_path.iterdir())


def test_cli_writes_both_files(tmp_path, capsys):
    assert main(["sample", "--out", str(tmp_path / "s"), "--size", "96", "--seed", "2", "--quiet"]) == 0
    assert (tmp_path / "s" / "scene.tif").exists() and (tmp_path / "s" / "scene_labels.tif").exists()
    assert sorted(p.name for p in (tmp_path / "s").iterdir()) == ["scene.tif", "scene_labels.qml", "scene_labels.tif",
                                                                    "scene_labels.tif.aux.xml"]
    assert main(["sample", "--out", str(tmp_path / "t"), "--gsd", "-1"]) == 2
    assert "gsd" in capsys.readouterr().err


def test_committed_sample_is_what_the_command_makes():
    """sample_data/ holds `segdeep sample --out sample_data --size 1536` (see sample_data/README.md)."""
    from pathlib import Path

    folder = Path(__file__).resolve().parents[3] / "sample_data"
    image, crs, transform, _ = _read(folder / "scene.tif")
    labels = _read(folder / "scene_labels.tif")[0][0]
    assert image.shape == (3, 1536, 1536) and crs == CRS.from_epsg(32640) and transform.a == 0.5
    window = Window(600, 700, 192, 160)
    rgb, lab = sample_scene_window(window, size=1536, seed=0, gsd=0.5)
    assert np.array_equal(lab, labels[700:860, 600:792])
    assert np.abs(rgb.astype(int) - image[:, 700:860, 600:792]).mean() < 4


def test_an_interrupted_run_leaves_no_files(tmp_path):
    def stop(done, total):
        if done == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        make_sample_scene(tmp_path, size=128, block_size=64, progress=stop)
    assert list(tmp_path.iterdir()) == []
