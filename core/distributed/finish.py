"""Final files of a distributed prediction, made by the client from the workers' part GeoTIFFs.

``labels.tif`` / ``probabilities.tif``: a VRT mosaic of the parts, tagged like
:class:`segdeep.io.raster.LabelWriter`'s output, copied to a COG by GDAL (no pixel passes through
Python). The accuracy report adds up the blocks' confusion matrices (stored in the part tags);
the preview and run.json are those of an in-process run; polygons are made on the cluster.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import rasterio
from affine import Affine

from .. import __version__
from ..evaluate.metrics import ConfusionMatrix, scores
from ..evaluate.report import write_report
from ..export.preview import write_preview
from ..io.atomic import write_json_atomic
from ..io.label_style import write_label_sidecars
from ..io.raster import tag_classes, to_cog
from ..predict.events import Finishing
from ..predict.finish import card_dict
from ..predict.sinks import region_vrt
from ..predict.tiles import Rect
from ..runtime import peak_rss_mb
from . import tasks
from .vectorize import vectorize_distributed


def build_vrt(path: Path, parts: list[tuple[Path, Rect]], width: int, height: int, count: int) -> Path:
    """A uint8 VRT mosaic of part files (``(file, rect inside the mosaic in pixels)``)."""
    bands = []
    for b in range(1, count + 1):
        sources = "".join(
            f'<SimpleSource><SourceFilename relativeToVRT="0">{p.resolve()}</SourceFilename>'
            f'<SourceBand>{b}</SourceBand><SourceProperties RasterXSize="{r.width}" RasterYSize="{r.height}" '
            f'DataType="Byte"/>'
            f'<SrcRect xOff="0" yOff="0" xSize="{r.width}" ySize="{r.height}"/>'
            f'<DstRect xOff="{r.col_off}" yOff="{r.row_off}" xSize="{r.width}" ySize="{r.height}"/></SimpleSource>'
            for p, r in parts)
        bands.append(f'<VRTRasterBand dataType="Byte" band="{b}">{sources}</VRTRasterBand>')
    path.write_text(f'<VRTDataset rasterXSize="{width}" rasterYSize="{height}">{"".join(bands)}</VRTDataset>')
    return path


def assemble(out: Path, parts_dir: Path, kind: str, blocks, area: Rect, *, crs, transform, classes,
              count: int) -> Path:
    """``labels.tif`` / ``probabilities.tif`` (COG) from the part files: VRT, tags, then COG copy."""
    parts = [(tasks.part_path(parts_dir, kind, b.index),
              Rect(b.rect.col_off - area.col_off, b.rect.row_off - area.row_off, b.rect.width, b.rect.height))
             for b in blocks]
    vrt = build_vrt(parts_dir / f"{kind}.vrt", parts, area.width, area.height, count)
    with rasterio.open(vrt, "r+") as ds:
        if crs is not None:
            ds.crs, ds.transform = crs, transform
        if kind == "labels":
            tag_classes(ds, classes)
            ds.nodata = 255
        else:
            for i, c in enumerate(classes):
                ds.set_band_description(i + 1, c.name)
            ds.update_tags(classes=json.dumps([c.to_dict() for c in classes]), scale="1/255")
    final = to_cog(vrt, out / f"{kind}.tif")
    if kind == "labels":
        write_label_sidecars(final, classes)  # class names for QGIS (.qml) and GDAL (.aux.xml)
    return final


def finish_outputs(result, client, info, card, classes, blocks, area, parts_dir, done, timings, *, truth, probabilities,
            vector, preview, bands, params, t_start):
    """Final files from the part files (labels, probabilities, report, preview, polygons, run.json)."""
    out = result.out_dir
    transform = info.transform * Affine.translation(area.col_off, area.row_off)
    t0 = time.perf_counter()
    yield Finishing("labels")
    assemble(out, parts_dir, "labels", blocks, area, crs=info.crs, transform=transform, classes=classes, count=1)
    timings["labels_file"] = time.perf_counter() - t0
    if probabilities:
        yield Finishing("probabilities")
        t0 = time.perf_counter()
        result.probabilities = assemble(out, parts_dir, "probabilities", blocks, area, crs=info.crs,
                                         transform=transform, classes=classes, count=len(classes))
        timings["probabilities_file"] = time.perf_counter() - t0
    if truth is not None:
        yield Finishing("report")
        cm = ConfusionMatrix(max(c.index for c in classes) + 1, ignore_index=int(getattr(card, "ignore_index", 255)))
        for b in blocks:
            data = json.loads(done[b.index]["confusion"])
            part = ConfusionMatrix(cm.num_classes, cm.ignore_index)
            part.matrix += np.asarray(data["matrix"], dtype=np.int64)
            part.ignored_by_reason.update(data["ignored"])
            cm.merge(part)
        result.scores = scores(cm, classes)
        result.report = write_report(result.scores, out, classes=classes,
                                     inputs={"prediction": str(result.labels), "reference": str(truth),
                                             "image": str(info.path)})
    if preview:
        yield Finishing("preview")
        t0 = time.perf_counter()
        source = info.path
        if (area.col_off, area.row_off, area.width, area.height) != (0, 0, info.width, info.height):
            source = region_vrt(info.path, info.count, area, parts_dir / "region.vrt")
        shown = bands[:3] if len(bands) >= 3 else bands[:1]
        result.preview = write_preview(source, result.labels, out / "preview.png", classes=classes, bands=shown)
        timings["preview"] = time.perf_counter() - t0
    if vector is not None:
        yield Finishing("vector")
        t0 = time.perf_counter()
        path = Path(vector) if Path(vector).is_absolute() else out / vector

        vectorize_distributed(result.labels, path, scheduler=client, classes=classes)
        result.vector = path
        timings["vector"] = time.perf_counter() - t0
    timings["total"] = time.perf_counter() - t_start
    result.timings = {k: round(v, 4) for k, v in timings.items()}
    result.peak_rss_mb = round(peak_rss_mb(), 1)
    write_json_atomic(result.run_json, {
        "segdeep_version": __version__, "parameters": params,
        "input": {"path": str(info.path), "width": info.width, "height": info.height, "count": info.count,
                  "dtype": info.dtype, "crs": info.crs.to_wkt() if info.crs else None,
                  "transform": list(info.transform)[:6], "nodata": info.nodata},
        "model_card": card_dict(card), "device": result.device, "precision": result.precision,
        "batch_size": result.batch_size, "tiles_computed": result.tiles_computed,
        "tiles_skipped": result.tiles_skipped, "blocks_computed": result.blocks_computed,
        "blocks_resumed": result.blocks_resumed, "timings_s": result.timings, "peak_rss_mb": result.peak_rss_mb,
        "outputs": {k: str(v) for k, v in (("labels", result.labels), ("probabilities", result.probabilities),
                                           ("preview", result.preview), ("vector", result.vector)) if v},
        "report": {k: str(v) for k, v in (result.report or {}).items()},
    })
