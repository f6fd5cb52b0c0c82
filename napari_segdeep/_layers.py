"""Glue between segdeep's rasters/palettes and napari layers (no algorithm here).

Georeference travels in ``layer.metadata`` as plain values, so it survives copies and saving:
``crs`` (WKT or None), ``transform`` (6 affine coefficients of the layer's pixel grid),
``nodata``, ``band_names``, ``path`` (the source file, when there is one), ``width``/``height``
(of the source raster). A Labels layer made by segdeep also has ``classes`` (list of
``{"index", "name", "color"}``). A layer's data coordinates are the pixels of its source raster; a
layer covering only a region of it is placed with ``translate`` and its ``transform`` is the
region's. Georeferenced layers are placed on the canvas in map coordinates by napari's ``affine``
(:func:`map_affine`), so rasters overlay by location.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from affine import Affine
from segdeep.classes import DUBAI_CLASSES, NODATA_LABEL, ClassInfo, classes_from_list
from segdeep.errors import SegdeepError


def georef_metadata(info, *, path: str | Path | None = None) -> dict:
    """Layer metadata from a :class:`segdeep.io.raster.RasterInfo`."""
    return {
        "path": str(path or info.path),
        "crs": info.crs.to_wkt() if info.crs is not None else None,
        "transform": list(info.transform)[:6],
        "nodata": info.nodata,
        "band_names": list(info.band_names),
        "width": info.width,
        "height": info.height,
        "georeferenced": bool(info.georeferenced),
    }


def crs_transform(metadata: dict) -> tuple[object, Affine]:
    """(rasterio CRS or None, Affine) of a layer's metadata; identity transform when absent."""
    from rasterio.crs import CRS

    crs = metadata.get("crs")
    crs = CRS.from_user_input(crs) if crs else None
    coeffs = metadata.get("transform")
    transform = Affine(*coeffs[:6]) if coeffs else Affine.identity()
    return crs, transform


def region_metadata(metadata: dict, col: int, row: int, width: int, height: int) -> dict:
    """Metadata of a region (pixels col, row, width, height) of a layer with ``metadata``."""
    crs, transform = crs_transform(metadata)
    out = {k: v for k, v in metadata.items() if k in ("path", "crs", "nodata", "georeferenced", "width", "height")}
    out["transform"] = list(transform * Affine.translation(col, row))[:6]
    out["window"] = [int(col), int(row), int(width), int(height)]
    return out


def classes_metadata(classes) -> list[dict]:
    return [c.to_dict() for c in classes]


def layer_classes(layer_or_metadata) -> list[ClassInfo]:
    """The class palette of a Labels layer (from its metadata), else the Dubai palette."""
    meta = getattr(layer_or_metadata, "metadata", layer_or_metadata) or {}
    items = meta.get("classes")
    if items:
        return classes_from_list(list(items), where="layer metadata")
    return list(DUBAI_CLASSES)


def labels_colormap(classes):
    """napari colour map for class labels: class colours; 255 (nodata) is the transparent background,
    so napari's eraser writes nodata rather than class 0."""
    from napari.utils.colormaps import DirectLabelColormap

    colors = {None: (0.0, 0.0, 0.0, 0.0), NODATA_LABEL: (0.0, 0.0, 0.0, 0.0)}
    for c in classes:
        colors[c.index] = tuple(v / 255.0 for v in c.color) + (1.0,)
    return DirectLabelColormap(color_dict=colors, background_value=NODATA_LABEL)


def map_affine(metadata: dict, ndim: int = 2) -> np.ndarray | None:
    """napari ``affine`` that places a layer in map coordinates: world = (-northing, easting) in
    CRS units (north up on screen), from the transform of its source raster (a region layer's
    ``translate``, in source pixels, is applied before it). None without a georeference.
    ``ndim``: the layer's number of axes (leading axes, e.g. classes, stay as they are)."""
    if not metadata.get("georeferenced", metadata.get("crs") is not None) or not metadata.get("transform"):
        return None
    t = Affine(*metadata["transform"][:6])
    if metadata.get("window"):  # the transform is the region's: back to the source raster's corner
        col, row = metadata["window"][:2]
        t = t * Affine.translation(-col, -row)
    out = np.eye(ndim + 1)
    out[-3:, -3:] = [[-t.e, -t.d, -t.f], [t.b, t.a, t.c], [0.0, 0.0, 1.0]]
    return out


def map_position(world) -> tuple[float, float]:
    """(easting, northing) in CRS units of a world position (..., y, x) of layers placed by
    :func:`map_affine`."""
    y, x = tuple(world)[-2:]
    return float(x), -float(y)


def placement(metadata: dict, ndim: int = 2) -> dict:
    """``{"affine": ...}`` for a layer with ``metadata``, or ``{}`` without a georeference."""
    affine = map_affine(metadata, ndim)
    return {} if affine is None else {"affine": affine}


