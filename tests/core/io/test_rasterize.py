"""Vector references on a raster grid: exact round trip, reprojection, streaming windows, evaluation."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pyogrio.raw
import pytest
import rasterio
import shapely
from affine import Affine
from rasterio.crs import CRS
from rasterio.warp import transform as warp
from rasterio.windows import Window
from segdeep.classes import DUBAI_CLASSES
from segdeep.errors import SegdeepError
from segdeep.export.vectorize import vectorize_raster
from segdeep.io.raster import open_raster, read_labels, write_labels
from segdeep.io.rasterize import Reprojected, VectorReference, rasterize_reference

TRANSFORM = Affine(0.5, 0, 500_000.0, 0, -0.5, 3_700_000.0)
UTM = CRS.from_epsg(32616)


def _labels(h: int = 300, w: int = 340, seed: int = 1) -> np.ndarray:
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 6, size=(h // 10 + 1, w // 10 + 1)).astype(np.uint8)
    lab = np.kron(small, np.ones((10, 10), np.uint8))[:h, :w]
    lab[rng.random((h, w)) < 0.02] = 3
    lab[:, :25] = 255
    return lab


@pytest.fixture(scope="module")
def truth(tmp_path_factory) -> tuple[Path, Path, np.ndarray]:
    folder = tmp_path_factory.mktemp("ref")
    lab = _labels()
    tif = write_labels(folder / "truth.tif", lab, crs=UTM, transform=TRANSFORM, classes=DUBAI_CLASSES, cog=False)
    gpkg = folder / "truth.gpkg"
    vectorize_raster(tif, gpkg, block_size=128)
    return tif, gpkg, lab


def test_polygons_of_a_label_raster_rasterize_back_exactly(truth):
    tif, gpkg, lab = truth
    labels, valid = rasterize_reference(gpkg, tif, layer="truth")
    assert np.array_equal(labels, lab)
    assert np.array_equal(valid, lab != 255)
    by_name, _ = rasterize_reference(gpkg, open_raster(tif), attribute="class_name", classes=DUBAI_CLASSES)
    assert np.array_equal(by_name, lab)


def test_every_layer_of_a_per_class_geopackage_is_read(truth, tmp_path):
    tif, _, lab = truth
    per_class = tmp_path / "per_class.gpkg"
    vectorize_raster(tif, per_class, layer_per_class=True, block_size=200)
    labels, _ = rasterize_reference(per_class, tif)
    assert np.array_equal(labels, lab)
    roads, _ = rasterize_reference(per_class, tif, layer="road")
    assert np.array_equal(roads == 2, lab == 2) and set(np.unique(roads)) == {2, 255}


def test_windows_stream_and_pad_outside_the_raster(truth):
    tif, gpkg, lab = truth
    ref = VectorReference(gpkg, tif)
    assert ref.note is None
    labels, valid = ref.read(Window(300, -20, 64, 64))
    assert np.array_equal(labels[20:, :40], lab[0:44, 300:340])
    assert (labels[:20] == 255).all() and not valid[:20].any() and not valid[:, 40:].any()
    tiles = [ref.read(Window(c, r, 100, 100))[0] for r in range(0, 300, 100) for c in range(0, 340, 100)]
    rows = [np.concatenate(tiles[i:i + 4], axis=1)[:, :340] for i in range(0, 12, 4)]
    assert np.array_equal(np.concatenate(rows, axis=0), lab)


def test_evaluation_against_vector_equals_against_its_raster(truth, tmp_path):
    metrics = pytest.importorskip("segdeep.evaluate.metrics")
    tif, gpkg, lab = truth
    rng = np.random.default_rng(5)
    pred = np.where(rng.random(lab.shape) < 0.8, lab, rng.integers(0, 6, lab.shape)).astype(np.uint8)
    pred[lab == 255] = 255
    # The reference as polygons in another CRS (reprojected back on reading) and as a raster.
    geo = tmp_path / "truth_4326.geojson"
    meta, _, wkb, fields = pyogrio.raw.read(gpkg, layer="truth", columns=["class_index"])
    geoms = shapely.from_wkb(wkb)
    geoms = shapely.segmentize(geoms, 0.5)  # keep edges straight through the round trip

    def to_wgs84(xy):
        x, y = warp(UTM, CRS.from_epsg(4326), xy[:, 0], xy[:, 1])
        return np.column_stack([x, y])

    pyogrio.raw.write(geo, shapely.to_wkb(shapely.transform(geoms, to_wgs84)), fields, ["class_index"],
                      driver="GeoJSON", geometry_type="Polygon", crs="EPSG:4326")
    ref = VectorReference(geo, tif)
    assert "reprojected" in ref.note and "EPSG:4326" in ref.note
    reference_tif = tmp_path / "reference.tif"
    whole, _ = ref.read()
    write_labels(reference_tif, whole, crs=UTM, transform=TRANSFORM, classes=DUBAI_CLASSES, cog=False)
    assert (whole == lab).mean() > 0.999  # the reprojection round trip moves almost nothing
    streamed, rastered = metrics.ConfusionMatrix(6), metrics.ConfusionMatrix(6)
    for r in range(0, 300, 128):
        for c in range(0, 340, 128):
            win = Window(c, r, min(128, 340 - c), min(128, 300 - r))
            t_vec, v_vec = ref.read(win)
            t_ras, v_ras = read_labels(reference_tif, win)
            p = pred[r:r + int(win.height), c:c + int(win.width)]
            streamed.update(t_vec, p, v_vec)
            rastered.update(t_ras, p, v_ras)
    assert streamed.num_pixels > 0
    assert np.array_equal(streamed.matrix, rastered.matrix)


def test_warning_and_errors(truth, tmp_path):
    tif, gpkg, _ = truth
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        rasterize_reference(gpkg, tif)  # same CRS: no note
    assert not [w for w in caught if issubclass(w.category, Reprojected)]
    with pytest.raises(SegdeepError, match="no attribute 'landcover'"):
        rasterize_reference(gpkg, tif, attribute="landcover")
    with pytest.raises(SegdeepError, match="give the classes"):
        rasterize_reference(gpkg, tif, attribute="class_name")
    with pytest.raises(SegdeepError, match="not classes"):
        rasterize_reference(gpkg, tif, attribute="class_name", classes=DUBAI_CLASSES[:2])
    with pytest.raises(SegdeepError, match="no such file"):
        rasterize_reference(tmp_path / "missing.gpkg", tif)
    bad = tmp_path / "bad.geojson"
    bad.write_text("not json")
    with pytest.raises(SegdeepError, match="not a vector file"):
        rasterize_reference(bad, tif)
    other = tmp_path / "utm17.geojson"
    pyogrio.raw.write(other, shapely.to_wkb(np.array([shapely.box(0, 0, 1, 1)])), [np.array([1])], ["class_index"],
                      driver="GeoJSON", geometry_type="Polygon", crs="EPSG:32617")
    with pytest.warns(Reprojected, match="reprojected from EPSG:32617"):
        rasterize_reference(other, tif)


def test_real_footprints_match_the_published_mask(georef):
    folder = georef / "spacenet_atlanta_pan"
    if not (folder / "building_mask_from_geojson.tif").exists():
        pytest.skip(f"real georeferenced data not found in {folder}")
    labels, valid = rasterize_reference(folder / "geotiff_labels.geojson", folder / "building_mask_from_geojson.tif",
                                        value=1, fill=0)
    with rasterio.open(folder / "building_mask_from_geojson.tif") as ds:
        mask = ds.read(1)
    assert valid.all() and np.array_equal(labels, mask)
