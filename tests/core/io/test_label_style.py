"""Class names beside label rasters: the QGIS .qml and GDAL's .aux.xml (category names, RAT)."""

from __future__ import annotations

import json
import shutil
import subprocess
import xml.etree.ElementTree as ET

import numpy as np
import pytest
from segdeep.classes import DUBAI_CLASSES, ClassInfo
from segdeep.io import label_aux_xml, label_qml, write_labels
from segdeep.testing import CRS, TRANSFORM

GAPPY = [ClassInfo(0, "background", (0, 0, 0)), ClassInfo(2, "roof & <tile>", (200, 10, 30)),
         ClassInfo(3, "water", (0, 0, 255))]


def test_qml_is_valid_xml_with_one_entry_per_class_and_the_card_colours():
    root = ET.fromstring(label_qml(DUBAI_CLASSES))
    renderer = root.find("pipe/rasterrenderer")
    assert renderer.get("type") == "paletted" and renderer.get("band") == "1"
    entries = renderer.findall("colorPalette/paletteEntry")
    assert [(int(e.get("value")), e.get("label"), e.get("color")) for e in entries] == [
        (c.index, c.name, c.hex.lower()) for c in DUBAI_CLASSES]


def test_aux_xml_category_names_and_rat_follow_the_values():
    band = ET.fromstring(label_aux_xml(GAPPY)).find("PAMRasterBand")
    assert [c.text or "" for c in band.findall("CategoryNames/Category")] == ["background", "", "roof & <tile>",
                                                                             "water"]
    rows = [[f.text for f in row.findall("F")] for row in band.findall("GDALRasterAttributeTable/Row")]
    assert rows == [["0", "background", "0", "0", "0", "255"], ["2", "roof & <tile>", "200", "10", "30", "255"],
                    ["3", "water", "0", "0", "255", "255"]]


@pytest.mark.parametrize("cog", [True, False])
def test_label_writer_puts_the_sidecars_beside_the_raster(tmp_path, cog):
    labels = np.random.default_rng(0).integers(0, 4, (40, 50)).astype(np.uint8)
    out = write_labels(tmp_path / "labels.tif", labels, crs=CRS, transform=TRANSFORM, classes=GAPPY, cog=cog)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["labels.qml", "labels.tif", "labels.tif.aux.xml"]
    assert ET.parse(out.with_suffix(".qml")).getroot().find("pipe/rasterrenderer") is not None
    # Written again with other classes: the sidecars follow the new raster.
    write_labels(out, labels, crs=CRS, transform=TRANSFORM, classes=DUBAI_CLASSES, cog=cog)
    assert "building" in out.with_suffix(".qml").read_text() and "roof" not in out.with_suffix(".qml").read_text()


def test_gdal_reads_the_category_names_and_the_attribute_table(tmp_path):
    gdalinfo = shutil.which("gdalinfo")
    if gdalinfo is None:
        pytest.skip("gdalinfo (Debian's gdal-bin, installed with QGIS by scripts/system_deps.sh) is not on PATH")
    labels = np.arange(4, dtype=np.uint8).repeat(10).reshape(4, 10)
    out = write_labels(tmp_path / "labels.tif", labels, crs=CRS, transform=TRANSFORM, classes=GAPPY)
    info = json.loads(subprocess.run([gdalinfo, "-json", str(out)], capture_output=True, text=True,
                                     check=True).stdout)
    band = info["bands"][0]
    assert band["categories"] == ["background", "", "roof & <tile>", "water"]
    assert band["colorInterpretation"] == "Palette"
    rat = info["rat"]
    assert [f["name"] for f in rat["fieldDefn"]] == ["Value", "Class", "Red", "Green", "Blue", "Alpha"]
    assert [r["f"][:2] for r in rat["row"]] == [[0, "background"], [2, "roof & <tile>"], [3, "water"]]
