"""Label raster -> polygons for GIS (GeoPackage, GeoJSON, Shapefile), streamed without seams.

The polygons come block by block from :func:`segdeep.export.polygonize.iter_polygons` in global pixel
coordinates, with regions cut by block edges merged (so the result is the same for any block
size). Here they go to CRS coordinates (the raster's transform), get simplified / filtered and
their attributes, and are written with pyogrio in batches into a temporary folder; files get their
final names only when complete. A GeoPackage also gets a QGIS style per layer.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import time
import uuid
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import shapely
from affine import Affine

from ..classes import DUBAI_CLASSES, NODATA_LABEL, ClassInfo
from ..errors import SegdeepError
from ..io.paths import check_outputs
from ..io.raster import open_raster, read_classes_tag
from .gpkg_style import write_layer_styles
from .measure import has_metric_measures, metric_measures
from .polygonize import BorderMerger, _iter_batches, iter_polygons, polygonize_block

__all__ = ["vectorize_raster", "iter_polygons", "polygonize_block", "BorderMerger", "format_from_path", "FORMATS",
           "vector_outputs"]

FORMATS = {"gpkg": ("GPKG", ".gpkg"), "geojson": ("GeoJSON", ".geojson"), "shp": ("ESRI Shapefile", ".shp")}
_EXTENSIONS = {".gpkg": "gpkg", ".geojson": "geojson", ".json": "geojson", ".shp": "shp"}
#: GeoPackage versions GDAL writes; 1.2 is the default (GDAL < 3.7 warns on opening 1.4 files).
GPKG_VERSIONS = ("1.2", "1.3", "1.4")
#: Features buffered per layer before a write to disk.
_FLUSH_FEATURES = 5_000


def format_from_path(path: str | Path) -> str:
    """The vector format implied by a file extension (``.gpkg``, ``.geojson``/``.json``, ``.shp``)."""
    if Path(path).is_dir():
        raise SegdeepError(f"{path}: is a folder; give a vector file to write, e.g. {Path(path) / 'polygons.gpkg'}")
    fmt = _EXTENSIONS.get(Path(path).suffix.lower())
    if fmt is None:
        suffix = Path(path).suffix
        raise SegdeepError(f"{path}: unknown vector format {suffix or '(no file extension)'}; use a .gpkg, "
                           ".geojson or .shp file name or give the format")
    return fmt


_SHAPEFILE_PARTS = (".shp", ".shx", ".dbf", ".prj", ".cpg", ".qix")


def vector_outputs(out_path: str | Path, fmt: str, *, layer_per_class: bool = False,
                   classes: Sequence[ClassInfo] = ()) -> list[Path]:
    """The files :func:`vectorize_raster` may write for ``out_path`` (format ``fmt``): the file
    itself, a Shapefile's companions, and with ``layer_per_class`` one file per class of ``classes``
    (GeoJSON, Shapefile). For checking, before any work, that none of them is an input."""
    out_path = Path(out_path)
    stems = [out_path]
    if layer_per_class and fmt != "gpkg":
        stems += [out_path.with_name(f"{out_path.stem}_{_safe_name(c.name)}{out_path.suffix}") for c in classes]
    if fmt == "shp":
        return [p.with_suffix(s) for p in stems for s in _SHAPEFILE_PARTS]
    return stems


# --------------------------------------------------------------------------------------------------
# Attributes and writing


def _safe_name(name: str) -> str:
    return re.sub(r"[^0-9A-Za-z_-]+", "_", name).strip("_") or "class"


def _apply_transform(geoms: np.ndarray, transform: Affine) -> np.ndarray:
    if transform == Affine.identity():
        return geoms
    a, b, c, d, e, f = transform[:6]

    def affine(xy: np.ndarray) -> np.ndarray:
        x, y = xy[:, 0], xy[:, 1]
        return np.column_stack([a * x + b * y + c, d * x + e * y + f])

    return shapely.transform(geoms, affine)


@contextlib.contextmanager
def _no_sqlite_sync():
    """GeoPackage appends without SQLite's fsync per transaction (``OGR_SQLITE_SYNCHRONOUS=OFF``):
    each append to a growing file otherwise waits for the disk (0.1-0.2 s each). Safe here: the file
    is a temporary one, flushed once and renamed when complete (:func:`_move_outputs`)."""
    import pyogrio

    before = pyogrio.get_gdal_config_option("OGR_SQLITE_SYNCHRONOUS")
    pyogrio.set_gdal_config_options({"OGR_SQLITE_SYNCHRONOUS": "OFF"})
    try:
        yield
    finally:
        pyogrio.set_gdal_config_options({"OGR_SQLITE_SYNCHRONOUS": before})


class _Sink:
    """Buffered writer of polygon layers through pyogrio, into a temporary folder."""

    def __init__(self, out_path: Path, fmt: str, tmpdir: Path, crs_wkt: str | None, fields: list[str],
                 per_class: bool, gpkg_version: str = "1.2") -> None:
        self.driver, self.suffix = FORMATS[fmt]
        self.gpkg_version = gpkg_version
        self.fmt, self.out_path, self.tmpdir, self.crs_wkt = fmt, out_path, tmpdir, crs_wkt
        self.fields, self.per_class = fields, per_class
        self.buffers: dict[str, list[tuple[np.ndarray, list[np.ndarray]]]] = {}
        self.counts: dict[str, int] = {}

    def file_for(self, layer: str) -> Path:
        """Final path of a layer's file (GeoPackage: one file; others: one file per layer)."""
        if self.fmt == "gpkg" or not self.per_class:
            return self.out_path
        return self.out_path.with_name(f"{self.out_path.stem}_{layer}{self.suffix}")

    def add(self, layer: str, wkb: np.ndarray, columns: list[np.ndarray]) -> None:
        buf = self.buffers.setdefault(layer, [])
        buf.append((wkb, columns))
        if sum(len(w) for w, _ in buf) >= _FLUSH_FEATURES:
            self.flush(layer)

    def flush(self, layer: str) -> None:
        import pyogrio.raw

        buf = self.buffers.get(layer) or []
        if not buf and layer in self.counts:
            return
        if buf:
            wkb = np.concatenate([w for w, _ in buf])
            cols = [np.concatenate([c[i] for _, c in buf]) for i in range(len(self.fields))]
        else:  # an empty layer, so that every class has its layer
            kinds = {"class_index": np.int32, "class_idx": np.int32, "class_name": object}
            wkb, cols = np.empty(0, dtype=object), [np.empty(0, dtype=kinds.get(f, np.float64)) for f in self.fields]
        target = self.tmpdir / self.file_for(layer).name
        with warnings.catch_warnings(), _no_sqlite_sync():
            warnings.simplefilter("ignore", RuntimeWarning)  # GDAL notes (field name laundering)
            warnings.simplefilter("ignore", UserWarning)  # "no crs" for rasters without georeference
            options = {"VERSION": self.gpkg_version} if self.fmt == "gpkg" and not target.exists() else None
            pyogrio.raw.write(target, wkb, cols, self.fields, layer=layer, driver=self.driver,
                              geometry_type="Polygon", crs=self.crs_wkt, append=layer in self.counts,
                              dataset_options=options)
        self.counts[layer] = self.counts.get(layer, 0) + len(wkb)
        self.buffers[layer] = []

    def close(self, layers: list[str]) -> list[Path]:
        """Flush everything; return the final paths of the files written."""
        for layer in layers:
            self.flush(layer)
        self.verify(layers)
        return sorted({self.file_for(layer) for layer in layers})

    def verify(self, layers: list[str]) -> None:
        """Read back each layer's feature count: GDAL's GeoJSON writer can fail on a full disk without
        an error and leave an empty file, which must not get a final name."""
        import pyogrio

        for layer in layers:
            target = self.tmpdir / self.file_for(layer).name
            try:
                found = pyogrio.read_info(target, layer=layer if self.fmt == "gpkg" else None)["features"]
            except Exception as exc:  # noqa: BLE001 - any failure to read back means a bad file
                found, why = None, " ".join(str(exc).split())[:120]
            else:
                why = f"{found} of {self.counts.get(layer, 0)} polygons written"
            if found != self.counts.get(layer, 0):
                st = os.statvfs(self.tmpdir)
                full = "the disk is full; " if st.f_bavail * st.f_frsize < (1 << 20) else ""
                raise SegdeepError(f"{self.out_path}: writing layer {layer!r} failed ({why}); {full}"
                                   f"free some space or choose another folder")