def labels_layer_kwargs(classes, metadata: dict, name: str, *, translate=(0, 0)) -> dict:
    """Keyword arguments of a segdeep Labels layer, placed in map coordinates when georeferenced."""
    meta = dict(metadata)
    meta["classes"] = classes_metadata(classes)
    return {"name": name, "metadata": meta, "colormap": labels_colormap(classes), "opacity": 0.6,
            "translate": tuple(translate), **placement(meta)}


def labels_array(data) -> np.ndarray:
    """A Labels layer's data as uint8 class indices (255 = nodata); SegdeepError for other values."""
    arr = np.asarray(data)
    if arr.ndim != 2:
        raise SegdeepError(f"labels must be a 2-D layer (height x width), this one has shape {arr.shape}")
    if arr.dtype == np.uint8:
        return arr
    if arr.size and (arr.min() < 0 or arr.max() > NODATA_LABEL):
        raise SegdeepError(f"label values must be class indices 0-254 or {NODATA_LABEL} (nodata), "
                           f"found {arr.min()}..{arr.max()}")
    return arr.astype(np.uint8)


def layer_offset(layer) -> tuple[int, int]:
    """(row, col) pixel offset of a layer placed with ``translate`` (whole pixels)."""
    t = tuple(getattr(layer, "translate", (0, 0)))[-2:]
    return int(round(t[0])), int(round(t[1]))


def image_bands(layer) -> np.ndarray:
    """An Image layer's full-resolution pixels as bands x height x width (RGB -> 3 bands)."""
    data = layer.data[0] if getattr(layer, "multiscale", False) else layer.data
    arr = np.asarray(data)
    if getattr(layer, "rgb", False):
        return np.moveaxis(arr[..., :_colour_bands(layer, arr)], -1, 0)
    return arr[None] if arr.ndim == 2 else arr


def _colour_bands(layer, pixels: np.ndarray) -> int:
    """Bands of an RGB(A) layer's pixels that are the raster's (not the reader's nodata alpha)."""
    added = (layer.metadata or {}).get("alpha") == "nodata"
    return pixels.shape[-1] - 1 if added else pixels.shape[-1]


def image_size(layer) -> tuple[int, int]:
    """(height, width) in pixels of an Image layer's full resolution."""
    data = layer.data[0] if getattr(layer, "multiscale", False) else layer.data
    shape = tuple(data.shape)
    return (shape[-3], shape[-2]) if getattr(layer, "rgb", False) else (shape[-2], shape[-1])


def image_region(layer, col: int, row: int, width: int, height: int) -> np.ndarray:
    """Pixels (bands x height x width) of a window of an Image layer's full resolution; only that
    window is read from a lazy (multiscale) layer."""
    data = layer.data[0] if getattr(layer, "multiscale", False) else layer.data
    rows, cols = slice(row, row + height), slice(col, col + width)
    if getattr(layer, "rgb", False):
        pixels = np.asarray(data[rows, cols])
        return np.moveaxis(pixels[..., :_colour_bands(layer, pixels)], -1, 0)
    if data.ndim == 2:
        return np.asarray(data[rows, cols])[None]
    return np.asarray(data[:, rows, cols])


def source_file(layer) -> str | None:
    """The raster file an Image layer was read from, if it still matches the layer's size."""
    path = (layer.metadata or {}).get("path")
    if not path or not Path(path).is_file():
        return None
    if (layer.metadata.get("height"), layer.metadata.get("width")) != image_size(layer):
        return None
    return str(path)


def write_layer_geotiff(layer, path: str | Path, window: tuple[int, int, int, int] | None = None) -> Path:
    """Write an Image layer (or a window col,row,width,height of it) as a GeoTIFF with the layer's
    georeference, so file-based segdeep functions can run on in-memory layers."""
    import rasterio

    h, w = image_size(layer)
    col, row, width, height = window or (0, 0, w, h)
    data = image_region(layer, col, row, width, height)
    crs, transform = crs_transform(layer.metadata or {})
    transform = transform * Affine.translation(col, row)
    profile = dict(driver="GTiff", width=data.shape[2], height=data.shape[1], count=data.shape[0],
                   dtype=data.dtype, tiled=True, blockxsize=256, blockysize=256, compress="deflate")
    if crs is not None:
        profile.update(crs=crs, transform=transform)
    nodata = (layer.metadata or {}).get("nodata")
    if nodata is not None:
        profile["nodata"] = nodata
    with rasterio.open(path, "w", **profile) as ds:
        ds.write(data)
    return Path(path)


