"""Polygons from label rasters: exact areas, valid geometry, no seams at block edges, GIS outputs."""

from __future__ import annotations

import sqlite3
import warnings
from pathlib import Path

import numpy as np
import pyogrio
import pytest
import rasterio
import shapely
from affine import Affine
from rasterio.crs import CRS
from segdeep.classes import DUBAI_CLASSES, ClassInfo
from segdeep.errors import SegdeepError
from segdeep.export.vectorize import vectorize_raster
from segdeep.io.raster import write_labels
from segdeep.testing import write_geotiff

PIXEL = 0.5  # metres
TRANSFORM = Affine(PIXEL, 0, 500_000.0, 0, -PIXEL, 3_700_000.0)
UTM = CRS.from_epsg(32616)


def make_labels(h: int = 1100, w: int = 1200, seed: int = 0) -> np.ndarray:
    """Land (1) background with shapes that cross the 256 and 1024 block edges."""
    rng = np.random.default_rng(seed)
    lab = np.ones((h, w), dtype=np.uint8)
    yy, xx = np.mgrid[0:h, 0:w]
    # An annulus (building ring with a water hole holding a land island) across the edge at 256.
    r = np.hypot(yy - 256, xx - 300)
    lab[r < 120] = 0
    lab[r < 60] = 4
    lab[r < 20] = 1
    # A U shape whose arms are only joined in the next block row (edge at 1024).
    lab[900:1020, 600:620] = 2
    lab[900:1020, 680:700] = 2
    lab[1020:1040, 600:700] = 2
    # Checkerboards (diagonal touching pixels) around block corners (256, 256) and (1024, 1024).
    for cy, cx in [(256, 256), (1024, 1024)]:
        patch = (np.add.outer(np.arange(12), np.arange(12)) % 2).astype(np.uint8) * 3
        lab[cy - 6:cy + 6, cx - 6:cx + 6] = np.where(patch == 3, 3, 1)
    # A long road across all blocks, and a noisy patch across the edge at 512.
    lab[700:706, :] = 2
    lab[480:540, 480:560] = rng.integers(0, 6, size=(60, 80))
    # A spiral-ish vegetation corridor touching blocks at edge 768.
    lab[760:776, 100:1100] = 3
    lab[600:776, 1084:1100] = 3
    # Nodata: a strip along the left edge and a hole in the middle.
    lab[:, :40] = 255
    lab[300:320, 700:900] = 255
    return lab


@pytest.fixture(scope="module")
def labels_tif(tmp_path_factory) -> tuple[Path, np.ndarray]:
    lab = make_labels()
    path = tmp_path_factory.mktemp("vec") / "labels.tif"
    write_labels(path, lab, crs=UTM, transform=TRANSFORM, classes=DUBAI_CLASSES, cog=False)
    return path, lab


@pytest.fixture(scope="module")
def by_block_size(labels_tif, tmp_path_factory) -> dict[int, tuple[dict, object]]:
    path, lab = labels_tif
    out = {}
    for bs in (256, 1024, max(lab.shape)):
        gpkg = tmp_path_factory.mktemp(f"bs{bs}") / "polygons.gpkg"
        summary = vectorize_raster(path, gpkg, block_size=bs)
        out[bs] = (summary, pyogrio.read_dataframe(gpkg, layer="polygons"))
    return out


def _canonical(geoms) -> list[bytes]:
    # Same vertices whatever the block size (no collinear leftovers at block edges); normalize
    # only orders rings and their starting vertex.
    return sorted(shapely.to_wkb(shapely.normalize(np.asarray(geoms))).tolist())


def test_area_per_class_is_pixel_count_times_pixel_area(by_block_size, labels_tif):
    _, lab = labels_tif
    for _summary, gdf in by_block_size.values():
        for c in range(6):
            expected = float((lab == c).sum()) * PIXEL * PIXEL
            sel = gdf["class_index"] == c
            assert gdf.loc[sel, "area"].sum() == pytest.approx(expected, rel=1e-12, abs=1e-9)
            assert shapely.area(gdf.geometry[sel].values).sum() == pytest.approx(expected, rel=1e-9, abs=1e-6)
            assert gdf.loc[sel, "area_m2"].sum() == pytest.approx(expected, rel=1e-12, abs=1e-9)
        assert shapely.is_valid(gdf.geometry.values).all()


