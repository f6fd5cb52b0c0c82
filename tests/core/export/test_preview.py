"""Preview PNGs: overlay colours where labelled, stretched non-8-bit imagery, bounded size, legend."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio
from affine import Affine
from PIL import Image
from rasterio.crs import CRS
from segdeep.classes import ClassInfo
from segdeep.errors import SegdeepError
from segdeep.export.preview import stretch, write_preview
from segdeep.io.raster import write_labels
from segdeep.testing import write_geotiff

CLASSES = [ClassInfo(0, "building", (255, 0, 0)), ClassInfo(1, "water", (0, 0, 255))]
TRANSFORM = Affine(1.0, 0, 400_000.0, 0, -1.0, 5_000_000.0)


@pytest.fixture()
def scene(tmp_path) -> tuple[Path, Path]:
    h, w = 300, 500
    image = tmp_path / "pan.tif"
    rng = np.random.default_rng(0)
    data = (1000 + rng.integers(0, 100, size=(1, h, w))).astype(np.uint16)  # dim 16-bit pan
    write_geotiff(image, data, crs=CRS.from_epsg(32633), transform=TRANSFORM)
    labels = np.full((h, w), 255, dtype=np.uint8)
    labels[:, :200] = 0
    labels[:, 200:300] = 1
    write_labels(tmp_path / "labels.tif", labels, crs=CRS.from_epsg(32633), transform=TRANSFORM,
                 classes=CLASSES, cog=False)
    return image, tmp_path / "labels.tif"


def test_overlay_stretch_size_and_legend(scene, tmp_path):
    image, labels = scene
    out = write_preview(image, labels, tmp_path / "p.png", max_size=100, alpha=0.5)
    png = np.asarray(Image.open(out).convert("RGB")).astype(int)
    assert png.shape[1] == 100 + 220 and png.shape[0] >= 60  # image part 100 x 60 plus the legend
    img = png[:60, :100]
    building, water, plain = img[:, 5:35], img[:, 42:58], img[:, 65:100]
    assert (building[..., 0] - building[..., 2] > 100).all()  # red overlay, palette read from the raster
    assert (water[..., 2] - water[..., 0] > 100).all()
    assert (plain[..., 0] == plain[..., 2]).all()  # unlabelled: grey image, no colour
    assert plain.min() < 40 and plain.max() > 215  # 1000-1100 stretched to the full range
    legend = png[:, 100:]
    assert ((legend == [255, 0, 0]).all(axis=-1)).sum() > 100  # swatches of both classes
    assert ((legend == [0, 0, 255]).all(axis=-1)).sum() > 100
    assert not list(tmp_path.glob(".*tmp*"))


def test_stretch_keeps_8_bit_and_spreads_16_bit():
    u8 = np.arange(12, dtype=np.uint8).reshape(1, 3, 4)
    assert stretch(u8) is u8
    u16 = np.linspace(100, 200, 100).astype(np.uint16).reshape(1, 10, 10)
    s = stretch(u16)
    assert s.dtype == np.uint8 and s.min() == 0 and s.max() == 255


def test_errors(scene, tmp_path):
    image, labels = scene
    small = tmp_path / "small.tif"
    write_labels(small, np.zeros((10, 10), np.uint8), crs=None, transform=Affine.identity(), classes=CLASSES,
                 cog=False)
    with pytest.raises(SegdeepError, match="same grid"):
        write_preview(image, small, tmp_path / "x.png")
    with pytest.raises(SegdeepError, match="cannot be shown"):
        write_preview(image, labels, tmp_path / "x.png", bands=[2])
    with pytest.raises(SegdeepError, match="alpha"):
        write_preview(image, labels, tmp_path / "x.png", alpha=2)
    assert not (tmp_path / "x.png").exists()


def test_cli(scene, tmp_path, capsys):
    from segdeep.cli import main

    image, labels = scene
    out = tmp_path / "cli.png"
    assert main(["preview", str(image), str(labels), "--out", str(out), "--max-size", "64"]) == 0
    assert Image.open(out).size[0] == 64 + 220


def test_real_rgb_scene_with_alpha_band(tmp_path, georef):
    folder = georef / "spacenet_vegas"
    if not (folder / "road_mask_buffered_2m.tif").exists():
        pytest.skip(f"real georeferenced data not found in {folder}")
    classes = [ClassInfo(0, "background", (0, 0, 0)), ClassInfo(1, "road", (255, 255, 0))]
    out = write_preview(folder / "RGB-PanSharpen_AOI_2_Vegas_img0.tif", folder / "road_mask_buffered_2m.tif",
                        tmp_path / "vegas.png", classes=classes, max_size=400, alpha=1.0)
    png = np.asarray(Image.open(out).convert("RGB"))
    assert png.shape[:2] == (400, 620)
    with rasterio.open(folder / "road_mask_buffered_2m.tif") as ds:
        roads = ds.read(1, out_shape=(400, 400)) == 1
    yellow = (png[:, :400] == [255, 255, 0]).all(axis=-1)
    assert roads.mean() > 0.05 and (yellow == roads).mean() > 0.99  # the overlay covers the roads in place
