"""napari writers for segdeep Labels layers: a label GeoTIFF and GeoPackage polygons.

Both keep the georeference found in the layer's metadata (see :mod:`napari_segdeep._layers`) and
its class names and colours; the writing itself is segdeep's (temporary name, then rename).
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from affine import Affine
from segdeep.export import vectorize_raster
from segdeep.io import write_labels

from ._layers import crs_transform, labels_array, layer_classes


def layer_georef(meta: dict) -> tuple[object, Affine]:
    """CRS and transform of a layer's own pixel grid (a region layer is shifted by its translate)."""
    metadata = meta.get("metadata") or {}
    crs, transform = crs_transform(metadata)
    if "window" not in metadata:  # transform is the source raster's; the layer may be placed by translate
        translate = meta.get("translate")
        row, col = (int(round(v)) for v in tuple(translate if translate is not None else (0, 0))[-2:])
        if row or col:
            transform = transform * Affine.translation(col, row)
    return crs, transform


def write_labels_geotiff(path: str, data, meta: dict) -> list[str]:
    """Labels layer -> label GeoTIFF (uint8, nodata 255, colour table, class names, COG)."""
    labels = labels_array(data)
    crs, transform = layer_georef(meta)
    classes = layer_classes(meta.get("metadata") or {})
    out = write_labels(path, labels, crs=crs, transform=transform, classes=classes)
    return [str(out)]


def write_labels_gpkg(path: str, data, meta: dict) -> list[str]:
    """Labels layer -> GeoPackage polygons with class attributes and a QGIS style."""
    labels = labels_array(data)
    crs, transform = layer_georef(meta)
    classes = layer_classes(meta.get("metadata") or {})
    with tempfile.TemporaryDirectory(prefix="segdeep-napari-") as tmp:
        raster = write_labels(Path(tmp) / "labels.tif", labels, crs=crs, transform=transform,
                              classes=classes, cog=False)
        summary = vectorize_raster(raster, path, classes=classes)
    return [str(f) for f in summary["files"]]