def test_block_size_does_not_change_the_polygons(by_block_size):
    results = list(by_block_size.values())
    ref_summary, ref = results[-1]  # whole image in one block
    assert ref_summary["blocks"] == 1
    for summary, gdf in results[:-1]:
        assert summary["blocks"] > 1
        assert len(gdf) == len(ref)
        for c in range(6):
            a = gdf.geometry[gdf["class_index"] == c].values
            b = ref.geometry[ref["class_index"] == c].values
            assert len(a) == len(b), f"class {c}: {len(a)} polygons vs {len(b)} whole-image"
            assert shapely.union_all(a).symmetric_difference(shapely.union_all(b)).area == 0.0
            assert _canonical(a) == _canonical(b)


@pytest.mark.parametrize("workers", [2, 3])
def test_worker_threads_give_the_same_polygons(labels_tif, by_block_size, tmp_path, workers):
    path, _ = labels_tif
    out = tmp_path / "workers.gpkg"
    summary = vectorize_raster(path, out, block_size=512, workers=workers)
    gdf = pyogrio.read_dataframe(out, layer="workers")
    _, ref = by_block_size[max(by_block_size)]
    assert summary["blocks"] == 9 and len(gdf) == len(ref)
    for c in range(6):
        assert _canonical(gdf.geometry[gdf["class_index"] == c].values) == _canonical(
            ref.geometry[ref["class_index"] == c].values)
    # Same features in the same order, with the same attributes, as in one thread.
    vectorize_raster(path, tmp_path / "one.gpkg", block_size=512, workers=1)
    one = pyogrio.read_dataframe(tmp_path / "one.gpkg", layer="one")
    assert shapely.to_wkb(gdf.geometry.values).tolist() == shapely.to_wkb(one.geometry.values).tolist()
    assert gdf.drop(columns="geometry").equals(one.drop(columns="geometry"))


def test_gdal_polygonizer_without_rasterio_dicts_gives_rasterio_polygons(monkeypatch, labels_tif, tmp_path):
    from affine import Affine as _Affine
    from rasterio.features import shapes
    from segdeep.export import gdal_shapes as _gdal_shapes
    from shapely.geometry import shape

    lab = np.ascontiguousarray(make_labels()[200:600, 150:700])
    mask = lab != 255
    mask[50:60, :] = False
    wkb, values = _gdal_shapes.polygonize_wkb(lab, mask, 1000, 2000)
    expected = list(shapes(lab, mask=mask, connectivity=4, transform=_Affine.translation(1000, 2000)))
    assert values.tolist() == [int(v) for _, v in expected]
    assert wkb == [shape(g).wkb for g, _ in expected]  # same rings, same vertex order
    # The whole vectorization without the ctypes path (rasterio.features.shapes) gives the same file.
    path, _ = labels_tif
    vectorize_raster(path, tmp_path / "fast.gpkg", block_size=300)
    monkeypatch.setattr(_gdal_shapes, "_gdal", lambda: None)
    vectorize_raster(path, tmp_path / "rio.gpkg", block_size=300)
    a = pyogrio.read_dataframe(tmp_path / "fast.gpkg", layer="fast")
    b = pyogrio.read_dataframe(tmp_path / "rio.gpkg", layer="rio")
    assert shapely.to_wkb(a.geometry.values).tolist() == shapely.to_wkb(b.geometry.values).tolist()
    assert a.drop(columns="geometry").equals(b.drop(columns="geometry"))


def test_shapes_are_topologically_right(by_block_size):
    _, gdf = by_block_size[256]
    ring = gdf[(gdf["class_index"] == 0) & (gdf["area"] > 1000)]
    assert len(ring) == 1 and len(ring.geometry.iloc[0].interiors) == 1  # the building annulus has its hole
    u_shape = gdf[(gdf["class_index"] == 2) & (gdf.geometry.bounds["miny"] < 3_700_000 - 899 * PIXEL)
                  & (gdf.geometry.bounds["maxy"] > 3_700_000 - 1041 * PIXEL) & (gdf["area"] < 2000)]
    assert len(u_shape) == 1  # arms joined through the next block row
    # 12 x 12 checkerboards of diagonal-touching pixels: 72 separate one-pixel squares each.
    single = gdf[(gdf["class_index"] == 3) & (gdf["area"] == PIXEL * PIXEL)]
    assert len(single) >= 2 * 72 - 4


