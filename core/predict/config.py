"""Every setting of a prediction run in one typed, checked value: :class:`PredictConfig`.

The Python API (:func:`segdeep.predict.run.iter_predict`), the cluster path
(:func:`segdeep.distributed.run.iter_predict_distributed`), ``segdeep predict`` and the napari
Segment widget all build one and pass it down. Building it checks everything that can be checked
without opening the raster or the model (numbers, counts, names, shapes); :func:`segdeep.predict.plan.plan_run`
checks the rest against the raster and the model card. Both raise a one-line :class:`SegdeepError`
before any compute. No torch here.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from ..crf.params import CRFParams
from ..errors import SegdeepError
from ..runtime import PRECISIONS, parse_count
from .fusion import TestTimeFusion, parse_scales
from .tiles import check_tile_overlap, check_whole

__all__ = ["PredictConfig", "resolve_config", "run_parameters"]


def _window(window) -> tuple[int, int, int, int]:
    try:
        values = tuple(int(v) for v in window)
        if len(values) != 4 or any(v != w for v, w in zip(values, window, strict=True)):
            raise ValueError
    except (TypeError, ValueError):
        raise SegdeepError(f"window {window!r}: expected col,row,width,height in pixels") from None
    return values  # type: ignore[return-value]


def _bounds(bounds) -> tuple[float, float, float, float]:
    try:
        values = tuple(float(v) for v in bounds)
    except (TypeError, ValueError):
        values = ()
    if len(values) != 4:
        raise SegdeepError(f"bounds {bounds!r}: expected left,bottom,right,top in the raster's CRS units")
    left, bottom, right, top = values
    if not (left < right and bottom < top):
        raise SegdeepError(f"bounds {tuple(bounds)}: expected left < right and bottom < top (left,bottom,right,top)")
    return values  # type: ignore[return-value]


def _bands(bands) -> tuple[int, ...] | None:
    if bands is None:
        return None
    try:
        if isinstance(bands, str):
            raise ValueError
        values = tuple(int(b) for b in bands)
        if any(v != b for v, b in zip(values, bands, strict=True)):
            raise ValueError
    except (TypeError, ValueError):
        raise SegdeepError(f"bands {bands!r}: expected 1-based band numbers (1, 2, 3, ...)") from None
    return values or None  # empty: the card's bands


def _crf(crf) -> CRFParams | None:
    if crf is None:
        return None
    if isinstance(crf, dict):
        crf = CRFParams.from_dict(crf)
    if not isinstance(crf, CRFParams):
        raise SegdeepError(f"crf {crf!r}: expected segdeep.crf.params.CRFParams (or its dict) or None")
    if crf.iterations < 0:
        raise SegdeepError(f"CRF iterations {crf.iterations} (--crf-iterations): must be >= 0")
    if int(crf.window_size) != crf.window_size or crf.window_size < 16:
        raise SegdeepError(f"CRF window size {crf.window_size!r}: must be a whole number of pixels >= 16")
    return replace(crf)  # a copy: the caller's object may change after the run starts


@dataclass(frozen=True, kw_only=True)
class PredictConfig:
    """The settings of one prediction run (pixels for every size; see :func:`segdeep.predict.run.iter_predict`).

    Attributes:
        image: the raster to segment (GeoTIFF or anything GDAL reads).
        bundle: a model bundle (``.safetensors``); or ``model`` and ``card`` (a ``(model, card)`` pair
            given as ``bundle`` is split into them). The card gives the bands, normalisation,
            classes and default tile size.
        out_dir: folder for ``labels.tif``, ``preview.png``, ``run.json`` and the optional outputs.
        tile_size: model input in pixels (None: the card's). overlap: pixels shared by neighbouring
            tiles, at most tile_size / 2 (None: 64, or tile_size / 4 under 256 px). block_size:
            block side in pixels, rounded up to whole tile strides (whole CRF windows with the CRF;
            memory, not labels, depends on it).
        bands: 1-based raster bands fed to the model (None: the card's).
        batch_size: tiles per forward pass or ``"auto"``. device: auto, cpu, cuda, cuda:N.
        precision: auto (fp32 on CPU, bf16/fp16 autocast on CUDA), fp32, bf16, fp16.
        workers: CPU batches computed at once or ``"auto"`` (see :func:`segdeep.runtime.resolve_workers`);
            labels do not depend on it.
        crf: dense-CRF settings to refine each block with, or None.
        scales: test-time scale factors of each tile (e.g. ``(0.75, 1, 1.25)`` or ``"0.75,1,1.25"``),
            whose probabilities are averaged; ``(1.0,)``: the plain forward pass.
        flip: also run each tile (at each scale) mirrored left-right and average (2x the passes).
        probabilities: also write per-class probabilities (uint8, 255 = 1.0).
        truth: a label raster on the image's grid: adds an accuracy report.
        window: (col, row, width, height) in pixels, or bounds: (left, bottom, right, top) in the
            raster's CRS units: segment only that region (never both).
        vector: also write polygons to this file (.gpkg, .geojson, .shp; relative to ``out_dir``).
        preview: write ``preview.png``. resume: continue an interrupted run in ``out_dir``.

    ``batch_size`` and ``workers`` are stored as a whole number or ``"auto"``; ``bands``, ``window``
    and ``bounds`` as tuples; ``precision`` in lower case.
    """

    image: str | Path
    out_dir: str | Path
    bundle: str | Path | None = None
    model: Any = field(default=None, compare=False, repr=False)
    card: Any = field(default=None, compare=False, repr=False)
    tile_size: int | None = None
    overlap: int | None = None
    block_size: int = 2048
    bands: tuple[int, ...] | None = None
    batch_size: int | str = "auto"
    device: str = "auto"
    precision: str = "auto"
    workers: int | str = "auto"
    crf: CRFParams | None = None
    scales: tuple[float, ...] = (1.0,)
    flip: bool = False
    probabilities: bool = False
    truth: str | Path | None = None
    window: tuple[int, int, int, int] | None = None
    bounds: tuple[float, float, float, float] | None = None
    vector: str | Path | None = None
    preview: bool = True
    resume: bool = False

    def __post_init__(self) -> None:
        def put(name: str, value) -> None:
            object.__setattr__(self, name, value)

        if self.out_dir is None:
            raise SegdeepError("no output folder given (out_dir)")
        if self.image is None:
            raise SegdeepError("no image given: the raster to segment")
        if isinstance(self.bundle, tuple | list) and len(self.bundle) == 2:
            put("model", self.bundle[0])
            put("card", self.bundle[1])
            put("bundle", None)
        if self.tile_size is not None:
            check_whole(self.tile_size, "tile size", minimum=1)
        if self.overlap is not None:
            check_whole(self.overlap, "overlap", minimum=0)
        if self.tile_size is not None and self.overlap is not None:
            check_tile_overlap(self.tile_size, self.overlap)
        check_whole(self.block_size, "block size", minimum=1)
        for name, what in (("batch_size", "batch size"), ("workers", "workers")):
            put(name, parse_count(getattr(self, name), what) or "auto")
        precision = str(self.precision or "auto").strip().lower()
        if precision not in PRECISIONS:
            raise SegdeepError(f"precision {self.precision!r} is not known; use auto, fp32, bf16 or fp16")
        put("precision", precision)
        put("device", str(self.device or "auto").strip().lower())
        put("bands", _bands(self.bands))
        if self.window is not None and self.bounds is not None:
            raise SegdeepError("give a window or bounds, not both")
        put("window", _window(self.window) if self.window is not None else None)
        put("bounds", _bounds(self.bounds) if self.bounds is not None else None)
        put("crf", _crf(self.crf))
        put("scales", parse_scales(self.scales))
        for flag in ("flip", "probabilities", "preview", "resume"):
            put(flag, bool(getattr(self, flag)))

    @property
    def fusion(self) -> TestTimeFusion:
        """The test-time scales and flip as :class:`~segdeep.predict.fusion.TestTimeFusion`."""
        return TestTimeFusion(self.scales, self.flip)

    @classmethod
    def from_keywords(cls, image=None, bundle=None, out_dir=None, **settings) -> PredictConfig:
        """A config from :func:`segdeep.predict.run.iter_predict`'s arguments; an unknown keyword is a
        one-line error naming the accepted ones."""
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(settings) - names)
        if unknown:
            raise SegdeepError(f"unknown prediction setting(s) {unknown}; accepted: {sorted(names - {'image'})}")
        return cls(image=image, bundle=bundle, out_dir=out_dir, **settings)


def resolve_config(config: PredictConfig | None, image, bundle, out_dir, settings: dict) -> PredictConfig:
    """``config`` when given (then no other setting may be), else a config from the keywords."""
    if config is None:
        return PredictConfig.from_keywords(image, bundle, out_dir, **settings)
    if not isinstance(config, PredictConfig):
        raise SegdeepError(f"config {config!r}: expected a segdeep.predict.config.PredictConfig")
    given = [name for name, value in (("image", image), ("bundle", bundle), ("out_dir", out_dir)) if value is not None]
    if given or settings:
        raise SegdeepError(f"pass either config= or settings, not both (also given: {', '.join(given + sorted(settings))})")
    return config


def run_parameters(config: PredictConfig, plan, *, device: str, precision: str, batch_size, **extra) -> dict:
    """The ``parameters`` of ``run.json``: the settings as asked, with the planned tile/block geometry
    and the resolved device, precision and batch size; ``extra`` is added (workers, scheduler, ...)."""
    area = plan.area
    return {
        "image": str(config.image), "tile_size": plan.tile_size, "overlap": int(plan.overlap),
        "block_size": plan.block, "batch_size": batch_size, "device": device, "precision": precision,
        "bands": list(plan.bands), **extra,
        "window": [area.col_off, area.row_off, area.width, area.height],
        "bounds": list(config.bounds) if config.bounds else None,
        "crf": config.crf.to_dict() if config.crf is not None else None, "probabilities": config.probabilities,
        "scales": list(config.scales), "flip": config.flip,
        "truth": str(config.truth) if config.truth else None, "resume": config.resume,
        "vector": str(config.vector) if config.vector else None,
    }
