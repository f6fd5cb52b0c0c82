"""Turning label rasters into things to look at and to use elsewhere, with no torch: polygons
(vectorized block by block, merged across block seams, written to GeoPackage 1.2, GeoJSON or shapefile,
with areas and perimeters in metres in any CRS),
the layer styles a GeoPackage carries (QGIS .qml and SLD, one colour per class) and the preview PNG
of an image with its labels and a legend.
"""

from .gpkg_style import style_qml, style_sld, write_layer_styles
from .measure import has_metric_measures, metric_measures
from .polygonize import BorderMerger, iter_polygons, polygonize_block
from .preview import render_preview, save_png, stretch, write_preview
from .vectorize import FORMATS, format_from_path, vectorize_raster

__all__ = [
    "BorderMerger", "FORMATS", "format_from_path", "has_metric_measures", "iter_polygons", "metric_measures",
    "polygonize_block", "render_preview",
    "save_png", "stretch", "style_qml", "style_sld", "vectorize_raster", "write_layer_styles", "write_preview",
]