def test_nodata_never_becomes_a_polygon(by_block_size, labels_tif):
    _, lab = labels_tif
    _, gdf = by_block_size[256]
    nodata = shapely.union_all([shapely.box(*TRANSFORM @ (0, 0), *TRANSFORM @ (40, lab.shape[0])),
                                shapely.box(*TRANSFORM @ (700, 300), *TRANSFORM @ (900, 320))])
    assert shapely.union_all(gdf.geometry.values).intersection(nodata).area == 0.0
    total = sum(gdf["area"])
    assert total == pytest.approx(float((lab != 255).sum()) * PIXEL * PIXEL)


def test_attributes_crs_and_qgis_style(by_block_size, labels_tif, tmp_path):
    path, lab = labels_tif
    out = tmp_path / "per_class.gpkg"
    summary = vectorize_raster(path, out, layer_per_class=True, block_size=512, exclude=["unlabeled"])
    layers = [name for name, _ in pyogrio.list_layers(out) if name != "layer_styles"]
    assert sorted(layers) == sorted(c.name for c in DUBAI_CLASSES if c.name != "unlabeled")
    info = pyogrio.read_info(out, layer="building")
    assert CRS.from_user_input(info["crs"]) == UTM
    assert list(info["fields"]) == ["class_index", "class_name", "area", "area_m2", "perimeter", "perimeter_m"]
    gdf = pyogrio.read_dataframe(out, layer="building")
    assert set(gdf["class_name"]) == {"building"} and set(gdf["class_index"]) == {0}
    assert np.allclose(gdf["perimeter"], gdf.geometry.length) and np.allclose(gdf["perimeter_m"], gdf["perimeter"])
    assert summary["classes"]["building"]["polygons"] == len(gdf)
    con = sqlite3.connect(out)
    rows = con.execute("SELECT f_table_name, f_geometry_column, useAsDefault, styleQML FROM layer_styles").fetchall()
    con.close()
    assert sorted(r[0] for r in rows) == sorted(layers)
    building = next(r for r in rows if r[0] == "building")
    assert building[1] == "geom" and building[2] == 1
    assert 'attr="class_index"' in building[3] and "60,16,152,255" in building[3]
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # GDAL reads the table as conformant GeoPackage
        styles = pyogrio.read_dataframe(out, layer="layer_styles")
    assert len(styles) == len(layers) and styles["useAsDefault"].all()
    # The single-layer file has one style listing every class.
    _, single = by_block_size[256]
    assert list(single.columns[:2]) == ["class_index", "class_name"]


def test_geojson_and_shapefile(labels_tif, tmp_path):
    path, lab = labels_tif
    vectorize_raster(path, tmp_path / "p.geojson", block_size=300, exclude=[1])
    gj = pyogrio.read_dataframe(tmp_path / "p.geojson")
    assert CRS.from_user_input(gj.crs.to_wkt()) == UTM and 1 not in set(gj["class_index"])
    vectorize_raster(path, tmp_path / "p.shp", block_size=300, layer_per_class=True, exclude=[1, 5])
    shp = pyogrio.read_dataframe(tmp_path / "p_road.shp")
    assert {"class_idx", "class_name", "area", "area_m2", "perimeter", "perim_m"} <= set(shp.columns)
    assert shp["area"].sum() == pytest.approx(float((lab == 2).sum()) * PIXEL * PIXEL)
    assert not list(tmp_path.glob(".*tmp*"))


def test_simplify_and_min_area(labels_tif, tmp_path):
    path, _ = labels_tif
    exact = vectorize_raster(path, tmp_path / "a.gpkg", block_size=512)
    simple = vectorize_raster(path, tmp_path / "b.gpkg", block_size=512, simplify=1.0, min_area=4.0)
    a = pyogrio.read_dataframe(tmp_path / "a.gpkg", layer="a")
    b = pyogrio.read_dataframe(tmp_path / "b.gpkg", layer="b")
    assert shapely.is_valid(b.geometry.values).all()
    assert shapely.get_num_coordinates(b.geometry.values).sum() < 0.7 * shapely.get_num_coordinates(a.geometry.values).sum()
    assert (b["area_m2"] >= 4.0).all() and simple["dropped_small"] > 0
    assert len(b) == exact["polygons"] - simple["dropped_small"]


