"""QGIS styles inside a GeoPackage: the ``layer_styles`` table with a categorized renderer per layer.

QGIS looks for a table named ``layer_styles`` (the convention QGIS itself uses when "Save style in
database" is chosen) and applies the row with ``useAsDefault`` when it opens a layer, so polygons
written by segdeep open with the class colours. The table is written with sqlite3 after the layers.
"""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime
from pathlib import Path
from xml.sax.saxutils import escape, quoteattr

from ..classes import ClassInfo

_CREATE = """
CREATE TABLE IF NOT EXISTS layer_styles (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    f_table_catalog TEXT(256), f_table_schema TEXT(256), f_table_name TEXT(256),
    f_geometry_column TEXT(256), styleName TEXT(30), styleQML TEXT, styleSLD TEXT,
    useAsDefault BOOLEAN, description TEXT, owner TEXT(30), ui TEXT(30),
    update_time DATETIME DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ','now'))
)"""


def _rgba(color: tuple[int, int, int], alpha: int = 255) -> str:
    return f"{color[0]},{color[1]},{color[2]},{alpha}"


def _fill_symbol(name: str, color: tuple[int, int, int]) -> str:
    opts = {"color": _rgba(color), "outline_color": "35,35,35,255", "outline_style": "solid",
            "outline_width": "0.26", "outline_width_unit": "MM", "style": "solid"}
    options = "".join(f'<Option name="{k}" type="QString" value="{v}"/>' for k, v in opts.items())
    props = "".join(f'<prop k="{k}" v="{v}"/>' for k, v in opts.items())  # QGIS < 3.26 reads these
    return (f'<symbol type="fill" name="{name}" alpha="1" clip_to_extent="1" force_rhr="0">'
            f'<layer class="SimpleFill" enabled="1" locked="0" pass="0">'
            f'<Option type="Map">{options}</Option>{props}</layer></symbol>')


def style_qml(classes: list[ClassInfo], attribute: str = "class_index") -> str:
    """A QGIS categorized renderer (QML) colouring polygons by ``attribute`` with the class colours."""
    cats = "".join(
        f'<category value="{c.index}" label={quoteattr(c.name)} symbol="{i}" render="true"/>'
        for i, c in enumerate(classes)
    )
    symbols = "".join(_fill_symbol(str(i), c.color) for i, c in enumerate(classes))
    return ("<!DOCTYPE qgis PUBLIC 'http://mrcc.com/qgis.dtd' 'SYSTEM'>"
            '<qgis version="3.28.0" styleCategories="Symbology">'
            f'<renderer-v2 type="categorizedSymbol" attr="{attribute}" enableorderby="0" '
            f'forceraster="0" symbollevels="0"><categories>{cats}</categories>'
            f"<symbols>{symbols}</symbols></renderer-v2></qgis>")


def style_sld(layer: str, classes: list[ClassInfo], attribute: str = "class_index") -> str:
    """The same categories as an OGC SLD 1.1 document (for other GIS software)."""
    rules = "".join(
        f"<se:Rule><se:Name>{escape(c.name)}</se:Name>"
        f"<ogc:Filter><ogc:PropertyIsEqualTo><ogc:PropertyName>{attribute}</ogc:PropertyName>"
        f"<ogc:Literal>{c.index}</ogc:Literal></ogc:PropertyIsEqualTo></ogc:Filter>"
        f'<se:PolygonSymbolizer><se:Fill><se:SvgParameter name="fill">{c.hex}</se:SvgParameter></se:Fill>'
        f'<se:Stroke><se:SvgParameter name="stroke">#232323</se:SvgParameter></se:Stroke>'
        f"</se:PolygonSymbolizer></se:Rule>"
        for c in classes
    )
    return ('<?xml version="1.0" encoding="UTF-8"?>'
            '<StyledLayerDescriptor xmlns="http://www.opengis.net/sld" xmlns:ogc="http://www.opengis.net/ogc" '
            'xmlns:se="http://www.opengis.net/se" version="1.1.0">'
            f"<NamedLayer><se:Name>{escape(layer)}</se:Name><UserStyle><se:Name>{escape(layer)}</se:Name>"
            f"<se:FeatureTypeStyle>{rules}</se:FeatureTypeStyle></UserStyle></NamedLayer>"
            "</StyledLayerDescriptor>")


def write_layer_styles(gpkg: str | Path, layers: dict[str, list[ClassInfo]],
                       attribute: str = "class_index", sync: bool = True) -> None:
    """Add (or replace) one default QGIS style per layer in the GeoPackage ``gpkg``.

    ``layers`` maps a layer name to the classes that may appear in it. ``sync=False`` skips SQLite's
    waits for the disk (for a temporary file that the caller flushes itself).
    """
    con = sqlite3.connect(gpkg)
    try:
        if not sync:
            con.execute("PRAGMA synchronous=OFF")
        geom_cols = dict(con.execute("SELECT table_name, column_name FROM gpkg_geometry_columns"))
        con.execute(_CREATE)
        stamp = datetime.now(UTC)
        now = stamp.strftime("%Y-%m-%dT%H:%M:%S.") + f"{stamp.microsecond // 1000:03d}Z"  # GeoPackage DATETIME
        # Register the table so GDAL/QGIS list it as a non-spatial table, as QGIS itself does.
        con.execute("INSERT OR IGNORE INTO gpkg_contents (table_name, data_type, identifier, last_change) "
                    "VALUES ('layer_styles', 'attributes', 'layer_styles', ?)", (now,))
        for layer, classes in layers.items():
            con.execute("DELETE FROM layer_styles WHERE f_table_name = ?", (layer,))
            con.execute(
                "INSERT INTO layer_styles (f_table_catalog, f_table_schema, f_table_name, f_geometry_column, "
                "styleName, styleQML, styleSLD, useAsDefault, description, owner, ui, update_time) "
                "VALUES ('', '', ?, ?, ?, ?, ?, 1, ?, '', '', ?)",
                (layer, geom_cols.get(layer, "geom"), layer, style_qml(classes, attribute),
                 style_sld(layer, classes, attribute), "segdeep class colours", now),
            )
        con.commit()
    finally:
        con.close()
