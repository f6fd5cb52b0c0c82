"""What a prediction run reports as it goes, and what it returns.

:func:`segdeep.predict.run.iter_predict` yields :class:`PredictStarted`, then :class:`TilesDone`
after every batch, :class:`BlockDone` after every block, :class:`Finishing` while the final files
are written, and returns a :class:`PredictResult`. On a Dask cluster
(:func:`segdeep.distributed.run.iter_predict_distributed`) :class:`ClusterReady` comes first.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class ClusterReady:
    """Connected to the cluster: its scheduler address, dashboard link and worker count."""

    scheduler: str
    dashboard: str | None
    workers: int


@dataclass(frozen=True)
class PredictStarted:
    """The run is planned: what will be computed, and where."""

    total_tiles: int  # tiles to compute in this run
    total_blocks: int  # blocks of the output
    blocks_resumed: int  # blocks already finished by an interrupted run (not recomputed)
    device: str
    precision: str
    batch_size: int
    block_size: int  # pixels, after rounding to whole tile strides
    workers: int = 0  # CPU: batches computed at once (0: one after the other, in the calling thread)
    threads: int = 0  # CPU: torch threads of each worker


@dataclass(frozen=True)
class TilesDone:
    """Progress: tiles finished (computed or skipped because entirely nodata) out of ``total``."""

    done: int
    total: int


@dataclass(frozen=True)
class BlockDone:
    """A block is finished: ``done`` of ``total`` blocks; ``window`` = (col, row, width, height) in pixels."""

    index: int
    done: int
    total: int
    window: tuple[int, int, int, int]


@dataclass(frozen=True)
class Finishing:
    """All blocks are done; the final files are being written (``step``: labels, probabilities, ...)."""

    step: str


@dataclass
class PredictResult:
    """What a run produced (paths are None for outputs not asked for) and how it went."""

    out_dir: Path
    labels: Path
    run_json: Path
    preview: Path | None = None
    probabilities: Path | None = None
    report: dict | None = None  # paths of the report files
    scores: dict | None = None  # segdeep.evaluate.metrics.scores(...) with truth
    vector: Path | None = None
    device: str = "cpu"
    precision: str = "fp32"
    batch_size: int = 1
    tiles_computed: int = 0
    tiles_skipped: int = 0
    blocks_computed: int = 0
    blocks_resumed: int = 0
    timings: dict = field(default_factory=dict)  # seconds
    peak_rss_mb: float = 0.0