def test_errors_leave_no_output(labels_tif, tmp_path):
    path, _ = labels_tif
    out = tmp_path / "x.gpkg"

    def boom(done: int, total: int) -> None:
        if done == 3:
            raise RuntimeError("stop")

    for workers in (1, 2):  # with worker threads too: stopped, nothing left behind
        with pytest.raises(RuntimeError):
            vectorize_raster(path, out, block_size=256, progress=boom, workers=workers)
        assert list(tmp_path.iterdir()) == []
    with pytest.raises(SegdeepError, match="workers"):
        vectorize_raster(path, out, workers=0)
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(SegdeepError, match="unknown vector format"):
        vectorize_raster(path, tmp_path / "x.kml")
    with pytest.raises(SegdeepError, match="not a class"):
        vectorize_raster(path, out, exclude=["forest"])
    rgb = tmp_path / "rgb.tif"
    write_geotiff(rgb, np.zeros((3, 8, 8), np.uint8))
    with pytest.raises(SegdeepError, match="1 band"):
        vectorize_raster(rgb, out)


def test_cli(labels_tif, tmp_path, capsys):
    from segdeep.cli import main

    path, _ = labels_tif
    out = tmp_path / "cli.gpkg"
    assert main(["vectorize", str(path), "--out", str(out), "--min-area", "1", "--workers", "2", "--quiet"]) == 0
    assert "polygons" in capsys.readouterr().out and out.exists()
    assert main(["vectorize", str(path), "--out", str(tmp_path / "y.txt")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("segdeep vectorize: error:")


def test_real_building_mask_lands_on_the_footprints(tmp_path, georef):
    folder = georef / "spacenet_atlanta_pan"
    if not (folder / "building_mask_from_geojson.tif").exists():
        pytest.skip(f"real georeferenced data not found in {folder}")
    classes = [ClassInfo(0, "background", (0, 0, 0)), ClassInfo(1, "building", (255, 0, 0))]
    out = tmp_path / "buildings.gpkg"
    vectorize_raster(folder / "building_mask_from_geojson.tif", out, classes=classes, exclude=["background"],
                     block_size=256)
    got = pyogrio.read_dataframe(out, layer="buildings")
    truth = pyogrio.read_dataframe(folder / "geotiff_labels.geojson")
    assert got.crs.to_epsg() == 32616 and shapely.is_valid(got.geometry.values).all()
    a, b = shapely.union_all(got.geometry.values), shapely.union_all(truth.geometry.values)
    assert a.intersection(b).area / a.union(b).area > 0.9  # pixel staircase vs smooth outlines


def test_real_geographic_raster_gets_metres(tmp_path, georef):
    folder = georef / "spacenet_vegas"
    if not (folder / "road_mask_buffered_2m.tif").exists():
        pytest.skip(f"real georeferenced data not found in {folder}")
    classes = [ClassInfo(0, "background", (0, 0, 0)), ClassInfo(1, "road", (255, 255, 0))]
    out = tmp_path / "roads.gpkg"
    vectorize_raster(folder / "road_mask_buffered_2m.tif", out, classes=classes, exclude=[0], block_size=512)
    got = pyogrio.read_dataframe(out, layer="roads")
    lines = pyogrio.read_dataframe(folder / "roads_AOI_2_Vegas_img0.geojson")
    assert got.crs.to_epsg() == 4326
    roads = shapely.union_all(got.geometry.values)
    inside = shapely.union_all(lines.geometry.values).intersection(roads).length
    assert inside / shapely.union_all(lines.geometry.values).length > 0.95
    with rasterio.open(folder / "road_mask_buffered_2m.tif") as ds:
        count = int((ds.read(1) == 1).sum())
        lat = (ds.bounds.top + ds.bounds.bottom) / 2
        px_m2 = ds.res[0] * 111_320 * np.cos(np.radians(lat)) * ds.res[1] * 110_950
    assert got["area_m2"].sum() == pytest.approx(count * px_m2, rel=0.01)