def _resolve_exclude(exclude: Sequence[int | str], classes: list[ClassInfo]) -> list[int]:
    by_name = {c.name.lower(): c.index for c in classes}
    out = []
    for item in exclude:
        key = str(item).strip()
        if key.lower() in by_name:
            out.append(by_name[key.lower()])
        elif key.isdigit() and 0 <= int(key) < NODATA_LABEL:
            out.append(int(key))
        else:
            names = ", ".join(f"{c.index}={c.name}" for c in classes)
            raise SegdeepError(f"exclude: {item!r} is not a class; use a class name or index ({names})")
    return out


class _Attributes:
    """Pixel-coordinate polygons -> ``(class values, WKB, attribute columns, number dropped)``: CRS
    coordinates, simplification, areas, minimum-area filter, orientation, perimeter, names. Picklable
    and self-contained, so the threads (or cluster workers) that polygonize blocks apply it to block
    interiors and the calling thread to merged border regions: the same steps whoever runs them, so
    the same output for any ``workers``."""

    def __init__(self, transform: Affine, simplify: float, min_area: float, crs,
                 names: dict[int, str]) -> None:
        self.transform, self.simplify, self.min_area, self.crs = transform, simplify, min_area, crs
        self.names = np.array([names.get(v, f"class {v}") for v in range(256)], dtype=object)  # by value
        self.pixel_area = abs(transform.a * transform.e - transform.b * transform.d)

    def __call__(self, cls: np.ndarray, px: np.ndarray) -> tuple[np.ndarray, np.ndarray, list[np.ndarray], int]:
        geoms = _apply_transform(px, self.transform)
        if self.simplify > 0:
            geoms = shapely.simplify(geoms, self.simplify, preserve_topology=True)
            if not shapely.is_valid(geoms).all():  # rare; keep the polygonal parts of the repair
                parts, index = shapely.get_parts(shapely.make_valid(geoms), return_index=True)
                parts, sub = shapely.get_parts(parts, return_index=True)  # multipolygons in a collection
                index = index[sub]
                polygonal = shapely.get_type_id(parts) == shapely.GeometryType.POLYGON
                geoms, cls = parts[polygonal], cls[index[polygonal]]
            area = shapely.area(geoms)
        else:
            area = shapely.area(px) * self.pixel_area  # exact: integer pixel counts
        geoms = shapely.orient_polygons(geoms)  # exterior counter-clockwise, holes clockwise
        metric = metric_measures(geoms, self.crs, area)
        area_m2 = metric[0] if metric is not None else None
        keep = ((area_m2 if area_m2 is not None else area) >= self.min_area) & ~shapely.is_empty(geoms)
        dropped = int((~keep).sum())
        cls, geoms, area = cls[keep], geoms[keep], area[keep]
        perimeter = shapely.length(geoms)
        names = self.names[cls]
        columns = [cls.astype(np.int32), names, area]
        if metric is not None:  # area_m2, perimeter, perimeter_m
            columns += [area_m2[keep], perimeter, metric[1][keep]]
        else:
            columns += [perimeter]
        return cls, shapely.to_wkb(geoms), columns, dropped