def canvas_size(viewer) -> tuple[int, int]:
    """(height, width) of the canvas in screen pixels (800 x 800 when unknown)."""
    import warnings

    with warnings.catch_warnings():  # napari has no public canvas size yet (0.9: FutureWarning)
        warnings.simplefilter("ignore", FutureWarning)
        size = getattr(viewer, "_canvas_size", None) or (800, 800)
    return int(size[-2]), int(size[-1])


def visible_window(viewer, layer) -> tuple[int, int, int, int]:
    """The part of an Image layer shown on the canvas: (col, row, width, height) in its pixels."""

    h, w = image_size(layer)
    canvas_h, canvas_w = canvas_size(viewer)
    camera = viewer.scene.camera if hasattr(viewer, "scene") else viewer.camera  # napari >= 0.9 / older
    zoom = float(camera.zoom) or 1.0
    cy, cx = tuple(camera.center)[-2:]
    lead = tuple(viewer.dims.point)[:-2]
    corners = [layer.world_to_data((*lead, cy + dy * canvas_h / 2 / zoom, cx + dx * canvas_w / 2 / zoom))[-2:]
               for dy in (-1, 1) for dx in (-1, 1)]  # world (map) -> the layer's pixels, whatever its placement
    rows, cols = [c[0] for c in corners], [c[1] for c in corners]
    top, bottom, left, right = min(rows), max(rows), min(cols), max(cols)
    r0, r1 = max(0, int(np.floor(top))), min(h, int(np.ceil(bottom)))
    c0, c1 = max(0, int(np.floor(left))), min(w, int(np.ceil(right)))
    if r1 <= r0 or c1 <= c0:
        raise SegdeepError(f"layer {layer.name!r} is not on the canvas; pan or zoom to it, or untick "
                           "'only the visible region'")
    return c0, r0, c1 - c0, r1 - r0


def linked_image(labels_layer) -> str | None:
    """Name of the image layer a Labels layer was made from (``image_layer`` in its metadata)."""
    if labels_layer is None:
        return None
    return (getattr(labels_layer, "metadata", None) or {}).get("image_layer")


def _own_transform(layer) -> Affine | None:
    """The transform of a layer's own pixel grid (None when it has no georeference)."""
    meta = layer.metadata or {}
    if not meta.get("georeferenced", meta.get("crs") is not None) or not meta.get("transform"):
        return None
    transform = Affine(*meta["transform"][:6])
    if "window" not in meta:  # the source raster's transform; the layer is placed by translate
        row, col = layer_offset(layer)
        transform = transform * Affine.translation(col, row)
    return transform


def check_pair(image_layer, labels_layer, open_layers=()) -> tuple[int, int]:
    """Refuse labels that do not belong to ``image_layer``; returns their (row, col) offset in it.

    Refused, with one line naming both layers: labels made from another image layer that is still
    open (``open_layers``: the names of the viewer's layers), labels not inside the image, georeferenced labels on an image without georeference (or
    the other way), another CRS, or another grid (pixel size or position).
    """
    lname, iname = labels_layer.name, image_layer.name
    row, col = layer_offset(labels_layer)
    h, w = np.asarray(labels_layer.data).shape[-2:]
    ih, iw = image_size(image_layer)
    if row < 0 or col < 0 or row + h > ih or col + w > iw:
        raise SegdeepError(f"labels {lname!r} ({w} x {h} px at col {col}, row {row}) are not inside "
                           f"image {iname!r} ({iw} x {ih} px)")
    lt, it = _own_transform(labels_layer), _own_transform(image_layer)
    if (lt is None) != (it is None):
        which = (lname, iname) if lt is not None else (iname, lname)
        raise SegdeepError(f"{which[0]!r} has a georeference and {which[1]!r} has none: they are not the same "
                           "place; choose the image these labels were made from")
    if lt is not None:
        lcrs, icrs = crs_transform(labels_layer.metadata)[0], crs_transform(image_layer.metadata)[0]
        if lcrs != icrs:
            raise SegdeepError(f"labels {lname!r} are in {lcrs.to_string() if lcrs else 'no CRS'}, image {iname!r} "
                               f"in {icrs.to_string() if icrs else 'no CRS'}; reproject one of them first")
        expected = it * Affine.translation(col, row)
        if not lt.almost_equals(expected, precision=1e-6 * max(abs(it.a), abs(it.e), 1e-12)):
            raise SegdeepError(f"labels {lname!r} (origin {lt.c:.2f}, {lt.f:.2f}; pixel {lt.a:g} x {-lt.e:g}) are "
                               f"not on the grid of image {iname!r} (origin {expected.c:.2f}, {expected.f:.2f}; "
                               f"pixel {it.a:g} x {-it.e:g})")
    linked = linked_image(labels_layer)
    if linked and linked != iname and linked in set(open_layers):
        raise SegdeepError(f"labels {lname!r} were made from image {linked!r}, not {iname!r}; choose {linked!r}")
    return row, col
