"""The files a prediction run leaves in its output folder, and the checks made before any compute."""

from __future__ import annotations

import contextlib
import json
import time
import uuid
from dataclasses import asdict, is_dataclass
from pathlib import Path

import numpy as np

from ..errors import SegdeepError
from ..evaluate.metrics import scores
from ..evaluate.report import write_report
from ..export.preview import render_preview, save_png
from ..export.vectorize import FORMATS, format_from_path, vectorize_raster
from ..io.atomic import write_json_atomic
from ..io.raster import open_raster
from ..runtime import peak_rss_mb
from .events import Finishing
from .source import gdal_env


def prepare_out_dir(out_dir, *, truth=None, info=None, vector=None) -> Path:
    """Create ``out_dir`` and check it is writable; check ``truth`` and ``vector`` before computing."""
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise SegdeepError(f"{out}: exists and is not a folder; give a folder for the outputs")
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / f".segdeep-write-test-{uuid.uuid4().hex[:8]}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise SegdeepError(f"{out}: output folder is not writable ({exc.strerror or exc})") from None
    if truth is not None:
        t = open_raster(truth, warn=False)
        if t.count != 1:
            raise SegdeepError(f"{truth}: a truth label raster has 1 band, this one has {t.count}")
        if info is not None and (t.width, t.height) != (info.width, info.height):
            raise SegdeepError(f"{truth}: truth labels are {t.width} x {t.height} px but the image is "
                               f"{info.width} x {info.height}; they must share the image's grid")
        if info is not None and t.georeferenced and info.georeferenced and (
                not t.transform.almost_equals(info.transform) or t.crs != info.crs):
            raise SegdeepError(f"{truth}: truth labels are not on the image's grid (CRS or transform differ)")
    if vector is not None:
        fmt = format_from_path(vector) if Path(vector).suffix else None
        if fmt not in FORMATS:
            raise SegdeepError(f"vector output {vector}: use a .gpkg, .geojson or .shp file name")
        folder = (Path(vector) if Path(vector).is_absolute() else out / vector).parent
        _check_writable(folder, "--vector folder")
    return out


def _check_writable(folder: Path, what: str) -> None:
    """Refuse (one line) a folder that does not exist or where a file cannot be created."""
    if not folder.is_dir():
        raise SegdeepError(f"{what} {folder}: does not exist; create it or choose another path")
    probe = folder / f".segdeep-write-test-{uuid.uuid4().hex[:8]}"
    try:
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise SegdeepError(f"{what} {folder}: not writable ({exc.strerror or exc})") from None


def card_dict(card) -> dict:
    """A model card as plain JSON types."""
    if hasattr(card, "to_dict"):
        return card.to_dict()
    data = asdict(card) if is_dataclass(card) else dict(vars(card))
    data["classes"] = [c.to_dict() for c in card.classes]
    return json.loads(json.dumps(data, default=str))


def finish_outputs(result, journal, sinks, area, info, classes, *, params, card_data, truth, vector, preview,
                   timings, t_start, version):
    """Finish the files of a run whose blocks are all done; yields ``Finishing`` events; fills ``result``."""

    written: list[Path] = []  # final-named files made so far: removed again if a later step fails
    try:
        yield from _finish(result, journal, sinks, area, info, classes, written, params=params,
                           card_data=card_data, truth=truth, vector=vector, preview=preview, timings=timings,
                           t_start=t_start, version=version)
    except BaseException:
        for path in written:
            with contextlib.suppress(OSError):
                path.unlink()
        raise