def _fsync(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # a folder on Windows
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _move_outputs(tmpdir: Path, files: list[Path]) -> None:
    """Give the complete files their final names, each flushed to disk first (they were written
    without waiting for the disk), so that a final name never holds a partial file."""
    for final in files:
        if final.suffix == ".shp":  # a shapefile is several files with the same stem
            for part in tmpdir.glob(f"{final.stem}.*"):
                _fsync(part)
                os.replace(part, final.with_suffix(part.suffix))
        else:
            _fsync(tmpdir / final.name)
            os.replace(tmpdir / final.name, final)
    if files:
        _fsync(files[0].parent)


def vectorize_raster(
    labels_path: str | Path,
    out_path: str | Path,
    *,
    format: str | None = None,  # noqa: A002 - the user's word
    layer_per_class: bool = False,
    simplify: float = 0.0,
    min_area: float = 0.0,
    classes: Sequence[ClassInfo] | None = None,
    exclude: Sequence[int | str] = (),
    block_size: int = 2048,
    workers: int | str = "auto",
    map_blocks: Callable | None = None,
    progress: Callable[[int, int], None] | None = None,
    gpkg_version: str = "1.2",
) -> dict:
    """Turn a label raster into polygons with class attributes, streaming block by block.

    Args:
        labels_path: single-band label GeoTIFF (class indices, 255 = nodata).
        out_path: ``.gpkg``, ``.geojson`` or ``.shp``. With ``layer_per_class``, a GeoPackage gets one
            layer per class; GeoJSON and Shapefile get one file per class, ``<stem>_<class><suffix>``.
        format: ``"gpkg"``, ``"geojson"`` or ``"shp"``; default from the extension of ``out_path``.
        simplify: topology-preserving simplification tolerance in CRS units (metres for metric
            CRSs); 0 keeps the exact pixel outlines.
        min_area: drop polygons smaller than this, in m^2 when the area in metres is known (projected
            or geographic CRS, geodesic for the latter), else in CRS units^2 (pixels^2 without georeference).
        classes: palette for names and colours; default the one stored in the label raster, else Dubai's.
        exclude: class names or indices that get no polygons (nodata never does).
        block_size: pixels per block side; memory grows with its square, the result does not change.
        workers: threads polygonizing blocks in parallel (GDAL's polygonizer, reading and shapely
            run outside Python's GIL, so they use several cores); ``"auto"`` (default) = one per
            usable CPU core, 1 = all in the calling thread. The result is the same for any value.
        progress: called as ``progress(blocks_done, blocks_total)``.
        gpkg_version: GeoPackage version written, ``"1.2"`` (default), ``"1.3"`` or ``"1.4"``.

    Every polygon has ``class_index`` (``class_idx`` in a Shapefile), ``class_name``, ``area`` (CRS
    units^2) and ``perimeter`` (CRS units); with a projected or geographic CRS also ``area_m2`` and
    ``perimeter_m`` (``perim_m`` in a Shapefile) in metres, geodesic on the ellipsoid for a
    geographic CRS (:mod:`segdeep.export.measure`). A GeoPackage is version 1.2 (what GDAL before 3.7
    and QGIS 3.22-3.28 open without a warning) unless ``gpkg_version`` says otherwise. Geometries
    are valid, holes are kept, the CRS is the raster's. The GeoPackage also
    gets a QGIS style per layer (``layer_styles``). Files appear under their final names only when
    complete. Returns a summary dict (files, layers, polygon counts and areas per class, seconds).
    """
    t0 = time.perf_counter()
    info = open_raster(labels_path, warn=False)
    if info.count != 1:
        raise SegdeepError(f"{labels_path}: a label raster has 1 band, this one has {info.count}")
    out_path = Path(out_path)
    fmt = (format or format_from_path(out_path)).lower()
    if fmt not in FORMATS:
        raise SegdeepError(f"format {format!r} is not supported; use gpkg, geojson or shp")
    if fmt == "gpkg" and gpkg_version not in GPKG_VERSIONS:
        raise SegdeepError(f"{out_path}: GeoPackage version {gpkg_version!r} is not supported; use one of "
                           f"{', '.join(GPKG_VERSIONS)}")
    if simplify < 0 or min_area < 0:
        raise SegdeepError(f"simplify ({simplify}) and min_area ({min_area}) must be >= 0")
    if not out_path.parent.is_dir():
        raise SegdeepError(f"{out_path.parent}: output folder does not exist")
    classes = list(classes) if classes else (read_classes_tag(labels_path) or list(DUBAI_CLASSES))
    check_outputs([("label raster", labels_path)],
                  [("output", p) for p in vector_outputs(out_path, fmt, layer_per_class=layer_per_class,
                                                         classes=classes)])
    by_index = {c.index: c for c in classes}
    excluded = _resolve_exclude(exclude, classes)
    crs, transform = info.crs, info.transform
    metric = has_metric_measures(crs)
    fields = ["class_idx" if fmt == "shp" else "class_index", "class_name", "area"]
    fields += ["area_m2", "perimeter", "perim_m" if fmt == "shp" else "perimeter_m"] if metric else ["perimeter"]
    single_layer = _safe_name(out_path.stem)

    def class_of(v: int) -> ClassInfo:
        return by_index.get(v) or ClassInfo(v, f"class {v}", (128, 128, 128))

    def layer_of(v: int) -> str:
        return _safe_name(class_of(v).name) if layer_per_class else single_layer

    tmpdir = out_path.parent / f".{out_path.name}.{uuid.uuid4().hex[:8]}.tmp"
    try:
        tmpdir.mkdir()
    except OSError as exc:
        raise SegdeepError(f"{out_path.parent}: cannot write there ({exc.strerror or exc})") from None
    stats: dict = {}
    per_class: dict[int, dict] = {}
    dropped = 0
    finish = _Attributes(transform, simplify, min_area, crs,
                         {c.index: c.name for c in classes})
    try:
        sink = _Sink(out_path, fmt, tmpdir, crs.to_wkt() if crs else None, fields, layer_per_class, gpkg_version)
        for batch in _iter_batches(labels_path, block_size=block_size, exclude=excluded, workers=workers,
                                   progress=progress, stats=stats, map_blocks=map_blocks, finish=finish):
            cls, wkb, columns, n_dropped = batch
            dropped += n_dropped
            area, area_m2 = columns[2], (columns[3] if metric else None)
            for v in np.unique(cls).tolist():
                sel = cls == v
                stat = per_class.setdefault(v, {"polygons": 0, "area": 0.0})
                stat["polygons"] += int(sel.sum())
                stat["area"] += float(area[sel].sum())
                if area_m2 is not None:
                    stat["area_m2"] = stat.get("area_m2", 0.0) + float(area_m2[sel].sum())
                sink.add(layer_of(v), wkb[sel], [c[sel] for c in columns])
        if layer_per_class:
            values = sorted({c.index for c in classes if c.index not in excluded} | set(per_class))
            layers = {layer_of(v): [class_of(v)] for v in values}
        else:
            values = sorted({c.index for c in classes} | set(per_class))
            layers = {single_layer: [class_of(v) for v in values]}
        files = sink.close(list(layers))
        if fmt == "gpkg":
            write_layer_styles(tmpdir / out_path.name, layers, attribute=fields[0], sync=False)
        _move_outputs(tmpdir, files)
    finally:
        shutil.rmtree(tmpdir, ignore_errors=True)
    return {
        "files": [str(f) for f in files],
        "format": fmt,
        "layers": {name: sink.counts.get(name, 0) for name in layers},
        "polygons": sum(s["polygons"] for s in per_class.values()),
        "classes": {class_of(v).name: {"index": v, **per_class[v]} for v in sorted(per_class)},
        "dropped_small": dropped,
        "crs": crs.to_string() if crs else None,
        "area_units": "CRS units^2" if crs else "pixels^2",
        "width": info.width, "height": info.height, "block_size": block_size,
        "blocks": stats.get("blocks", 0), "max_open_pieces": stats.get("max_open_pieces", 0),
        "seconds": round(time.perf_counter() - t0, 3),
    }
