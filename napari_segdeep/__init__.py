"""napari-segdeep: the napari plugin of segdeep (a thin UI; every algorithm lives in ``segdeep``).

Contributions (``napari.yaml``): a GeoTIFF reader, label writers (GeoTIFF, GeoPackage), the
sample scene, and the Segment, Refine, Export, Evaluate and Train widgets.
"""

from __future__ import annotations

__version__ = "0.1.0"
