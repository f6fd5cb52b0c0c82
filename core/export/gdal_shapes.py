"""GDAL's polygonizer (``GDALPolygonize``, what :func:`rasterio.features.shapes` runs) returning WKB.

:func:`rasterio.features.shapes` turns every polygon GDAL makes into a GeoJSON-like dict of Python
tuples, one per vertex, which costs as much CPU as polygonizing. Here the same GDAL function, in
the same GDAL library that rasterio loaded, is called through :mod:`ctypes` with the same inputs
(in-memory raster and mask, 4-connectivity) and each polygon is exported as WKB, so the polygons are
identical (the tests compare both paths) for about 30 % less CPU; ctypes also releases the GIL
during each GDAL call, so threads polygonize blocks in parallel. When that library cannot be found
or a call fails, :func:`polygonize_wkb` returns None and the caller uses rasterio.
"""

from __future__ import annotations

import ctypes
import functools
import glob
import sys
from pathlib import Path

import numpy as np

_GDT_BYTE, _GF_WRITE, _WKB_POLYGON, _OFT_INTEGER, _WKB_NDR = 1, 1, 3, 0, 1


def _loaded_gdal_path() -> str | None:
    """The libgdal that rasterio's extension modules loaded (so that drivers and settings are shared)."""
    import rasterio._base  # noqa: F401 - loads libgdal

    if sys.platform.startswith("linux"):
        with open("/proc/self/maps") as maps:
            for line in maps:
                name = line.split()[-1]
                if "/libgdal" in name and ".so" in name:
                    return name
        return None
    import rasterio

    root = Path(rasterio.__file__).parent
    candidates = glob.glob(str(root / ".dylibs" / "libgdal*.dylib")) + glob.glob(str(root.parent / "rasterio.libs" / "gdal*.dll"))
    return candidates[0] if len(candidates) == 1 else None


@functools.cache
def _gdal():
    """ctypes bindings of the few GDAL/OGR C functions needed, or None."""
    try:
        path = _loaded_gdal_path()
        if path is None:
            return None
        lib = ctypes.CDLL(path)
    except OSError:
        return None
    vp, ci, cs = ctypes.c_void_p, ctypes.c_int, ctypes.c_char_p

    def fn(name: str, restype, *argtypes):
        f = getattr(lib, name)
        f.restype, f.argtypes = restype, list(argtypes)
        return f

    try:
        api = {
            "driver": fn("GDALGetDriverByName", vp, cs),
            "all_register": fn("GDALAllRegister", None),
            "create": fn("GDALCreate", vp, vp, cs, ci, ci, ci, ci, vp),
            "set_geotransform": fn("GDALSetGeoTransform", ci, vp, ctypes.POINTER(ctypes.c_double)),
            "band": fn("GDALGetRasterBand", vp, vp, ci),
            "raster_io": fn("GDALRasterIO", ci, vp, ci, ci, ci, ci, ci, vp, ci, ci, ci, ci, ci),
            "create_layer": fn("GDALDatasetCreateLayer", vp, vp, cs, vp, ci, vp),
            "field": fn("OGR_Fld_Create", vp, cs, ci),
            "field_destroy": fn("OGR_Fld_Destroy", None, vp),
            "create_field": fn("OGR_L_CreateField", ci, vp, vp, ci),
            "polygonize": fn("GDALPolygonize", ci, vp, vp, vp, ci, vp, vp, vp),
            "reset": fn("OGR_L_ResetReading", None, vp),
            "next": fn("OGR_L_GetNextFeature", vp, vp),
            "value": fn("OGR_F_GetFieldAsInteger", ci, vp, ci),
            "geometry": fn("OGR_F_GetGeometryRef", vp, vp),
            "wkb_size": fn("OGR_G_WkbSize", ci, vp),
            "to_wkb": fn("OGR_G_ExportToWkb", ci, vp, ci, cs),
            "feature_destroy": fn("OGR_F_Destroy", None, vp),
            "close": fn("GDALClose", ci, vp),
        }
    except AttributeError:
        return None
    return api


def _mem_band(api, array: np.ndarray, geotransform, datasets: list):
    h, w = array.shape
    driver = api["driver"](b"MEM")
    ds = api["create"](driver, b"", w, h, 1, _GDT_BYTE, None) if driver else None
    if not ds:
        raise OSError("GDAL MEM raster")
    datasets.append(ds)
    api["set_geotransform"](ds, (ctypes.c_double * 6)(*geotransform))
    band = api["band"](ds, 1)
    data = np.ascontiguousarray(array, dtype=np.uint8)
    if api["raster_io"](band, _GF_WRITE, 0, 0, w, h, data.ctypes.data, w, h, _GDT_BYTE, 0, 0) != 0:
        raise OSError("GDALRasterIO")
    return band


def polygonize_wkb(labels: np.ndarray, mask: np.ndarray | None, col_off: int,
                   row_off: int) -> tuple[list[bytes], np.ndarray] | None:
    """Polygons of a uint8 block (4-connectivity, ``mask`` True = may become a polygon, pixel
    coordinates offset by ``col_off``/``row_off``) as ``(WKB list, values uint8)``, in GDAL's order;
    None when GDAL cannot be called this way."""
    api = _gdal()
    if api is None or labels.dtype != np.uint8:
        return None
    datasets: list = []
    try:
        if not api["driver"](b"MEM"):
            api["all_register"]()
        geotransform = (float(col_off), 1.0, 0.0, float(row_off), 0.0, 1.0)
        band = _mem_band(api, labels, geotransform, datasets)
        mask_band = _mem_band(api, mask.view(np.uint8), geotransform, datasets) if mask is not None else None
        driver = api["driver"](b"Memory") or api["driver"](b"MEM")
        vector = api["create"](driver, b"", 0, 0, 0, 0, None) if driver else None
        if not vector:
            return None
        datasets.append(vector)
        layer = api["create_layer"](vector, b"polygons", None, _WKB_POLYGON, None)
        field = api["field"](b"value", _OFT_INTEGER)
        ok = layer and api["create_field"](layer, field, 1) == 0
        api["field_destroy"](field)
        if not ok or api["polygonize"](band, mask_band, layer, 0, None, None, None) != 0:
            return None
        api["reset"](layer)
        wkbs, values = [], []
        next_feature, value, geometry = api["next"], api["value"], api["geometry"]
        wkb_size, to_wkb, destroy, string_at = api["wkb_size"], api["to_wkb"], api["feature_destroy"], ctypes.string_at
        buffer = ctypes.create_string_buffer(1 << 16)  # reused; grown for larger polygons
        while feature := next_feature(layer):
            values.append(value(feature, 0))
            geom = geometry(feature)
            if not geom:
                destroy(feature)
                return None
            size = wkb_size(geom)
            if size > len(buffer):
                buffer = ctypes.create_string_buffer(2 * size)
            to_wkb(geom, _WKB_NDR, buffer)
            wkbs.append(string_at(buffer, size))
            destroy(feature)
        return wkbs, np.array(values, dtype=np.uint8)
    except OSError:
        return None
    finally:
        for ds in reversed(datasets):
            api["close"](ds)