def _finish(result, journal, sinks, area, info, classes, written, *, params, card_data, truth, vector, preview,
            timings, t_start, version):
    out = result.out_dir
    yield Finishing("labels")
    drawing = _start_preview(preview, out / "preview.png", classes, timings) if preview is not None else None
    try:  # the preview is drawn on another thread while GDAL writes the COG (both mostly outside the GIL)
        t0 = time.perf_counter()
        with gdal_env():
            sinks.close(ok=True)
        result.probabilities = sinks.probabilities_path
        written += [result.labels, result.labels.with_suffix(".qml"),
                    result.labels.with_name(result.labels.name + ".aux.xml")]
        if result.probabilities is not None:
            written += [Path(result.probabilities)]
        timings["cog"] = time.perf_counter() - t0
        if sinks.confusion is not None:
            yield Finishing("report")
            result.scores = scores(sinks.confusion, classes)
            result.report = write_report(result.scores, out, classes=classes,
                                         inputs={"prediction": str(result.labels), "reference": str(truth),
                                                 "image": str(info.path)})
            written += [Path(p) for p in result.report.values()]
        if drawing is not None:
            yield Finishing("preview")
            result.preview = drawing.result()
            written.append(Path(result.preview))
            drawing = None
    finally:
        if drawing is not None:  # failed or cancelled before the preview was taken: no preview left
            with contextlib.suppress(BaseException):
                drawing.result()
            (out / "preview.png").unlink(missing_ok=True)
    if vector is not None:
        yield Finishing("vector")
        t0 = time.perf_counter()
        path = Path(vector) if Path(vector).is_absolute() else out / vector
        with gdal_env():
            summary = vectorize_raster(result.labels, path, classes=classes)
        written += [Path(f) for f in summary["files"]]
        result.vector = path
        timings["vector"] = time.perf_counter() - t0
    timings["total"] = time.perf_counter() - t_start
    result.timings = {k: round(v, 4) for k, v in timings.items()}
    result.peak_rss_mb = round(peak_rss_mb(), 1)
    run = {
        "segdeep_version": version,
        "parameters": params,
        "input": {"path": str(info.path), "width": info.width, "height": info.height, "count": info.count,
                  "dtype": info.dtype, "crs": info.crs.to_wkt() if info.crs else None,
                  "transform": list(info.transform)[:6], "nodata": info.nodata},
        "model_card": card_data,
        "device": result.device, "precision": result.precision, "batch_size": result.batch_size,
        "tiles_computed": result.tiles_computed, "tiles_skipped": result.tiles_skipped,
        "blocks_computed": result.blocks_computed, "blocks_resumed": result.blocks_resumed,
        "timings_s": result.timings, "peak_rss_mb": result.peak_rss_mb,
        "outputs": {k: str(v) for k, v in (("labels", result.labels), ("probabilities", result.probabilities),
                                           ("preview", result.preview), ("vector", result.vector)) if v},
        "report": {k: str(v) for k, v in (result.report or {}).items()},
    }
    write_json_atomic(result.run_json, run)
    journal.discard()  # last: until run.json is written, a failed finish can be resumed


def _start_preview(sampler, out_png: Path, classes, timings: dict):
    """``sampler.write(out_png, classes)`` on a thread of its own; a Future of the path."""
    from concurrent.futures import ThreadPoolExecutor

    def draw() -> Path:
        t0 = time.perf_counter()
        try:
            return sampler.write(out_png, classes)
        finally:
            timings["preview"] = time.perf_counter() - t0

    pool = ThreadPoolExecutor(1, thread_name_prefix="segdeep-preview")
    try:
        return pool.submit(draw)
    finally:
        pool.shutdown(wait=False)


class PreviewSampler:
    """Keeps every ``step``-th pixel (rows and columns, counted from the output area's corner) of
    the image and the labels as blocks pass, so the preview needs no second read of the raster."""

    def __init__(self, area, dtype, bands: int, max_size: int = 1600) -> None:
        self.area = area
        self.step = max(1, -(-max(area.width, area.height) // max_size))
        h, w = -(-area.height // self.step), -(-area.width // self.step)
        self.bands = 3 if bands >= 3 else 1
        self.image = np.zeros((self.bands, h, w), dtype=dtype)
        self.labels = np.full((h, w), 255, dtype=np.uint8)

    def _picks(self, start: int, end: int, origin: int):
        first = origin + -(-(start - origin) // self.step) * self.step
        return np.arange(first, end, self.step)

    def add(self, rect, labels: np.ndarray, data: np.ndarray, data_rect) -> None:
        """``labels`` cover ``rect``; ``data`` (model bands x h x w) covers ``data_rect``."""
        rows = self._picks(rect.row_off, rect.row_end, self.area.row_off)
        cols = self._picks(rect.col_off, rect.col_end, self.area.col_off)
        if not rows.size or not cols.size:
            return
        dst = np.ix_((rows - self.area.row_off) // self.step, (cols - self.area.col_off) // self.step)
        self.labels[dst] = labels[np.ix_(rows - rect.row_off, cols - rect.col_off)]
        src = np.ix_(rows - data_rect.row_off, cols - data_rect.col_off)
        for b in range(self.bands):
            self.image[b][dst] = data[b][src]

    def write(self, out_png: Path, classes) -> Path:
        """Write the preview PNG (image, label overlay, legend; see :func:`segdeep.export.preview.render_preview`)."""
        valid = np.ones(self.labels.shape, dtype=bool)
        return save_png(render_preview(self.image, valid, self.labels, self.labels != 255, classes), out_png)
