"""Reading and writing geodata, with no torch: rasters (windows, CRS, transform, nodata, label
GeoTIFFs with their palette, Cloud-Optimized copies, atomic writes), label sources (a label raster,
a colour-coded mask or a vector file, read window by window) and the rasterizing of vector
references onto a raster's grid. Every stage above reads and writes through here.
"""

from .atomic import temp_path, write_json_atomic
from .label_sources import LabelSource, open_labels
from .label_style import label_aux_xml, label_qml, write_label_sidecars
from .paths import LOCK_NAME, FolderLock, check_outputs, same_file
from .raster import (
    GTIFF_BLOCK,
    LabelWriter,
    RasterInfo,
    check_bands,
    finite_pixels,
    label_profile,
    open_dataset,
    open_raster,
    read_classes_tag,
    read_labels,
    read_pixels,
    read_window,
    tag_classes,
    to_cog,
    write_labels,
)
from .rasterize import VECTOR_SUFFIXES, VectorReference, is_vector_path, rasterize_reference

__all__ = [
    "GTIFF_BLOCK", "LOCK_NAME", "FolderLock", "LabelSource", "LabelWriter", "RasterInfo", "VECTOR_SUFFIXES",
    "VectorReference", "check_bands", "check_outputs", "finite_pixels", "is_vector_path", "label_aux_xml",
    "label_profile", "label_qml", "open_dataset", "open_labels", "open_raster", "rasterize_reference",
    "read_classes_tag", "read_labels", "read_pixels", "read_window", "same_file", "tag_classes", "temp_path",
    "to_cog", "write_json_atomic", "write_label_sidecars", "write_labels",
]
