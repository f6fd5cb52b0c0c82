"""Files beside a label raster that GIS software reads for class names and colours.

A GeoTIFF has no place for class names that QGIS or GDAL read (segdeep's ``CLASS_<n>`` tags are
ignored by both), so every label GeoTIFF segdeep writes gets two small siblings:

- ``<stem>.qml``: a QGIS style, a paletted renderer with one entry per class (value, colour, name).
  QGIS applies ``<stem>.qml`` by itself when it opens ``<stem>.tif``, so the legend shows the names.
- ``<file>.aux.xml``: GDAL's own sidecar (PAM), which is where GDAL itself puts category names and a
  raster attribute table for a GeoTIFF: ``gdalinfo`` lists the categories, GDAL-based tools and QGIS
  3.30+ read the table (columns Value, Class, Red, Green, Blue, Alpha).

Both are written under temporary names and renamed, after the raster itself.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterable
from pathlib import Path
from xml.sax.saxutils import escape, quoteattr

from ..classes import ClassInfo
from .atomic import temp_path

__all__ = ["label_aux_xml", "label_qml", "write_label_sidecars"]

# GDAL enums (gdal.h): field types and usages of a raster attribute table.
_GFT_INTEGER, _GFT_STRING = 0, 2
_GFU_GENERIC, _GFU_NAME, _GFU_MINMAX = 0, 2, 5
_GFU_RED, _GFU_GREEN, _GFU_BLUE, _GFU_ALPHA = 6, 7, 8, 9


def label_qml(classes: Iterable[ClassInfo], band: int = 1) -> str:
    """A QGIS raster style (QML): paletted renderer on ``band`` with each class's value, colour and
    name; nodata (255) stays transparent."""
    entries = "".join(
        f'<paletteEntry value="{c.index}" color="{c.hex.lower()}" alpha="255" label={quoteattr(c.name)}/>'
        for c in sorted(classes, key=lambda c: c.index)
    )
    return ("<!DOCTYPE qgis PUBLIC 'http://mrcc.com/qgis.dtd' 'SYSTEM'>\n"
            '<qgis version="3.22.0" styleCategories="Symbology">\n'
            "  <pipe>\n"
            f'    <rasterrenderer type="paletted" band="{band}" opacity="1" alphaBand="-1" nodataColor="">\n'
            "      <rasterTransparency/>\n"
            f"      <colorPalette>{entries}</colorPalette>\n"
            "    </rasterrenderer>\n"
            '    <brightnesscontrast brightness="0" contrast="0" gamma="1"/>\n'
            '    <huesaturation saturation="0" grayscaleMode="0" colorizeOn="0" colorizeStrength="100"/>\n'
            '    <rasterresampler maxOversampling="2"/>\n'
            "  </pipe>\n"
            "  <blendMode>0</blendMode>\n"
            "</qgis>\n")


def label_aux_xml(classes: Iterable[ClassInfo], band: int = 1) -> str:
    """GDAL PAM XML for ``band``: category names (entry i = name of value i, "" for values without a
    class) and a thematic raster attribute table with one row per class."""
    classes = sorted(classes, key=lambda c: c.index)
    by_index = {c.index: c.name for c in classes}
    top = max(by_index, default=-1)
    cats = "".join(f"<Category>{escape(by_index.get(i, ''))}</Category>" for i in range(top + 1))
    fields = [("Value", _GFT_INTEGER, _GFU_MINMAX), ("Class", _GFT_STRING, _GFU_NAME),
              ("Red", _GFT_INTEGER, _GFU_RED), ("Green", _GFT_INTEGER, _GFU_GREEN),
              ("Blue", _GFT_INTEGER, _GFU_BLUE), ("Alpha", _GFT_INTEGER, _GFU_ALPHA)]
    defs = "".join(f'<FieldDefn index="{i}"><Name>{n}</Name><Type>{t}</Type><Usage>{u}</Usage></FieldDefn>'
                   for i, (n, t, u) in enumerate(fields))
    rows = "".join(
        f'<Row index="{r}"><F>{c.index}</F><F>{escape(c.name)}</F><F>{c.color[0]}</F><F>{c.color[1]}</F>'
        f"<F>{c.color[2]}</F><F>255</F></Row>"
        for r, c in enumerate(classes)
    )
    return ("<PAMDataset>\n"
            f'  <PAMRasterBand band="{band}">\n'
            f"    <CategoryNames>{cats}</CategoryNames>\n"
            f'    <GDALRasterAttributeTable tableType="thematic">{defs}{rows}</GDALRasterAttributeTable>\n'
            "  </PAMRasterBand>\n"
            "</PAMDataset>\n")


def _write_text(path: Path, text: str) -> None:
    tmp = temp_path(path)
    try:
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


def write_label_sidecars(path: str | os.PathLike, classes: Iterable[ClassInfo]) -> list[Path]:
    """Write ``<stem>.qml`` and ``<file>.aux.xml`` beside the label raster ``path``; returns both paths.

    An existing ``.aux.xml`` is replaced: it described the raster that ``path`` replaced.
    """
    path = Path(path)
    classes = list(classes)
    qml, aux = path.with_suffix(".qml"), path.with_name(path.name + ".aux.xml")
    _write_text(qml, label_qml(classes))
    _write_text(aux, label_aux_xml(classes))
    return [qml, aux]
