"""Layers sit in map coordinates: rasters overlay by location; the cursor reads map position and class."""

from __future__ import annotations

import numpy as np
import pytest
from affine import Affine
from segdeep.classes import DUBAI_CLASSES
from segdeep.io.raster import write_labels
from segdeep.testing import CRS


def test_rasters_with_different_transforms_overlay_by_location(make_geotiff, arrays, make_napari_viewer):
    image, _ = arrays(96)
    a = make_geotiff("a.tif", image, transform=Affine(0.5, 0, 300000, 0, -0.5, 2700000))
    b = make_geotiff("b.tif", image, transform=Affine(1.0, 0, 300010, 0, -1.0, 2699995))  # 20 m E... 1 m pixels
    viewer = make_napari_viewer()
    la = viewer.open(str(a), plugin="napari-segdeep")[0]
    lb = viewer.open(str(b), plugin="napari-segdeep")[0]
    # the map point E 300020, N 2699985 is pixel (row 30, col 40) of a and (row 10, col 10) of b
    world = (-2699985.0, 300020.0)
    assert np.allclose(la.world_to_data(world), (30, 40)) and np.allclose(lb.world_to_data(world), (10, 10))
    assert np.allclose(la.data_to_world((30, 40)), lb.data_to_world((10, 10)))
    top_left = [lay.extent.world[0] for lay in (la, lb)]  # north up: the smaller world y is further north
    assert np.allclose(top_left[0], (-2700000, 300000)) and np.allclose(top_left[1], (-2699995, 300010))


def test_labels_file_and_segment_result_overlay_their_image(make_geotiff, arrays, make_napari_viewer, tmp_path):
    from napari_segdeep._layers import labels_layer_kwargs, region_metadata

    image, truth = arrays(96)
    transform = Affine(0.5, 0, 300000, 0, -0.5, 2700000)
    img = make_geotiff("img.tif", image, transform=transform)
    lab = write_labels(tmp_path / "lab.tif", truth, crs=CRS, transform=transform, classes=DUBAI_CLASSES)
    viewer = make_napari_viewer()
    li = viewer.open(str(img), plugin="napari-segdeep")[0]
    ll = viewer.open(str(lab), plugin="napari-segdeep")[0]
    assert np.allclose(li.data_to_world((5, 7)), ll.data_to_world((5, 7)))
    # a region layer (as Segment writes for the visible region): translate in source pixels, then the map
    meta = region_metadata(li.metadata, 20, 10, 30, 40)
    region = viewer.add_labels(truth[10:50, 20:50], **labels_layer_kwargs(DUBAI_CLASSES, meta, "region",
                                                                          translate=(10, 20)))
    assert np.allclose(region.data_to_world((0, 0)), li.data_to_world((10, 20)))


def test_cursor_shows_map_position_and_class_name(make_geotiff, arrays, make_napari_viewer, tmp_path):
    from napari_segdeep._cursor import describe_position

    image, truth = arrays(96)
    transform = Affine(0.5, 0, 300000, 0, -0.5, 2700000)
    lab = write_labels(tmp_path / "lab.tif", truth, crs=CRS, transform=transform, classes=DUBAI_CLASSES)
    viewer = make_napari_viewer()
    ll = viewer.open(str(lab), plugin="napari-segdeep")[0]
    _, w = viewer.window.add_plugin_dock_widget("napari-segdeep", "Refine")
    row, col = 30, 41
    world = ll.data_to_world((row, col))
    name = DUBAI_CLASSES[int(truth[row, col])].name
    text = describe_position(viewer, world)
    assert text == f"E {300000 + 0.5 * col:.2f}  N {2700000 - 0.5 * row:.2f} m · lab: {name}"
    viewer.cursor.position = tuple(world)  # the dock keeps the canvas overlay on the cursor
    assert viewer.text_overlay.visible and viewer.text_overlay.text == text
    viewer.window.add_plugin_dock_widget("napari-segdeep", "Segment")  # a second dock: still one readout
    assert sum(getattr(cb, "segdeep_readout", False) for cb in viewer.cursor.events.position.callbacks) == 1


@pytest.mark.parametrize("nodata", [0])
def test_nodata_collar_is_transparent(make_geotiff, arrays, make_napari_viewer, nodata):
    image, _ = arrays(64)
    image = image.copy()
    image[:, :, :10] = nodata  # a collar, all bands nodata
    path = make_geotiff("collar.tif", image, nodata=nodata)
    viewer = make_napari_viewer()
    layer = viewer.open(str(path), plugin="napari-segdeep")[0]
    assert layer.rgb and layer.data.shape == (64, 64, 4)
    assert (layer.data[:, :10, 3] == 0).all() and (layer.data[:, 10:, 3] == 255).all()
    from napari_segdeep._layers import image_bands

    assert np.array_equal(image_bands(layer), image)  # the engine still gets the three bands
